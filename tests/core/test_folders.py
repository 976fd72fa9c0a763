"""The one loader: layouts, dtypes, channel selection and clear errors."""
import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_rarepheno.core.errors import InputError
from napari_rarepheno.core.io.folders import (
    find_splits,
    load_class_folders,
    load_wscnn_split,
    parse_channels,
)
from napari_rarepheno.core.io.images import read_image


def test_read_image_dtypes_and_layouts(tmp_path):
    a16 = (np.arange(2 * 20 * 30).reshape(2, 20, 30) * 30).astype(np.uint16)
    tifffile.imwrite(tmp_path / "chw.tif", a16, compression="zlib")
    tifffile.imwrite(tmp_path / "hwc.tif", np.moveaxis(a16, 0, -1), compression="lzw")
    x = read_image(tmp_path / "chw.tif")
    y = read_image(tmp_path / "hwc.tif")
    assert x.shape == (2, 20, 30) and np.allclose(x, y)
    assert np.allclose(x, a16 / 65535.0)
    f = np.random.default_rng(0).normal(size=(20, 30)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", f)
    assert np.allclose(read_image(tmp_path / "f.tif")[0], f)
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    g = read_image(tmp_path / "rgb.png", channels=[1, 0])
    assert g.shape == (2, 20, 30) and np.allclose(g[0], 200 / 255) and np.allclose(g[1], 0)


@pytest.mark.parametrize("make,msg", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20), "corrupt|cannot read"),
    (lambda p: tifffile.imwrite(p, np.zeros((12, 40, 40), np.uint8)), "3-D stack"),
])
def test_read_image_errors_name_the_file(tmp_path, make, msg):
    p = tmp_path / ("bad.png" if "PNG" in str(make) or msg == "empty" else "bad.tif")
    make(p)
    with pytest.raises(InputError, match=msg) as e:
        read_image(p)
    assert str(p) in str(e.value)


def test_channels_out_of_range(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((2, 16, 16), np.uint8))
    with pytest.raises(InputError, match="out of range.*2 channels"):
        read_image(tmp_path / "a.tif", channels=[0, 3])
    assert parse_channels("0, 1") == [0, 1]
    with pytest.raises(InputError, match="comma-separated"):
        parse_channels("red")


def _img(path, value=10, shape=(50, 60)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)


def test_wscnn_layout_and_errors(tmp_path):
    for split in ("train", "val"):
        for c in ("negative", "positive"):
            for i in range(3):
                _img(tmp_path / split / c / f"{i}.png", 10 * i)
    (tmp_path / "train" / "negative" / "notes.txt").write_text("hello")
    assert set(find_splits(tmp_path)) == {"train", "val"}
    with pytest.warns(UserWarning, match="non-image"):
        s = load_wscnn_split(tmp_path / "train")
    assert s.images.shape == (6, 1, 50, 60) and list(s.labels) == [0, 0, 0, 1, 1, 1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="missing negative/ and positive/"):
        load_wscnn_split(tmp_path / "empty")
    with pytest.raises(InputError, match="expected train/"):
        find_splits(tmp_path / "empty")


def test_channel_files_and_groups(tmp_path):
    for cls in ("nucleus", "cytoplasm"):
        for prot in ("YAL001", "YBR002"):
            for c, v in (("rfp", 50), ("gfp", 100)):
                _img(tmp_path / cls / f"{prot}_cell1_{c}.png", v, (64, 64))
    s = load_class_folders(tmp_path, channel_files=("rfp", "gfp"))
    assert s.images.shape == (4, 2, 64, 64)
    assert np.allclose(s.images[:, 0], 50 / 255) and np.allclose(s.images[:, 1], 100 / 255)
    assert s.groups == ["YAL001", "YBR002", "YAL001", "YBR002"]
    (tmp_path / "nucleus" / "YAL001_cell1_rfp.png").rename(tmp_path / "nucleus" / "YAL001_cell9_rfp.png")
    with pytest.raises(InputError, match="unpaired"):
        load_class_folders(tmp_path, channel_files=("rfp", "gfp"))


def test_mixed_channel_counts_refused(tmp_path):
    _img(tmp_path / "a" / "x.png")
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(tmp_path / "b" / "y.png") if (tmp_path / "b").mkdir() is None else None
    with pytest.raises(InputError, match="different channel counts"):
        load_class_folders(tmp_path)
