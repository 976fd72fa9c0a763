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
non-image files in a class folder, unicode paths, duplicate names, huge fields) are
tested in ``test_accepted_inputs.py``; a disk that fills up while writing in
``test_disk_full.py``; the absence of network access in ``test_no_network.py``.

Not-writable outputs: the tests run as root, for whom ``chmod`` stops nothing, so they
are simulated (a) by putting the output under a regular FILE, (b) by making
``os.access`` deny writing to that folder, and (c) by making the write probe fail with
``EROFS`` (read-only disk).
"""
from __future__ import annotations

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
import torch
from helpers import SIZE, noise, png, predict, random_wscnn, tif, tree, wscnn_meta

from napari_rarepheno.cli import main
from napari_rarepheno.core.errors import InputError
from napari_rarepheno.core.io import images as imageio
from napari_rarepheno.core.io.deeploc_h5 import load_deeploc_h5, write_deeploc_h5
from napari_rarepheno.core.io.folders import load_class_folders
from napari_rarepheno.core.io.modelfile import read_tensors, save_model, write_tensors
from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig

EPS = "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n"  # PostScript: Pillow would call Ghostscript


# ------------------------------------------------------------------ builders
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


def model_variant(tmp: Path, models, make: Callable[[Path, Path], Any]) -> Path:
    """A broken copy of the random WSCNN (``make(src, dst)``) for predict to choke on."""
    bad = tmp / "models" / "bad.safetensors"
    bad.parent.mkdir(parents=True)
    make(models["wscnn"], bad)
    png(tmp / "in" / "a.png")
    return bad


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
      r".*pos_0\.png\); mixing RGB and grayscale\? choose the channels to use \(--channels or --channel-files on "
      r"the command line; the channel mapping in the dock\)"),
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
      r"channels 0,3 are out of range: the image has 1 channel \(0\.\.0\)"),
    C("channels_not_integers", _b(lambda t: tree(t / "data") and "--channels"),
      lambda tmp, named, models: train(tmp, "--channels", "red"),
      r"--channels must be comma-separated integers like 0,1, got 'red'"),
    C("wrong_channel_count_for_model_predict",
      lambda tmp, models: png(tmp / "in" / "rgb.png", noise(8, (SIZE, SIZE, 3))),
      lambda tmp, named, models: predict(tmp, models["wscnn"]),
      r"the model expects 1 channel\(s\) but the image has 3; choose the channels to use \(--channels"),
    C("wrong_channel_count_for_model_evaluate",
      lambda tmp, models: tree(tmp / "data", split="test", rgb_positive=True) and
      [png(tmp / "data" / "test" / "negative" / f"neg_{i}.png", noise(i, (SIZE, SIZE, 3))) for i in range(3)] and
      tmp / "data" / "test",
      lambda tmp, named, models: ["evaluate", str(models["wscnn"]), str(named), "--device", "cpu", "--quiet"],
      r"the model expects 1 channel\(s\) but the images have 3; choose the channels to use \(--channels"),
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
        warnings.simplefilter("ignore")  # skipped-file warnings: test_accepted_inputs.py
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
