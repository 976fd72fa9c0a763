"""DeepYeast training: build the network for the crops, optionally start from another
model's weights (fine-tuning to new classes), and run the one :class:`Trainer`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..cells.crops import centre_diameters
from ..errors import InputError
from ..inputs.normalize import Normalization
from ..inputs.shift import fit_input_stats
from ..io.folders import ImageSet
from ..io.modelfile import LoadedModel, ModelMeta, load_model, save_model
from ..nets.deepyeast import DeepYeast, DeepYeastConfig
from ..nets.registry import config_to_dict
from ..progress import CancelToken, ProgressCallback
from ..training.trainer import TrainConfig, Trainer, TrainResult
from .classify import classify_crops, embed_crops
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
                          scale_percentiles=opts.scale_percentiles, smooth=opts.smooth)
    raw = train.images
    train.images = norm.scale_samples(raw)  # each crop by its own percentiles (model-stored)
    val_raw = None
    if val is not None:
        val_raw = val.images
        val.images = norm.scale_samples(val_raw)
    meta.normalization = norm.to_dict()
    meta.channel_names = list(opts.channel_names) if opts.channel_names else None
    meta.training.update(data=str(train_dir), n_train=len(train), val=str(val_dir) if val_dir else opts.val_split,
                         input={"channel_files": opts.channel_files, "group_regex": opts.group_regex,
                                "input_size": opts.input_size, "crop_scale": opts.crop_scale})
    trainer = Trainer(model, meta, cfg, opts.augment, norm, out=Path(out) if out else None,
                      callback=callback, cancel=cancel)
    res = trainer.fit(train, val, resume=resume)
    if res.best_epoch > 0 and trainer.dist.is_main:
        # what the training cells looked like, for the shift checks of every prediction
        res.meta.input_stats = crop_input_stats(LoadedModel(res.model, res.meta), raw, train.labels,
                                                held_out=val_raw)
        if res.best_path is not None:
            save_model(res.best_path, res.model, res.meta)
    return res


def crop_input_stats(lm: LoadedModel, crops: np.ndarray, labels: np.ndarray | None = None,
                     device: str = "cpu", held_out: np.ndarray | None = None) -> dict:
    """:func:`core.inputs.shift.fit_input_stats` of training crops (as read): intensities,
    the fc1 embedding, and the cells' size: the diameter of the object at each crop's centre
    on the first channel (:func:`core.cells.crops.centre_diameters`), the median of the most
    common class (a field is mostly that class) and of every class; and how confidently the
    model calls the ``held_out`` (validation) crops (the training crops without them)."""
    d = centre_diameters(np.asarray(crops)[:, 0])
    labels = np.zeros(len(d), int) if labels is None else np.asarray(labels)
    by_class = {lm.meta.class_names[k]: float(np.nanmedian(d[labels == k])) for k in np.unique(labels)
                if np.isfinite(d[labels == k]).any()}
    common = int(np.bincount(labels).argmax())
    scored = crops if held_out is None or not len(held_out) else held_out
    stats = fit_input_stats(crops, embeddings=embed_crops(lm, crops, "fc1", device=device),
                            diameter=float(np.nanmedian(d[labels == common])) if np.isfinite(d).any() else None,
                            probabilities=classify_crops(lm, scored, device=device))
    stats["confidence"]["source"] = "training" if scored is crops else "validation"
    stats["object_diameter_by_class"] = by_class
    return stats
