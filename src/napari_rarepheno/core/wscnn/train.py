"""WSCNN tasks: train on a labeled folder, evaluate classification and localisation.

The folder contract is ``DATA/{train,val,test}/{negative,positive}/*`` with optional
``DATA/<split>/objects.csv`` ground-truth boxes (see ``core.io.boxes``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..device import resolve_device, resolve_precision
from ..errors import InputError
from ..inference.border import border_decision, border_margin, pad_border
from ..inference.saliency import calibrate_cam, positive_index
from ..inputs.normalize import Normalization
from ..io.atomic import remove_stale_temps
from ..io.folders import ImageSet, drop_empty_channels, find_splits, load_wscnn_split
from ..io.modelfile import (
    LoadedModel,
    ModelMeta,
    check_model_output,
    load_model,
    save_model,
)
from ..nets.registry import config_to_dict
from ..nets.wscnn import WSCNN, WSCNNConfig
from ..progress import CancelToken, ProgressCallback
from ..training.augment import AugmentConfig
from ..training.trainer import TrainConfig, Trainer, TrainResult, checkpoint_paths
from .shift import image_input_stats


@dataclass
class WSCNNOptions:
    """Network options chosen by the user (the rest comes from the data)."""

    depth: int = 4
    head: str = "max"
    conv2_kernel: int = 3
    channels: list[int] | None = None   # channels of the files to use (None: every channel that holds signal)
    channel_files: list[str] | None = None  # one file per channel: substrings/regexes naming each channel's file
    channel_names: list[str] | None = None  # what each input channel is, kept in the model (mosaic.json's if None)
    pool_first: bool | None = None      # WSCNNConfig.pool_first; None: yes, except under the paper recipe
    val_fraction: float = 0.2           # used only when DATA has no val/ split
    scale: str | None = None            # per-image intensity scaling: None | 'percentile' (Normalization.scale)
    scale_percentiles: tuple[float, float] = (1.0, 99.8)
    augment: AugmentConfig = field(default_factory=AugmentConfig.wscnn_paper)


def holdout_split(data: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Stratified hold-out of ``fraction`` of each class (for data without a val/ split)."""
    rng = np.random.default_rng(seed)
    val_idx = []
    for c in np.unique(data.labels):
        idx = np.flatnonzero(data.labels == c)
        k = max(1, int(round(len(idx) * fraction))) if len(idx) > 1 else 0
        val_idx += list(rng.choice(idx, k, replace=False))
    val_mask = np.zeros(len(data), bool)
    val_mask[val_idx] = True
    return data.subset(np.flatnonzero(~val_mask)), data.subset(np.flatnonzero(val_mask))


def load_train_val(data_dir: str | Path, opts: WSCNNOptions, seed: int = 0,
                   callback: ProgressCallback = None) -> tuple[ImageSet, ImageSet | None, list[int] | None]:
    """(train, val, the channel selection the model keeps): channels nobody records (zero in
    every training image, e.g. the blue of RGB mosaics) are left out unless chosen."""
    splits = find_splits(data_dir)
    if "train" not in splits:
        raise InputError("no train/ split (expected DATA/train/{negative,positive}/)", data_dir)
    min_size = WSCNN(WSCNNConfig(conv2_kernel=opts.conv2_kernel, depth=opts.depth)).min_input_size
    train = load_wscnn_split(splits["train"], opts.channels, min_size, callback, opts.channel_files)
    train, channels = drop_empty_channels(train, opts.channels)
    few = [train.class_names[c] for c in (0, 1) if (train.labels == c).sum() < 2]
    if few:
        raise InputError(f"need at least 2 training images in each of negative/ and positive/; too few in "
                         f"{', '.join(few)}/", splits["train"])
    if "val" in splits:
        val = load_wscnn_split(splits["val"], channels, min_size, channel_files=opts.channel_files)
        if val.n_channels != train.n_channels:
            raise InputError(f"val/ images have {val.n_channels} channel(s) but train/ images have "
                             f"{train.n_channels}", splits["val"])
        if val.images.shape[2:] != train.images.shape[2:]:
            H = max(val.images.shape[2], train.images.shape[2])
            W = max(val.images.shape[3], train.images.shape[3])
            val.images = _pad_to(val.images, H, W)
            train.images = _pad_to(train.images, H, W)
    else:
        train, val = holdout_split(train, opts.val_fraction, seed)
    return train, val, channels


def _mosaic_channel_names(data_dir: str | Path) -> list[str] | None:
    """Names a data set records for its files' channels (``mosaic.json``)."""
    info = Path(data_dir) / "mosaic.json"
    try:
        names = json.loads(info.read_text()).get("channel_names") if info.is_file() else None
    except (OSError, ValueError):
        return None
    return [str(n) for n in names] if isinstance(names, list) and names else None


def _pad_to(a: np.ndarray, H: int, W: int) -> np.ndarray:
    if a.shape[2:] == (H, W):
        return a
    out = np.zeros(a.shape[:2] + (H, W), a.dtype)
    out[:, :, : a.shape[2], : a.shape[3]] = a
    return out


