"""DeepYeast tasks: train on class folders of crops, evaluate per cell and per group,
classify / embed crops, classify whole fields (segment -> crop -> classify -> aggregate).

Inputs go through :func:`load_crops` (``deepyeast_data``), the one entry point for crops:
class folders (``ROOT/<class>/<file>``, multi-channel files or ``channel_files`` pairs) or a
DeepLoc-layout HDF5 file. Crops whose size is not the network's ``input_size`` are
centre-cropped or zero-padded around their centre (with a warning): crops are cut
centred on a cell, so keeping the centre keeps the cell. Whole fields and the ``predict``
command's CSVs live in ``deepyeast_fields``. Both are re-exported here: this module is
the DeepYeast API.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..io.folders import ImageSet
from .data import (DeepYeastOptions, align_labels, fit_size, holdout, load_crops, options_from_args, scale_crops,
                   split_keys)
from ..errors import InputError
from ..io.images import to_float
from ..io.modelfile import LoadedModel, ModelMeta, load_model
from ..nets.networks import DeepYeast, DeepYeastConfig, config_to_dict
from ..inputs.normalize import Normalization
from ..progress import CancelToken, ProgressCallback
from ..training.trainer import TrainConfig, TrainResult, Trainer
from ..inference.arrays import evaluate_arrays

LAYERS = tuple(f"conv{i}" for i in range(1, 9)) + ("fc1", "fc2", "logits")


# ----------------------------------------------------------------------- training
def build_deepyeast(train: ImageSet, opts: DeepYeastOptions) -> tuple[DeepYeast, ModelMeta]:
    base = DeepYeastConfig()
    scale = lambda ws: tuple(max(4, int(round(w * opts.width))) for w in ws)  # noqa: E731
    cfg = DeepYeastConfig(in_channels=train.n_channels, n_classes=len(train.class_names),
                          input_size=opts.input_size, widths=scale(base.widths), fc_widths=scale(base.fc_widths))
    meta = ModelMeta("deepyeast", config_to_dict(cfg), list(train.class_names), opts.channels)
    return DeepYeast(cfg), meta


def _init_from(model: DeepYeast, path, crop_scale: str | None) -> Normalization:
    """Copy weights from a DeepYeast model file; a different number of classes re-starts
    only the output layer (fine-tuning to new classes). The inputs must be prepared alike."""
    prev = load_model(path, expect_kind="deepyeast")
    a, b = prev.model.config, model.config
    if (a.in_channels, a.input_size, a.widths, a.fc_widths) != (b.in_channels, b.input_size, b.widths, b.fc_widths):
        raise InputError(f"cannot start from this model: it was built for {a}, the data and options need {b}", path)
    was = prev.meta.training.get("input", {}).get("crop_scale")
    if was != crop_scale:
        raise InputError(f"cannot start from this model: it was trained with crop scaling {was or 'none'}, "
                         f"this run uses {crop_scale or 'none'}", path)
    state = prev.model.state_dict()
    if a.n_classes != b.n_classes:
        state = {k: v for k, v in state.items() if not k.startswith("out.")}
    model.load_state_dict(state, strict=a.n_classes == b.n_classes)
    return Normalization.from_dict(prev.meta.normalization)


def train_deepyeast(train_dir: str | Path, out: str | Path | None, opts: DeepYeastOptions | None = None,
                    cfg: TrainConfig | None = None, val_dir: str | Path | None = None, *,
                    callback: ProgressCallback = None, cancel: CancelToken | None = None, resume: bool = False,
                    init_from: str | Path | None = None, load_progress=None) -> TrainResult:
    """Train DeepYeast on the crops of ``train_dir`` and write ``out`` (best on validation loss).

    Validation: ``val_dir`` if given, else a hold-out of ``opts.val_fraction`` by position/group
    (``opts.val_split='position'``), at random (``'random'``) or none (``None``)."""
    opts, cfg = opts or DeepYeastOptions(), cfg or TrainConfig()
    cfg.validate()
    train = load_crops(train_dir, opts, load_progress)
    val = None
    if val_dir is not None:
        val = align_labels(load_crops(val_dir, opts), train.class_names)
        if val.n_channels != train.n_channels:
            raise InputError(f"validation crops have {val.n_channels} channel(s), training crops "
                             f"{train.n_channels}", val_dir)
    elif opts.val_split:
        train, val = holdout(train, opts.val_split, opts.val_fraction, cfg.seed)
    if len(train.class_names) < 2:
        raise InputError("need at least 2 classes (class folders) to train a classifier", train_dir)
    train.images = scale_crops(train.images, opts.crop_scale)
    if val is not None:
        val.images = scale_crops(val.images, opts.crop_scale)
    import torch

    torch.manual_seed(cfg.seed)  # the initial weights too are a function of the seed
    model, meta = build_deepyeast(train, opts)
    norm = _init_from(model, init_from, opts.crop_scale) if init_from is not None else \
        Normalization.fit(train.images, opts.clip_percentiles, seed=cfg.seed)
    meta.normalization = norm.to_dict()
    meta.training.update(data=str(train_dir), n_train=len(train), val=str(val_dir) if val_dir else opts.val_split,
                         input={"channel_files": opts.channel_files, "group_regex": opts.group_regex,
                                "input_size": opts.input_size, "crop_scale": opts.crop_scale})
    trainer = Trainer(model, meta, cfg, opts.augment, norm, out=Path(out) if out else None,
                      callback=callback, cancel=cancel)
    return trainer.fit(train, val, resume=resume)


# ---------------------------------------------------------------------- inference
def as_loaded(model: str | Path | LoadedModel) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model, expect_kind="deepyeast")


def model_options(lm: LoadedModel, opts: DeepYeastOptions | None = None) -> DeepYeastOptions:
    """Options for reading crops for ``lm``: what the user gave, else what the model was trained with."""
    opts = opts or DeepYeastOptions()
    stored = lm.meta.training.get("input", {})
    opts.channels = opts.channels if opts.channels is not None else lm.meta.channels
    opts.channel_files = opts.channel_files or stored.get("channel_files")
    opts.group_regex = opts.group_regex or stored.get("group_regex")
    opts.input_size = lm.model.config.input_size
    opts.model_classes = list(lm.meta.class_names)
    return opts


def _prepare(lm: LoadedModel, crops) -> np.ndarray:
    x = to_float(np.asarray(crops))
    if x.ndim != 4:
        raise InputError(f"crops must be (N, C, H, W), got shape {x.shape}")
    if x.shape[1] != lm.model.config.in_channels:
        raise InputError(f"the model expects {lm.model.config.in_channels} channel(s) but the crops have "
                         f"{x.shape[1]}; choose them with --channels")
    return scale_crops(fit_size(x, lm.model.config.input_size), lm.meta.training.get("input", {}).get("crop_scale"))


def classify_crops(loaded, crops, *, device: str = "auto", batch_size: int = 256,
                   precision: str = "auto") -> np.ndarray:
    """(N, K) class probabilities of (N, C, H, W) crops (integer data scaled like image files).

    Runs the prediction copy of the network (:func:`core.predict.inference_model`: batch norm
    folded, channels_last) under ``precision`` ('auto': bf16 where the CPU has bf16 matrix
    units or on a GPU, see :func:`core.device.resolve_precision`; 'fp32' for bit-for-bit
    float32). On a CPU with AMX bf16 is ~4x faster than the float32 NCHW path with the same
    argmax; without bf16 instructions 'auto' is fp32, 1.16x faster (``benchmarks/speed.py``,
    docs/performance.md)."""
    from ..device import resolve_device, resolve_precision
    from ..inference.predict import inference_model

    lm = as_loaded(loaded)
    x = _prepare(lm, crops)
    dev = resolve_device(device)
    amp = resolve_precision(precision, dev)
    lm.model.to(dev)
    net = inference_model(lm, dev)
    norm = Normalization.from_dict(lm.meta.normalization)
    return evaluate_arrays(net, x, None, norm, dev, batch_size, amp, True)["probabilities"]


def embed_crops(loaded, crops, layer: str = "fc1", *, device: str = "auto", batch_size: int = 128) -> np.ndarray:
    """(N, D) activations of ``layer``: 'fc1' (the paper's transfer features), 'fc2', 'logits',
    'conv8' (flattened, as ``DeepYeast.embed``) or 'conv1'..'conv7' (averaged over space)."""
    import torch

    from ..device import resolve_device
    from ..inference.arrays import to_model_input

    if layer not in LAYERS:
        raise InputError(f"unknown layer {layer!r}; choose one of {', '.join(LAYERS)}")
    lm = as_loaded(loaded)
    x = _prepare(lm, crops)
    dev = resolve_device(device)
    model = lm.model.to(dev).eval()
    norm = Normalization.from_dict(lm.meta.normalization)
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            h = to_model_input(torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size])), norm, dev, False)
            if layer in ("conv8", "fc1", "fc2", "logits"):
                out.append(model.embed(h, layer).float().cpu().numpy())
                continue
            k, seen = int(layer[4:]), 0
            for m in model.features:
                h = m(h)
                seen += isinstance(m, torch.nn.ReLU)
                if seen == k:
                    break
            out.append(h.mean((2, 3)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def group_summary(probs: np.ndarray, labels: np.ndarray, groups: Sequence[str], class_names: Sequence[str],
                  min_cells: int = 10) -> dict:
    """Per-group (protein) accuracy from the Dirichlet posterior, when groups are meaningful:
    more than one group, fewer groups than cells and one true class per group."""
    from .aggregate import aggregate, group_accuracy

    groups = list(groups)
    keys = set(groups)
    if not groups or not 1 < len(keys) < len(groups):
        return {}
    truth: dict = {}
    for g, y in zip(groups, labels):
        if truth.setdefault(g, int(y)) != int(y):
            return {"groups_note": f"group {g!r} holds cells of several classes; no per-group accuracy"}
    post = aggregate(probs, groups, class_names)
    out = {"group_accuracy": group_accuracy(post, truth), "n_groups": len(post)}
    big = [p for p in post if p.n_cells >= min_cells]
    if big:
        out[f"group_accuracy_min{min_cells}"] = group_accuracy(big, truth)
        out[f"n_groups_min{min_cells}"] = len(big)
    return out


def evaluate_deepyeast(model, test_dir: str | Path, *, device: str = "auto", opts: DeepYeastOptions | None = None,
                       args=None, batch_size: int = 128, min_cells: int = 10, progress=None,
                       return_probabilities: bool = False) -> dict:
    """accuracy, n, per_class{name: precision, recall, n}, confusion and, with groups,
    group_accuracy and n_groups (also for groups of at least ``min_cells`` cells)."""
    from ..metrics import multiclass_metrics

    lm = as_loaded(model)
    if opts is None and args is not None:
        opts = options_from_args(args)
    opts = model_options(lm, opts)
    data = align_labels(load_crops(test_dir, opts, progress), lm.meta.class_names)
    probs = classify_crops(lm, data.images, device=device, batch_size=batch_size)
    out = multiclass_metrics(data.labels, probs.argmax(1), lm.meta.class_names)
    out.update(group_summary(probs, data.labels, data.groups, lm.meta.class_names, min_cells))
    if return_probabilities:
        out["probabilities"], out["labels"], out["groups"] = probs, data.labels, data.groups
    return out


# ------------------------------------------------------------------ fields, predict
from .fields import FieldResult, classify_field, predict_deepyeast_cli  # noqa: E402,F401

__all__ = ["DeepYeastOptions", "options_from_args", "load_crops", "fit_size", "scale_crops", "align_labels",
           "holdout", "split_keys", "as_loaded", "model_options",
           "train_deepyeast", "evaluate_deepyeast", "classify_crops", "embed_crops", "group_summary",
           "FieldResult", "classify_field", "predict_deepyeast_cli", "LAYERS"]
