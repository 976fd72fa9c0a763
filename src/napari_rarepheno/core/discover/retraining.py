"""Retrain with what was learned: fine-tune a model on corrected labels or new classes.

A WSCNN continues from its own weights on the (corrected) ``DATA/train`` folders with
the same architecture and channels (``train_wscnn(init_from=...)``). A DeepYeast model
continues on class folders of crops; a new class (a named gallery cluster) re-starts
only the output layer.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..progress import CancelToken, ProgressCallback


def retrain(model: str | Path, data_dir: str | Path, out: str | Path, cfg=None, *, fine_tune: bool = True,
            callback: ProgressCallback = None, cancel: CancelToken | None = None):
    """Train a model of the same kind, architecture and channels as ``model`` on ``data_dir``,
    starting from its weights (``fine_tune``) or from scratch; returns the TrainResult."""
    from ..io.modelfile import read_meta  # deferred: loads torch
    from ..training.trainer import TrainConfig  # deferred: loads torch

    meta = read_meta(model)
    cfg = cfg or TrainConfig(epochs=3)
    if Path(out).resolve() == Path(model).resolve():
        raise InputError("write the retrained model to a new file (keep the old one to compare)", out)
    init = model if fine_tune else None
    c = meta.config
    if meta.kind == "wscnn":
        from ..wscnn.train import WSCNNOptions, train_wscnn  # deferred: loads torch

        opts = WSCNNOptions(depth=c.get("depth", 4), head=c.get("head", "max"), conv2_kernel=c.get("conv2_kernel", 3),
                            channels=meta.channels, pool_first=c.get("pool_first", False))
        return train_wscnn(data_dir, out, opts, cfg, callback=callback, cancel=cancel, init_from=init)
    if meta.kind == "deepyeast":
        from ..deepyeast.data import DeepYeastOptions  # deferred: loads torch
        from ..deepyeast.train import train_deepyeast  # deferred: loads torch
        from ..nets.deepyeast import DeepYeastConfig  # deferred: loads torch

        width = c.get("widths", DeepYeastConfig().widths)[0] / DeepYeastConfig().widths[0]
        opts = DeepYeastOptions(channels=meta.channels, input_size=c.get("input_size", 64), width=width,
                                val_split="random")
        return train_deepyeast(data_dir, out, opts, cfg, callback=callback, cancel=cancel, init_from=init)
    raise InputError(f"cannot retrain a {meta.kind} model", model)
