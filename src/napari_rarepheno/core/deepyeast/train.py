"""DeepYeast training: build the network for the crops, optionally start from another
model's weights (fine-tuning to new classes), and run the one :class:`Trainer`."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from ..inputs.normalize import Normalization
from ..io.folders import ImageSet
from ..io.modelfile import ModelMeta, load_model
from ..nets.deepyeast import DeepYeast, DeepYeastConfig
from ..nets.registry import config_to_dict
from ..progress import CancelToken, ProgressCallback
from ..training.trainer import TrainConfig, Trainer, TrainResult
from .data import DeepYeastOptions, align_labels, holdout, load_crops


def build_deepyeast(train: ImageSet, opts: DeepYeastOptions) -> tuple[DeepYeast, ModelMeta]:
    base = DeepYeastConfig()
    scale = lambda ws: tuple(max(4, int(round(w * opts.width))) for w in ws)  # noqa: E731
    cfg = DeepYeastConfig(in_channels=train.n_channels, n_classes=len(train.class_names),
                          input_size=opts.input_size, widths=scale(base.widths), fc_widths=scale(base.fc_widths))
    meta = ModelMeta("deepyeast", config_to_dict(cfg), list(train.class_names), opts.channels)
    return DeepYeast(cfg), meta


def _init_from(model: DeepYeast, path, crop_scale: str | None) -> Normalization:
    """Copy weights from a DeepYeast model file; a different number of classes re-starts
    only the output layer (fine-tuning to new classes). The inputs must be prepared alike:
    the new crops are normalised with that model's normalisation."""
    prev = load_model(path, expect_kind="deepyeast")
    a, b = prev.model.config, model.config
    if (a.in_channels, a.input_size, a.widths, a.fc_widths) != (b.in_channels, b.input_size, b.widths, b.fc_widths):
        raise InputError(f"cannot start from this model: it was built for {a}, the data and options need {b}", path)
    was = Normalization.of_model(prev.meta).scale
    if was != crop_scale:
        raise InputError(f"cannot start from this model: it was trained with crop scaling {was or 'none'}, "
                         f"this run uses {crop_scale or 'none'}", path)
    state = prev.model.state_dict()
    if a.n_classes != b.n_classes:
        state = {k: v for k, v in state.items() if not k.startswith("out.")}
    model.load_state_dict(state, strict=a.n_classes == b.n_classes)
    return Normalization.of_model(prev.meta)


def train_deepyeast(train_dir: str | Path, out: str | Path | None, opts: DeepYeastOptions | None = None,
                    cfg: TrainConfig | None = None, val_dir: str | Path | None = None, *,
                    callback: ProgressCallback = None, cancel: CancelToken | None = None, resume: bool = False,
                    init_from: str | Path | None = None, load_callback: ProgressCallback = None) -> TrainResult:
    """Train DeepYeast on the crops of ``train_dir`` and write ``out`` (best on validation loss).

    Validation: ``val_dir`` if given, else a hold-out of ``opts.val_fraction`` by position/group
    (``opts.val_split='position'``), at random (``'random'``) or none (``None``)."""
    opts, cfg = opts or DeepYeastOptions(), cfg or TrainConfig()
    cfg.validate()
    train = load_crops(train_dir, opts, load_callback)
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
    torch.manual_seed(cfg.seed)  # the initial weights too are a function of the seed
    model, meta = build_deepyeast(train, opts)
    norm = _init_from(model, init_from, opts.crop_scale) if init_from is not None else \
        Normalization.fit(train.images, opts.clip_percentiles, seed=cfg.seed, scale=opts.crop_scale,
                          scale_percentiles=opts.scale_percentiles)
    train.images = norm.scale_samples(train.images)  # each crop by its own percentiles (model-stored)
    if val is not None:
        val.images = norm.scale_samples(val.images)
    meta.normalization = norm.to_dict()
    meta.training.update(data=str(train_dir), n_train=len(train), val=str(val_dir) if val_dir else opts.val_split,
                         input={"channel_files": opts.channel_files, "group_regex": opts.group_regex,
                                "input_size": opts.input_size, "crop_scale": opts.crop_scale})
    trainer = Trainer(model, meta, cfg, opts.augment, norm, out=Path(out) if out else None,
                      callback=callback, cancel=cancel)
    return trainer.fit(train, val, resume=resume)
