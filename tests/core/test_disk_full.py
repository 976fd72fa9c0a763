"""A disk that fills up while writing leaves the previous file whole and says what to do.

Disk full is simulated by a writer that writes half the bytes and then raises
``OSError(ENOSPC)``: for the training checkpoints (the run then resumes from the last
whole one), the training log, and an exported image.
"""
from __future__ import annotations

import csv
import errno
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from helpers import tif

from napari_rarepheno.core.errors import OutputError
from napari_rarepheno.core.io import images as imageio
from napari_rarepheno.core.io.modelfile import ModelMeta, load_model, read_tensors
from napari_rarepheno.core.nets.registry import config_to_dict
from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig


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
