"""Every bad input gets a specific, actionable message naming the file, and leaves nothing behind.

Table-driven (issue #6). A :class:`Case` builds its input under ``tmp_path`` and runs one
entry point: the ``rarepheno`` CLI in-process (most cases: the message must be ONE line
``rarepheno: error: ...`` and the exit code 2) or a core function where the CLI has no
door to it. Each case asserts

* the message matches a pattern that states the problem (and usually the fix);
* the message names the file, folder or option at fault;
* nothing was written: the tree under ``tmp_path`` is exactly what the case built (no
  model, no output folder, no ``.tmp`` left over).

Inputs that are *accepted* (compressed TIFF, 16-bit, float, signed, constant images,
non-image files in a class folder, unicode paths, duplicate names, huge fields) have
their own table below, asserting the values read or the warning that names the file.

Not-writable outputs: the tests run as root, for whom ``chmod`` stops nothing, so they
are simulated (a) by putting the output under a regular FILE, (b) by making
``os.access`` deny writing to that folder, and (c) by making the write probe fail with
``EROFS`` (read-only disk). Disk full is simulated by a writer that writes half the bytes
and then raises ``OSError(ENOSPC)``.
"""
from __future__ import annotations

import csv
import errno
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from napari_rarepheno.cli import main
from napari_rarepheno.core.errors import InputError, OutputError
from napari_rarepheno.core.io import images as imageio
from napari_rarepheno.core.io.deeploc_h5 import load_deeploc_h5, write_deeploc_h5
from napari_rarepheno.core.io.folders import load_class_folders, load_wscnn_split
from napari_rarepheno.core.io.modelfile import (
    ModelMeta,
    load_model,
    read_tensors,
    save_model,
    write_tensors,
)
from napari_rarepheno.core.nets.deepyeast import DeepYeast, DeepYeastConfig
from napari_rarepheno.core.nets.registry import config_to_dict
from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig

SIZE = 64  # > the WSCNN's minimum input (46 px), small enough to be instant
EPS = "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n"  # PostScript: Pillow would call Ghostscript


# ------------------------------------------------------------------ builders
def noise(seed: int, shape=(SIZE, SIZE), dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        return rng.random(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 60000), shape, endpoint=True).astype(dtype)


def png(path: Path, arr: np.ndarray | None = None, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noise(seed) if arr is None else arr).save(path)
    return path


def tif(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, arr, **kw)
    return path


def tree(root: Path, n=(3, 3), split: str | None = "train", rgb_positive=False, size=SIZE) -> Path:
    """root/[split/]{negative,positive}/ with n noise PNGs each; returns the split folder."""
    base = root / split if split else root
    for c, k in zip(("negative", "positive"), n):
        for i in range(k):
            seed = (0 if c == "negative" else 50) + i
            arr = noise(seed, (size, size, 3) if (rgb_positive and c == "positive") else (size, size))
            png(base / c / f"{c[:3]}_{i}.png", arr)
    return base


def data_with(tmp: Path, name: str, write: Callable[[Path], Any]) -> Path:
    """A valid training tree plus one bad file ``train/negative/<name>``; returns that file."""
    tree(tmp / "data")
    bad = tmp / "data" / "train" / "negative" / name
    write(bad)
    return bad


def truncated(make: Callable[[Path], Any]) -> Callable[[Path], None]:
    def write(p: Path) -> None:
        make(p)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    return write


def train(tmp: Path, *extra: str, epochs: str = "1", device: str = "cpu") -> list[str]:
    return ["train", "wscnn", str(tmp / "data"), "--out", str(tmp / "out" / "m.safetensors"),
            "--epochs", epochs, "--device", device, "--quiet", *extra]


def wscnn_meta(cfg: WSCNNConfig, **kw) -> ModelMeta:
    return ModelMeta("wscnn", config_to_dict(cfg), ["negative", "positive"], None,
                     {"mean": [0.5] * cfg.in_channels, "std": [0.25] * cfg.in_channels}, **kw)


