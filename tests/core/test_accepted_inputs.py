"""Inputs that are *accepted*: the values read, or the warning that names the file.

The counterpart of the bad-input table (``test_bad_inputs.py``): compressed TIFF, 16-bit,
float, signed and multi-channel images read to the expected values; constant images,
non-image files and subfolders in a class folder, and the same image in two classes are
read with a warning naming them; unicode paths, spaces and duplicate names work end to
end; huge fields are tiled; a real model file whose header happens to start like a
pickle or a zip still loads; ``--device auto`` falls back to the CPU.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from helpers import SIZE, noise, png, random_wscnn, tif, tree

from napari_rarepheno.cli import main
from napari_rarepheno.core.io import images as imageio
from napari_rarepheno.core.io.folders import load_wscnn_split
from napari_rarepheno.core.io.modelfile import load_model


def _roundtrip(write, expect):
    def check(tmp: Path):
        p = write(tmp)
        x = imageio.read_image(p)
        assert x.dtype == np.float32
        np.testing.assert_allclose(x, expect, rtol=1e-6, atol=1e-7)
    return check


A16 = noise(10, dtype=np.uint16)
F32 = noise(11, dtype=np.float32) * 100 - 50
I16 = noise(12, dtype=np.int16)
U8 = noise(13)

ACCEPTED = {
    "lzw_tiff": _roundtrip(lambda t: tif(t / "a.tif", A16, compression="lzw"), A16[None] / 65535.0),
    "deflate_tiff": _roundtrip(lambda t: tif(t / "a.tif", A16, compression="zlib"), A16[None] / 65535.0),
    "zstd_tiff": _roundtrip(lambda t: tif(t / "a.tif", U8, compression="zstd"), U8[None] / 255.0),
    "uint16_png": _roundtrip(lambda t: png(t / "a.png", A16), A16[None] / 65535.0),
    "float32_tiff_kept_as_is": _roundtrip(lambda t: tif(t / "a.tif", F32), F32[None]),
    "int16_signed_tiff": _roundtrip(lambda t: tif(t / "a.tif", I16), I16[None] / 32767.0),
    "rgb_png_channels_first": _roundtrip(lambda t: png(t / "a.png", np.stack([U8, U8 // 2, U8 // 3], -1)),
                                         np.stack([U8, U8 // 2, U8 // 3]) / 255.0),
    "hwc_tiff_channels_first": _roundtrip(lambda t: tif(t / "a.tif", np.stack([A16, A16 // 3], -1)),
                                          np.stack([A16, A16 // 3]) / 65535.0),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_accepted_image_kinds(name, tmp_path):
    ACCEPTED[name](tmp_path)


def test_constant_image_is_read_with_a_warning_naming_it(tmp_path):
    p = tif(tmp_path / "blank field.tif", np.full((SIZE, SIZE), 700, np.uint16))
    with pytest.warns(UserWarning, match=re.escape(str(p)) + r": image is constant \(every pixel 700\)"):
        x = imageio.read_image(p)
    assert np.allclose(x, 700 / 65535)
    base = tree(tmp_path / "data")
    png(base / "negative" / "blank.png", np.zeros((SIZE, SIZE), np.uint8))
    with pytest.warns(UserWarning, match=r"1 constant image\(s\) \(every pixel equal, no signal\): "
                      r"negative/blank\.png"):
        s = load_wscnn_split(base)
    assert len(s) == 7


def test_non_image_files_are_skipped_with_a_warning_and_never_run(tmp_path):
    """Decision: a non-image file in a class folder (notes, Thumbs.db, a script) is skipped
    with a warning naming it, never opened as an image and never executed."""
    base = tree(tmp_path / "data")
    marker = tmp_path / "EXECUTED"
    for name in ("evil.py", "__init__.py", "conftest.py"):
        (base / "negative" / name).write_text(f"open({str(marker)!r}, 'w')\n")
    (base / "positive" / "Thumbs.db").write_bytes(b"\0" * 10)
    (base / "positive" / "plate2").mkdir()
    png(base / "positive" / "plate2" / "x.png")
    with pytest.warns(UserWarning) as rec:
        s = load_wscnn_split(base)
    text = "\n".join(str(w.message) for w in rec)
    assert re.search(r"negative: skipped 3 non-image file\(s\): __init__\.py, conftest\.py, evil\.py", text)
    assert "Thumbs.db" in text
    assert re.search(r"positive: ignored 1 subfolder\(s\): plate2; images must sit directly", text)
    assert len(s) == 6 and not marker.exists()


def test_same_image_in_both_classes_is_reported(tmp_path):
    base = tree(tmp_path / "data")
    (base / "positive" / "copy.png").write_bytes((base / "negative" / "neg_1.png").read_bytes())
    with pytest.warns(UserWarning, match=r"1 image\(s\) appear in two class folders with identical pixels "
                      r"\(contradicting labels\): negative/neg_1\.png = positive/copy\.png"):
        load_wscnn_split(base)


def test_unicode_spaces_and_duplicate_names_in_predict(tmp_path, models):
    """Paths with accents, CJK and spaces work end to end; inputs that share a file name
    (two folders, two suffixes, two cases) get distinct outputs; the CSV is UTF-8."""
    import csv

    src = tmp_path / "données été" / "plaque 1"
    files = [png(src / "puits A" / "img 1.png", seed=1), png(src / "puits B" / "img 1.png", seed=2),
             tif(src / "puits B" / "img 1.tif", noise(3)), png(src / "細胞" / "Img 1.png", seed=4),
             png(src / "細胞" / "img 1.png", seed=5)]
    out = tmp_path / "résultats 1"
    assert main(["predict", str(models["wscnn"]), str(src), "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    with open(out / "predictions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["image"] for r in rows) == sorted(str(f) for f in files)
    names = [r["name"] for r in rows]
    assert len({n.casefold() for n in names}) == len(files), names
    for n in names:
        assert (out / f"{n}_saliency.tif").exists() and (out / f"{n}_mask.tif").exists()


def test_huge_field_is_tiled_not_crashed(tmp_path, models, monkeypatch):
    from napari_rarepheno.core.wscnn import predict_files as batch

    monkeypatch.setattr(batch, "AUTO_TILE_PIXELS", 100 * 100)
    monkeypatch.setattr(batch, "AUTO_TILE", 128)
    p = png(tmp_path / "in" / "field.png", noise(9, (120, 200)))
    with pytest.warns(UserWarning, match=re.escape(str(p)) + r": 120x200 px is too large to predict at once; tiling"):
        batch.predict_wscnn_files(models["wscnn"], [tmp_path / "in"], tmp_path / "out", device="cpu")
    assert tifffile.imread(tmp_path / "out" / "field_saliency.tif").shape == (120, 200)


def test_auto_device_falls_back_to_cpu_without_cuda():
    from napari_rarepheno.core.device import resolve_device

    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    else:
        assert resolve_device("auto").type in ("cpu", "mps")

def test_model_whose_header_length_starts_with_0x80_or_PK_still_loads(tmp_path):
    """The pickle sniffing must not refuse real model files: the first bytes are the
    little-endian header length, which can start with 0x80 (a pickle's first byte) or
    spell 'PK' (a zip's) for a 19,280-byte header."""
    import json
    import struct

    from safetensors import safe_open
    from safetensors.torch import load_file, save

    src = random_wscnn(tmp_path / "src.safetensors")
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(src))

    def with_pad(pad: int) -> bytes:
        doc = json.loads(meta["rarepheno"])
        doc["meta"]["training"]["pad"] = "x" * pad
        return save(tensors, metadata={**meta, "rarepheno": json.dumps(doc)})

    n0 = struct.unpack("<Q", with_pad(0)[:8])[0]
    for start, target in ((b"\x80", n0 + (0x80 - n0) % 256), (b"PK", 0x4B50)):
        for pad in range(max(0, target - n0 - 16), target - n0 + 16):
            data = with_pad(pad)
            if data.startswith(start):
                break
        else:
            pytest.fail(f"could not build a header starting with {start!r}")
        p = tmp_path / "m.safetensors"
        p.write_bytes(data)
        assert load_model(p).meta.kind == "wscnn"