def build_wscnn(train: ImageSet, opts: WSCNNOptions, seed: int = 0) -> tuple[WSCNN, ModelMeta]:
    import torch

    cfg = WSCNNConfig(in_channels=train.n_channels, n_classes=2, depth=opts.depth, head=opts.head,
                      conv2_kernel=opts.conv2_kernel, pool_first=bool(opts.pool_first),
                      input_size=tuple(train.images.shape[2:]) if opts.head == "fc" else None)
    torch.manual_seed(seed)  # the initial weights are part of the seeded run
    model = WSCNN(cfg)
    meta = ModelMeta("wscnn", config_to_dict(cfg), list(train.class_names), opts.channels,
                     channel_names=list(opts.channel_names)[:train.n_channels] if opts.channel_names else None)
    return model, meta


def _cam_shift(res, val, norm) -> list[int] | None:
    """Where the class maps' evidence sits relative to the objects, measured on up to 16
    validation positives as prediction sees them (``inference.saliency.calibrate_cam``)."""
    loaded = LoadedModel(res.model, res.meta)
    t = positive_index(res.meta.class_names)
    pos = np.flatnonzero(np.asarray(val.labels) == t)[:16]
    if not len(pos):
        return None
    x = pad_border(val.images[pos], border_margin(loaded))
    dev = next(res.model.parameters()).device
    shift = calibrate_cam(res.model, norm.apply_torch(torch.from_numpy(np.ascontiguousarray(x)).to(dev)), t)
    return None if shift is None else list(shift)


def train_wscnn(data_dir: str | Path, out: str | Path | None, opts: WSCNNOptions | None = None,
                cfg: TrainConfig | None = None, *, callback: ProgressCallback = None,
                cancel: CancelToken | None = None, resume: bool = False,
                init_from: str | Path | None = None, load_callback: ProgressCallback = None) -> TrainResult:
    """Train a WSCNN on ``DATA/train`` (validating on ``DATA/val``) and write ``out``.

    ``init_from`` continues training from an existing model file (fine-tuning)."""

    opts = opts or WSCNNOptions()
    cfg = cfg or TrainConfig()
    cfg.validate()
    # fail before reading any image: a bad device or an unwritable --out would otherwise
    # only show after the data set is loaded (or, for --out, after the first epoch)
    resolve_precision(cfg.precision, resolve_device(cfg.device))
    if out:
        check_model_output(out)
        remove_stale_temps(*checkpoint_paths(Path(out)))  # left by a killed run; the real files are intact
    prev = load_model(init_from, expect_kind="wscnn") if init_from is not None else None
    if opts.pool_first is None:  # a continued model keeps its layer order
        opts = replace(opts, pool_first=prev.model.config.pool_first if prev else cfg.recipe != "paper")
    train, val, channels = load_train_val(data_dir, opts, cfg.seed, load_callback)
    names = opts.channel_names
    if not names and (in_files := _mosaic_channel_names(data_dir)):  # names of the files' channels
        names = [in_files[c] if c < len(in_files) else f"channel {c}" for c in (channels or range(train.n_channels))]
    opts = replace(opts, channels=channels, channel_names=names)
    model, meta = build_wscnn(train, opts, cfg.seed)
    if prev is not None:
        if prev.model.config != model.config:
            raise InputError(f"cannot continue training: the model was built for {prev.model.config}, the data "
                             f"and options need {model.config}", init_from)
        model.load_state_dict(prev.model.state_dict())
        norm = Normalization.of_model(prev.meta)
    else:
        norm = Normalization.fit(train.images, seed=cfg.seed, scale=opts.scale,
                                 scale_percentiles=opts.scale_percentiles)
    raw = train.images
    train.images = norm.scale_samples(raw)  # each image by its own percentiles (model-stored)
    if val is not None:
        val.images = norm.scale_samples(val.images)
    meta.normalization = norm.to_dict()
    meta.training.update(data=str(data_dir), n_train=len(train), image_size=list(train.images.shape[2:]),
                         input={"channel_files": opts.channel_files})
    variants, margin = {}, 0
    if val is not None and len(val):
        # the max head is validated with and without the border margin prediction can add;
        # the better one picks the best checkpoint and is recorded for prediction

        margin = border_margin(LoadedModel(model, meta), recorded=False)
        if margin:
            variants["border"] = pad_border(val.images, margin)
    trainer = Trainer(model, meta, cfg, opts.augment, norm, out=Path(out) if out else None,
                      callback=callback, cancel=cancel)
    res = trainer.fit(train, val, resume=resume, val_variants=variants)
    if res.best_epoch > 0:
        if margin:
            best = next(r for r in res.history if r["epoch"] == res.best_epoch)
            if "val_loss_border" in best:  # not when the best epoch came from a run started before this check
                res.meta.training.update(border_decision(best, margin))
        res.meta.input_stats = image_input_stats(raw)  # for the shift checks of every prediction
        if val is not None and len(val):
            res.meta.training["cam_shift"] = _cam_shift(res, val, norm)
        if res.best_path is not None and trainer.dist.is_main:
            save_model(res.best_path, res.model, res.meta)
    return res