def random_wscnn(path: Path, **meta_kw) -> Path:
    torch.manual_seed(0)
    cfg = WSCNNConfig(in_channels=1, widths=(8, 16, 16))  # narrow: instant to run
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_model(path, WSCNN(cfg), wscnn_meta(cfg, **meta_kw))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Random-weight model files (no training needed to test how files are refused)."""
    root = tmp_path_factory.mktemp("models")
    out = {"wscnn": random_wscnn(root / "wscnn.safetensors")}
    cfg = DeepYeastConfig(widths=(8,) * 8, fc_widths=(16, 16))
    out["deepyeast"] = save_model(root / "deepyeast.safetensors", DeepYeast(cfg),
                                  ModelMeta("deepyeast", config_to_dict(cfg), [f"c{i}" for i in range(12)]))
    return out


def model_variant(tmp: Path, models, make: Callable[[Path, Path], Any]) -> Path:
    """A broken copy of the random WSCNN (``make(src, dst)``) for predict to choke on."""
    bad = tmp / "models" / "bad.safetensors"
    bad.parent.mkdir(parents=True)
    make(models["wscnn"], bad)
    png(tmp / "in" / "a.png")
    return bad


def predict(tmp: Path, model: Path, *inputs: str) -> list[str]:
    return ["predict", str(model), *(inputs or [str(tmp / "in")]), "--out", str(tmp / "pred"),
            "--device", "cpu", "--quiet"]


def flip_bytes(at_fraction: float):
    def make(src: Path, dst: Path) -> None:
        data = bytearray(src.read_bytes())
        i = int(len(data) * at_fraction)
        data[i:i + 16] = bytes(255 - b for b in data[i:i + 16])
        dst.write_bytes(bytes(data))
    return make


def mangle_header(src: Path, dst: Path) -> None:
    data = bytearray(src.read_bytes())
    data[8:12] = b"}}}}"  # the header JSON starts at byte 8
    dst.write_bytes(bytes(data))


def resave(**meta_kw):
    def make(src: Path, dst: Path) -> None:
        random_wscnn(dst, **meta_kw)
    return make


def newer_version(src: Path, dst: Path) -> None:
    cfg = WSCNNConfig(in_channels=1)
    meta = wscnn_meta(cfg)
    meta.format_version = 99
    save_model(dst, WSCNN(cfg), meta)


def unknown_kind(src: Path, dst: Path) -> None:
    tensors, doc = read_tensors(src)
    doc["meta"]["kind"] = "unet"
    write_tensors(dst, tensors, doc)


def nan_weights(src: Path, dst: Path) -> None:
    cfg = WSCNNConfig(in_channels=1)
    m = WSCNN(cfg)
    with torch.no_grad():
        next(m.parameters()).fill_(float("nan"))
    save_model(dst, m, wscnn_meta(cfg))


class Evil:
    """Unpickling this creates the marker file: proof that a loader ran the pickle."""

    marker: Path

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def pickle_model(src: Path, dst: Path) -> None:
    evil = Evil()
    evil.marker = dst.parent / "EXECUTED"
    dst.write_bytes(pickle.dumps(evil))


def torch_save_model(src: Path, dst: Path) -> None:
    torch.save({"state_dict": WSCNN().state_dict()}, dst)


def training_state(src: Path, dst: Path) -> None:
    tensors, doc = read_tensors(src)
    doc["train_state"] = {"epoch": 1}
    write_tensors(dst, {f"model.{k}": v for k, v in tensors.items()}, doc)


def stack(axes: str, n: int):
    return lambda p: tif(p, noise(1, (n, SIZE, SIZE)), imagej=True, metadata={"axes": axes})


def float_with(value: float):
    def write(p: Path) -> None:
        a = noise(2, dtype=np.float32)
        a[5, 7] = value
        tif(p, a)
    return write


def objects_csv(text: str):
    def build(tmp: Path, models) -> Path:
        test = tree(tmp / "data", split="test")
        (test / "objects.csv").write_text(text)
        return test / "objects.csv"
    return build


def h5_short_groups(tmp: Path, models) -> Path:
    return write_deeploc_h5(tmp / "crops.h5", noise(3, (10, 2, 16, 16)), np.arange(10) % 2, ["a", "b"],
                            groups=[f"P{i}" for i in range(7)])


def h5_mismatch(tmp: Path, models) -> Path:
    import h5py

    p = write_deeploc_h5(tmp / "crops.h5", noise(3, (10, 2, 16, 16)), np.arange(10) % 2, ["a", "b"])
    with h5py.File(p, "a") as f:  # drop two label rows: 10 crops, 8 labels
        onehot = f["Index1"][:8]
        names = f["Index1"].attrs["class_names"]
        del f["Index1"]
        f.create_dataset("Index1", data=onehot).attrs["class_names"] = names
    return p


def deny_access(tmp: Path, models, monkeypatch) -> Path:
    tree(tmp / "data")
    out = tmp / "out"
    out.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if Path(p) == out else real(p, mode, *a, **k))
    return out


def read_only_disk(tmp: Path, models, monkeypatch) -> Path:
    import tempfile

    tree(tmp / "data")
    out = tmp / "out"
    out.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir) == out:
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real(*a, dir=dir, **k)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return out


# ------------------------------------------------------------------ the table
@dataclass
class Case:
    id: str
    build: Callable  # (tmp, models[, monkeypatch]) -> the path (or option) the message must name
    run: Callable    # (tmp, named, models) -> argv for `rarepheno`, or a core call raising
    match: str       # what the message must say (regex)
    cli: bool = True
    exc: type = InputError
    needs_monkeypatch: bool = False


def C(id, build, run, match, **kw) -> Case:
    return Case(id, build, run, match, **kw)


def _b(f):  # builders that ignore the models fixture
    return lambda tmp, models: f(tmp)


TRAIN = lambda tmp, named, models: train(tmp)  # noqa: E731

CASES = [
    # --- folders
    C("empty_folder", _b(lambda t: (t / "data").mkdir() or t / "data"), TRAIN,
      r"expected train/ val/ test/ subfolders, or negative/ and positive/ class folders \(found: nothing\)"),
    C("data_folder_missing", _b(lambda t: t / "data"), TRAIN, r"data folder not found"),
    C("data_is_a_file", _b(lambda t: (t / "data").write_text("x") and t / "data"), TRAIN, r"expected a folder"),
    C("only_one_class", _b(lambda t: tree(t / "data", n=(3, 0), split=None).parent / "data"), TRAIN,
      r"only one class: found negative/ but no positive/"),
    C("only_one_class_folder_deepyeast",
      _b(lambda t: [png(t / "crops" / "nucleus" / f"{i}.png", seed=i) for i in range(3)] and t / "crops"),
      lambda tmp, named, models: load_class_folders(named, min_classes=2),
      r"found only 1 class folder\(s\) \(nucleus/\); training needs at least 2 classes", cli=False),
    C("missing_negative", _b(lambda t: tree(t / "data", n=(0, 3)) and (t / "data" / "train")), TRAIN,
      r"missing negative/ \(a WSCNN split needs negative/ and positive/"),
    C("missing_positive", _b(lambda t: tree(t / "data", n=(3, 0))), TRAIN, r"missing positive/"),
    C("class_folder_without_images",
      _b(lambda t: (tree(t / "data", n=(3, 0)) / "positive").mkdir() or t / "data" / "train"), TRAIN,
      r"class folder\(s\) positive/ contain no images"),
    C("class_folder_with_one_image", _b(lambda t: tree(t / "data", n=(3, 1))), TRAIN,
      r"need at least 2 training images in each of negative/ and positive/; too few in positive/"),
    # --- unreadable files
    C("corrupt_tiff", _b(lambda t: data_with(t, "bad.tif", lambda p: p.write_bytes(b"II*\x00" + os.urandom(300)))),
      TRAIN, r"cannot read this image, the file is corrupt, truncated or not an image"),
    C("truncated_tiff", _b(lambda t: data_with(t, "cut.tif", truncated(lambda p: tif(p, noise(4))))),
      TRAIN, r"cannot read this image, the file is corrupt, truncated"),
    C("truncated_compressed_tiff",
      _b(lambda t: data_with(t, "cut.tif", truncated(lambda p: tif(p, noise(4), compression="zlib")))),
      TRAIN, r"cannot read this image, the file is corrupt, truncated"),
    C("corrupt_png", _b(lambda t: data_with(t, "bad.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40))),
      TRAIN, r"corrupt, truncated or not a(n image| PNG)"),
    C("truncated_png", _b(lambda t: data_with(t, "cut.png", truncated(lambda p: png(p)))), TRAIN,
      r"cannot read this image, the file is corrupt, truncated or not an image \(image file is truncated"),
    C("zero_byte_tiff", _b(lambda t: data_with(t, "empty.tif", lambda p: p.write_bytes(b""))), TRAIN,
      r"the file is empty \(0 bytes\); was the copy interrupted\?"),
    C("zero_byte_png", _b(lambda t: data_with(t, "empty.png", lambda p: p.write_bytes(b""))), TRAIN,
      r"the file is empty \(0 bytes\)"),
    C("other_format_named_png",  # e.g. PostScript, whose decoder would call Ghostscript: never opened
      _b(lambda t: data_with(t, "fake.png", lambda p: p.write_text(EPS))),
      TRAIN, r"not a PNG file despite its name"),
    # --- wrong kind of image
    C("z_stack", _b(lambda t: data_with(t, "stack.tif", stack("ZYX", 5))), TRAIN,
      r"is a 3-D z-stack \(5 planes, axes ZYX.*save one plane or a projection"),
    C("time_series", _b(lambda t: data_with(t, "movie.tif", stack("TYX", 3))), TRAIN,
      r"is a time series \(3 frames.*save one frame per file"),
    C("stack_without_metadata", _b(lambda t: data_with(t, "planes.tif", lambda p: tif(p, noise(5, (12, SIZE, SIZE))))),
      TRAIN, r"has 12 planes: looks like a 3-D stack or a time series"),
    C("rgb_and_grayscale_mixed", _b(lambda t: tree(t / "data", rgb_positive=True)), TRAIN,
      r"images have different channel counts \(1 channel\(s\), e\.g\. .*neg_0\.png; 3 channel\(s\), e\.g\. "
      r".*pos_0\.png\); mixing RGB and grayscale\? choose channels with --channels"),
    C("smaller_than_receptive_field",
      _b(lambda t: data_with(t, "tiny.png", lambda p: png(p, noise(6, (30, 30))))), TRAIN,
      r"image is 30x30 px, smaller than the network's minimum input of 46x46 px \(its receptive field\)"),
    C("nan_pixels", _b(lambda t: data_with(t, "nan.tif", float_with(np.nan))), TRAIN,
      r"image has 1 NaN/inf pixels; replace them"),
    C("inf_pixels", _b(lambda t: data_with(t, "inf.tif", float_with(np.inf))), TRAIN, r"NaN/inf pixels"),
    C("huge_image_refused",
      lambda tmp, models, mp: mp.setattr(imageio, "MAX_PIXELS", 32 * 32)
      or tif(tmp / "field.tif", noise(7, (3, 200, 200))),
      lambda tmp, named, models: imageio.read_image(named),
      r"image of shape \(3, 200, 200\) is too large to load at once; use tiled prediction",
      cli=False, needs_monkeypatch=True),
    C("image_larger_than_free_memory",
      lambda tmp, models, mp: mp.setattr(imageio, "available_memory", lambda: 10_000) or png(tmp / "field.png"),
      lambda tmp, named, models: imageio.read_image(named),
      r"image of shape \(64, 64, 1\) needs about 20 kB of memory but only 10 kB is free; use smaller images",
      cli=False, needs_monkeypatch=True),
    C("folder_larger_than_free_memory",
      lambda tmp, models, mp: mp.setattr(imageio, "available_memory", lambda: 100_000) or tree(tmp / "data"),
      TRAIN, r"6 images of 1x64x64 needs about .* of memory but only .* is free",
      needs_monkeypatch=True),
    # --- channels
    C("channels_out_of_range", _b(lambda t: tree(t / "data") / "negative" / "neg_0.png"),
      lambda tmp, named, models: train(tmp, "--channels", "0,3"),
      r"--channels 0,3 is out of range: the image has 1 channel \(0\.\.0\)"),
    C("channels_not_integers", _b(lambda t: tree(t / "data") and "--channels"),
      lambda tmp, named, models: train(tmp, "--channels", "red"),
      r"--channels must be comma-separated integers like 0,1, got 'red'"),
    C("wrong_channel_count_for_model_predict",
      lambda tmp, models: png(tmp / "in" / "rgb.png", noise(8, (SIZE, SIZE, 3))),
      lambda tmp, named, models: predict(tmp, models["wscnn"]),
      r"the model expects 1 channel\(s\) but the image has 3; choose the channel\(s\) with --channels"),
    C("wrong_channel_count_for_model_evaluate",
      lambda tmp, models: tree(tmp / "data", split="test", rgb_positive=True) and
      [png(tmp / "data" / "test" / "negative" / f"neg_{i}.png", noise(i, (SIZE, SIZE, 3))) for i in range(3)] and
      tmp / "data" / "test",
      lambda tmp, named, models: ["evaluate", str(models["wscnn"]), str(named), "--device", "cpu", "--quiet"],
      r"the model expects 1 channel\(s\) but the images have 3; use --channels"),
    # --- model files
    C("model_of_another_network_type", lambda tmp, models: tree(tmp / "data") and models["deepyeast"],
      lambda tmp, named, models: train(tmp, "--init-from", str(models["deepyeast"])),
      r"it is a deepyeast model, but a wscnn model is needed here"),
    C("model_of_unknown_network_type", lambda tmp, models: model_variant(tmp, models, unknown_kind),
      lambda tmp, named, models: predict(tmp, named),
      r"network of unknown type 'unet' \(this version knows deepyeast, wscnn\); was it written by a newer"),
    C("model_truncated",
      lambda tmp, models: model_variant(tmp, models, lambda s, d: d.write_bytes(s.read_bytes()[:5000])),
      lambda tmp, named, models: predict(tmp, named), r"model file is (corrupt or )?truncated"),
    C("model_corrupt_weights", lambda tmp, models: model_variant(tmp, models, flip_bytes(0.6)),
      lambda tmp, named, models: predict(tmp, named),
      r"model file is corrupt: its weights do not match the checksum .* copy it again"),
    C("model_corrupt_header", lambda tmp, models: model_variant(tmp, models, mangle_header),
      lambda tmp, named, models: predict(tmp, named),
      r"not a napari-rarepheno model file \(not safetensors: bad header\)|corrupt"),
    C("model_newer_format_version", lambda tmp, models: model_variant(tmp, models, newer_version),
      lambda tmp, named, models: predict(tmp, named),
      r"written by a newer napari-rarepheno \(model format 99, this version reads up to 1\); update"),
    C("model_is_a_pickle", lambda tmp, models: model_variant(tmp, models, pickle_model),
      lambda tmp, named, models: predict(tmp, named),
      r"looks like a pickle/torch.save file; .* never unpickles \(that could run code\)"),
    C("model_is_torch_save", lambda tmp, models: model_variant(tmp, models, torch_save_model),
      lambda tmp, named, models: predict(tmp, named), r"looks like a pickle/torch.save file"),
    C("model_is_a_training_state", lambda tmp, models: model_variant(tmp, models, training_state),
      lambda tmp, named, models: predict(tmp, named), r"this is a training-state file \(for --resume\), not a model"),
    C("model_with_nan_weights", lambda tmp, models: model_variant(tmp, models, nan_weights),
      lambda tmp, named, models: predict(tmp, named), r"the weights contain NaN/inf values .* diverged"),
    C("model_zero_bytes", lambda tmp, models: model_variant(tmp, models, lambda s, d: d.write_bytes(b"")),
      lambda tmp, named, models: predict(tmp, named), r"model file is empty \(0 bytes\)"),
    C("model_is_a_folder", lambda tmp, models: model_variant(tmp, models, lambda s, d: d.mkdir()),
      lambda tmp, named, models: predict(tmp, named), r"is a folder, expected a model file"),
    # --- outputs
    C("output_under_a_regular_file",
      _b(lambda t: tree(t / "data") and (t / "afile").write_text("x") and t / "afile"),
      lambda tmp, named, models: ["train", "wscnn", str(tmp / "data"), "--out", str(named / "sub" / "m.safetensors"),
                                  "--epochs", "1", "--quiet"],
      r"cannot create the output folder .*: .*afile is a file, not a folder"),
    C("output_folder_not_writable", deny_access, TRAIN, r"is not writable; choose a folder you can write to",
      needs_monkeypatch=True),
    C("output_on_read_only_disk", read_only_disk, TRAIN, r"read-only disk; choose another output folder",
      needs_monkeypatch=True),
    C("train_output_exists",
      _b(lambda t: tree(t / "data") and random_wscnn(t / "out" / "m.safetensors")), TRAIN,
      r"exists already \(a previous model or run\); pass --resume to continue that run or --overwrite"),
    C("train_resume_and_overwrite", _b(lambda t: tree(t / "data") and "--resume"),
      lambda tmp, named, models: train(tmp, "--resume", "--overwrite"), r"choose one: --resume .* or --overwrite"),
    C("predict_outputs_exist",
      lambda tmp, models: png(tmp / "in" / "a.png") and png(tmp / "pred" / "a_mask.tif").parent,
      lambda tmp, named, models: predict(tmp, models["wscnn"]),
      r"1 result file\(s\) exist already \(e\.g\. a_mask\.tif\); use --resume .* or --overwrite"),
    C("evaluate_json_exists",
      lambda tmp, models: tree(tmp / "data", split="test") and (tmp / "m.json").write_text("{}") and tmp / "m.json",
      lambda tmp, named, models: ["evaluate", str(models["wscnn"]), str(tmp / "data" / "test"), "--json",
                                  str(named), "--quiet"], r"exists already; pass --overwrite to replace it"),
    # --- tables
    C("groups_csv_missing_columns",
      _b(lambda t: tree(t / "crops", split=None) and (t / "g.csv").write_text("file,label\na.png,x\n") and t / "g.csv"),
      lambda tmp, named, models: load_class_folders(tmp / "crops", groups_csv=named),
      r"groups CSV needs the columns file,group \(found: file, label\)", cli=False),
    C("objects_csv_missing_column", objects_csv("image,x0,y0,x1,y1\npositive/pos_0.png,1,1,5,5\n"),
      lambda tmp, named, models: ["evaluate", str(models["wscnn"]), str(named.parent), "--quiet"],
      r"missing column\(s\) kind; the header must be exactly image,x0,y0,x1,y1,kind"),
    C("objects_csv_extra_column", objects_csv("image,x0,y0,x1,y1,kind,score\npositive/pos_0.png,1,1,5,5,rare,1\n"),
      lambda tmp, named, models: ["evaluate", str(models["wscnn"]), str(named.parent), "--quiet"],
      r"unexpected column\(s\) score"),
    C("objects_box_outside_image", objects_csv("image,x0,y0,x1,y1,kind\npositive/pos_0.png,50,50,70,60,rare\n"),
      lambda tmp, named, models: ["evaluate", str(models["wscnn"]), str(named.parent), "--quiet"],
      r"line 2, image positive/pos_0\.png: box \[50,70\)x\[50,60\) lies outside the 64x64 \(width x height\) image"),
    C("deeploc_h5_mismatched_lengths", h5_mismatch,
      lambda tmp, named, models: load_deeploc_h5(named, size=16),
      r"'data1' has 10 crops but 'Index1' has 8 label rows", cli=False),
    C("deeploc_h5_groups_too_short", h5_short_groups,
      lambda tmp, named, models: load_deeploc_h5(named, size=16),
      r"'groups' has 7 entries but 'data1' has 10 crops; give one group per crop", cli=False),
    # --- parameters
    C("epochs_zero", _b(lambda t: tree(t / "data") and "epochs"),
      lambda tmp, named, models: train(tmp, epochs="0"),
      r"epochs must be a positive whole number, got 0"),
    C("epochs_negative", _b(lambda t: tree(t / "data") and "epochs"),
      lambda tmp, named, models: train(tmp, epochs="-3"), r"got -3"),
    C("batch_size_zero", _b(lambda t: tree(t / "data") and "batch size"),
      lambda tmp, named, models: train(tmp, "--batch-size", "0"), r"batch size must be a positive whole number, got 0"),
    C("batch_size_negative", _b(lambda t: tree(t / "data") and "batch size"),
      lambda tmp, named, models: train(tmp, "--batch-size", "-8"), r"got -8"),
    C("learning_rate_negative", _b(lambda t: tree(t / "data") and "learning rate"),
      lambda tmp, named, models: train(tmp, "--lr", "-0.1"), r"learning rate must be positive"),
    C("cuda_requested_without_cuda", _b(lambda t: tree(t / "data") and "'cuda'"),
      lambda tmp, named, models: train(tmp, device="cuda"),
      r"device 'cuda' was requested but this PyTorch has no CUDA GPU available .*; use --device auto or cpu"),
    C("unknown_device", _b(lambda t: tree(t / "data") and "'gpu'"),
      lambda tmp, named, models: train(tmp, device="gpu"),
      r"unknown device 'gpu'; choose one of auto, cpu, cuda, mps"),
    # --- predict inputs
    C("predict_input_missing", _b(lambda t: t / "nothing.png"),
      lambda tmp, named, models: predict(tmp, models["wscnn"], str(named)), r"not found"),
    C("predict_input_not_an_image", _b(lambda t: (t / "notes.txt").write_text("x") and t / "notes.txt"),
      lambda tmp, named, models: predict(tmp, models["wscnn"], str(named)), r"not an image file \(\.tif"),
    C("predict_folder_without_images", _b(lambda t: (t / "in").mkdir() or t / "in"),
      lambda tmp, named, models: predict(tmp, models["wscnn"]), r"folder contains no images"),
]


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def test_table_has_every_case_of_issue_6():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, models, capsys, monkeypatch):
    if case.id == "cuda_requested_without_cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the message is for machines without")
    named = case.build(tmp_path, models, monkeypatch) if case.needs_monkeypatch else case.build(tmp_path, models)
    before = _tree(tmp_path)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped-file warnings are tested below
        if case.cli:
            with pytest.raises(SystemExit) as e:
                main(case.run(tmp_path, named, models))
            assert e.value.code == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1, err
            assert err.startswith("rarepheno: error: "), err
            msg = err
        else:
            with pytest.raises(case.exc) as e:
                case.run(tmp_path, named, models)
            msg = str(e.value)
    assert re.search(case.match, msg), f"message {msg!r} does not say {case.match!r}"
    assert str(named) in msg, f"message {msg!r} does not name {named}"
    assert _tree(tmp_path) == before, f"left behind: {sorted(_tree(tmp_path) - before)}"
    assert not (tmp_path / "models" / "EXECUTED").exists(), "the pickle was executed"


# ------------------------------------------------------------------ accepted inputs
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


# ------------------------------------------------------------------ disk full
def _tiny_trainer(out: Path, epochs: int):
    from napari_rarepheno.core.inputs.normalize import Normalization
    from napari_rarepheno.core.io.folders import ImageSet
    from napari_rarepheno.core.training.augment import AugmentConfig
    from napari_rarepheno.core.training.trainer import TrainConfig, Trainer

    rng = np.random.default_rng(0)
    imgs = rng.random((8, 1, 48, 48)).astype(np.float32)
    data = ImageSet(imgs, np.arange(8) % 2, ["negative", "positive"], [Path(f"{i}.png") for i in range(8)])
    cfg = WSCNNConfig(in_channels=1, widths=(8, 8, 8))
    torch.manual_seed(0)
    trainer = Trainer(WSCNN(cfg), ModelMeta("wscnn", config_to_dict(cfg), ["negative", "positive"]),
                      TrainConfig(epochs=epochs, batch_size=4, device="cpu", seed=0), AugmentConfig.none(),
                      Normalization.fit(imgs), out=out)
    return trainer, data


def _disk_full_after(n_bytes_fraction=0.5):
    """A safetensors writer that writes part of the file, then finds the disk full."""
    from safetensors.torch import save as to_bytes

    def save_file(tensors, filename, metadata=None):
        data = to_bytes(tensors, metadata=metadata)
        with open(filename, "wb") as fh:
            fh.write(data[: int(len(data) * n_bytes_fraction)])
        raise OSError(errno.ENOSPC, "No space left on device", str(filename))
    return save_file


def test_disk_full_during_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    import safetensors.torch

    from napari_rarepheno.core.training.trainer import checkpoint_paths

    out = tmp_path / "m.safetensors"
    best, last, log = checkpoint_paths(out)
    trainer, data = _tiny_trainer(out, epochs=2)

    def fill_disk_after_epoch_1(p):
        if p.stage == "epoch" and p.epoch == 1:
            monkeypatch.setattr(safetensors.torch, "save_file", _disk_full_after())
    trainer.callback = fill_disk_after_epoch_1
    with pytest.raises(OutputError) as e:
        trainer.fit(data, data)
    msg = str(e.value)
    assert re.search(r"could not write the model file: the disk is full; free some space .* --resume", msg), msg
    assert str(best) in msg or str(last) in msg
    # the epoch-1 checkpoints are intact and nothing half-written is left
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([best.name, last.name, log.name]), \
        list(tmp_path.iterdir())
    _, doc = read_tensors(last)
    assert doc["train_state"]["epoch"] == 1
    assert load_model(best).meta.kind == "wscnn"
    # ... and the run continues from there once there is space again
    trainer2, _ = _tiny_trainer(out, epochs=2)
    res = trainer2.fit(data, data, resume=True)
    assert trainer2.start_epoch == 1 and len(res.history) == 2


def test_disk_full_while_writing_the_log_keeps_the_previous_log(tmp_path, monkeypatch):
    import builtins

    from napari_rarepheno.core.training.trainer import checkpoint_paths

    out = tmp_path / "m.safetensors"
    _, _, log = checkpoint_paths(out)
    trainer, data = _tiny_trainer(out, epochs=2)
    real_open = builtins.open

    def full_open(file, mode="r", *a, **kw):
        fh = real_open(file, mode, *a, **kw)
        if Path(str(file)).name.startswith(".m.log.csv.") and str(file).endswith(".tmp") and "w" in mode:
            fh.write("epoch,partial")
            fh.close()
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return fh

    def fill_disk_after_epoch_1(p):
        if p.stage == "epoch" and p.epoch == 1:
            monkeypatch.setattr(builtins, "open", full_open)
    trainer.callback = fill_disk_after_epoch_1
    with pytest.raises(OutputError, match=re.escape(str(log)) + r": could not write the training log: the disk is full"):
        trainer.fit(data, data)
    monkeypatch.undo()
    rows = list(csv.DictReader(real_open(log)))
    assert [r["epoch"] for r in rows] == ["1"]  # epoch 1's log, whole
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_disk_full_while_exporting_an_image_keeps_the_old_file(tmp_path, monkeypatch):
    old = tif(tmp_path / "mask.tif", np.ones((8, 8), np.uint8))
    original = old.read_bytes()

    def imwrite(path, data, **kw):
        Path(path).write_bytes(b"II*\x00partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(tifffile, "imwrite", imwrite)
    with pytest.raises(OutputError, match=re.escape(str(old)) + r": could not write the image: the disk is full"):
        imageio.write_tiff(old, np.zeros((8, 8), np.uint8), overwrite=True)
    assert old.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["mask.tif"]
    with pytest.raises(OutputError, match=r"file exists; use --overwrite"):
        imageio.write_tiff(old, np.zeros((8, 8), np.uint8))


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


# ------------------------------------------------------------------ safety
_NETWORK = re.compile(r"^\s*(import|from)\s+(urllib|http\.client|requests|httpx|socket|ftplib|aiohttp|pooch|"
                      r"huggingface_hub)\b|torch\.hub|urlopen\(", re.M)


def test_no_network_access_anywhere(tmp_path, models, monkeypatch):
    """Statically: no module of the package imports a network client. At run time: a
    predict run with every socket connection refused still works."""
    import socket

    import napari_rarepheno

    pkg = Path(napari_rarepheno.__file__).parent
    offenders = [str(p.relative_to(pkg)) for p in pkg.rglob("*.py") if _NETWORK.search(p.read_text("utf-8"))]
    assert offenders == []

    def no_network(*a, **k):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    png(tmp_path / "in" / "a.png")
    assert main(predict(tmp_path, models["wscnn"])) == 0
