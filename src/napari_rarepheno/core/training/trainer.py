"""One trainer for both networks.

In-memory images (N, C, H, W), augmentation and normalisation on the training device,
seeded per epoch (so a resumed run replays exactly what an uninterrupted one does),
mixed precision where the device supports it, a progress callback and a cancel token,
best-and-last checkpoints written atomically, a training-log CSV, and
DistributedDataParallel when launched by ``torchrun`` (each rank takes its share of
every global batch, so N processes compute what one process would).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..device import (
    cpu_allocator_tuned,
    fits_on_device,
    resolve_device,
    resolve_precision,
    set_threads,
)
from ..errors import InputError
from ..inference.arrays import evaluate_arrays, to_model_input
from ..inputs.normalize import Normalization
from ..io.folders import ImageSet
from ..io.modelfile import (
    ModelMeta,
    flatten_state,
    read_tensors,
    save_model,
    unflatten_state,
    write_tensors,
)
from ..io.tables import write_csv
from ..nets.folding import inference_copy
from ..progress import CancelToken, Progress, ProgressCallback
from . import distributed as dist_util
from .augment import AugmentConfig, augment_batch
from .batchnorm import recompute_bn_statistics
from .schedule import LRSchedule, recipe_for


CLASS_WEIGHTS = ("none", "sqrt", "balanced")


def class_weights(labels: np.ndarray, n_classes: int, how: str = "none") -> torch.Tensor | None:
    """Cross-entropy weights per class from the training labels (:attr:`TrainConfig.class_weights`);
    None for "none". Classes without training images get weight 1."""
    if how == "none":
        return None
    counts = np.bincount(np.asarray(labels, np.int64), minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.ones(n_classes)
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    return torch.tensor(w ** (0.5 if how == "sqrt" else 1.0), dtype=torch.float32)


@dataclass
class TrainConfig:
    epochs: int = 20
    recipe: str = "fast"                 # "paper" | "fast"
    batch_size: int | None = None        # None: the recipe's (50 WSCNN, 100 DeepYeast)
    lr: float | None = None              # None: the recipe's
    weight_decay: float = 5e-4
    momentum: float = 0.9
    plateau_patience: int = 2
    step_every: int = 5
    device: str = "auto"
    precision: str = "auto"              # auto | fp32 | bf16 | fp16
    channels_last: bool = True
    seed: int = 0
    threads: int | None = None
    select_on: str = "val_loss"          # val_loss | val_accuracy
    eval_batch_size: int = 64
    early_stop: int | None = None        # stop after this many epochs without a new best
    # batch-norm statistics recomputed after every epoch on this many un-augmented training
    # images ("precise BN"); None: when the augmentation changes image statistics
    # (rotation/scaling/translation), else off; 0: off
    precise_bn: int | None = None
    # loss weight per class from the training counts: "none", "sqrt" ((n / (K n_k)) ** 0.5) or
    # "balanced" (n / (K n_k)): a rare class counts as much as a common one in the loss
    class_weights: str = "none"

    def validate(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise InputError(f"epochs must be a positive whole number, got {self.epochs}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise InputError(f"batch size must be a positive whole number, got {self.batch_size}")
        if self.lr is not None and not self.lr > 0:
            raise InputError(f"learning rate must be positive, got {self.lr}")
        if self.precise_bn is not None and (not isinstance(self.precise_bn, int) or self.precise_bn < 0):
            raise InputError(f"precise_bn must be a whole number of images >= 0, got {self.precise_bn}")
        if self.class_weights not in CLASS_WEIGHTS:
            raise InputError(f"class weights must be one of {', '.join(CLASS_WEIGHTS)}, got {self.class_weights!r}")
        if self.select_on not in ("val_loss", "val_accuracy"):
            raise InputError(f"select_on must be val_loss or val_accuracy, got {self.select_on!r}")


@dataclass
class TrainResult:
    model: nn.Module
    meta: ModelMeta
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_path: Path | None = None
    last_path: Path | None = None
    log_path: Path | None = None
    cancelled: bool = False
    seconds: float = 0.0


def checkpoint_paths(out: Path) -> tuple[Path, Path, Path]:
    """(best model file, last training state, training log CSV) for ``--out MODEL``."""
    out = Path(out)
    stem = out.name[: -len(".safetensors")] if out.name.endswith(".safetensors") else out.name
    return out, out.with_name(stem + ".last.safetensors"), out.with_name(stem + ".log.csv")


def _seed_for(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 17) % (2 ** 63)


def make_optimizer(model: nn.Module, name: str, lr: float, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")


class Trainer:
    """Trains ``model`` on an :class:`ImageSet`; see :func:`fit` for the one-call form."""

    def __init__(self, model: nn.Module, meta: ModelMeta, cfg: TrainConfig, augment: AugmentConfig,
                 normalization: Normalization, out: Path | None = None,
                 callback: ProgressCallback = None, cancel: CancelToken | None = None):
        cfg.validate()
        self.cfg, self.meta, self.augment, self.norm = cfg, meta, augment, normalization
        self.callback, self.cancel = callback, cancel or CancelToken()
        self.recipe = recipe_for(meta.kind, cfg.recipe)
        self.batch_size = cfg.batch_size or self.recipe["batch_size"]
        self.lr = cfg.lr or self.recipe["lr"]
        set_threads(cfg.threads)
        self.dist = dist_util.setup()
        self.device = resolve_device(cfg.device)
        self.amp_dtype = resolve_precision(cfg.precision, self.device)
        self.channels_last = cfg.channels_last and self.device.type != "mps"
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels once
        torch.manual_seed(cfg.seed)
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model, self.net = dist_util.wrap(self.model, self.dist, self.device)
        self.opt = make_optimizer(self.model, self.recipe["optimizer"], self.lr, cfg)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.paths = checkpoint_paths(out) if out is not None else None
        self.history: list[dict] = []
        self.best_score = math.inf
        self.best_epoch = 0
        self.start_epoch = 0

    # -------------------------------------------------------------- checkpoints
    def _state(self, epoch: int) -> tuple[dict, dict]:
        tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        skel = {
            "epoch": epoch,
            "optimizer": flatten_state(self.opt.state_dict(), "opt", tensors),
            "scaler": flatten_state(self.scaler.state_dict(), "scaler", tensors),
            "schedule": self.schedule.state_dict(),
            "history": self.history,
            "best_score": None if not math.isfinite(self.best_score) else self.best_score,
            "best_epoch": self.best_epoch,
            "config": asdict(self.cfg),
        }
        return tensors, {"meta": self._meta_doc(), "train_state": skel}

    def _meta_doc(self) -> dict:
        import json
        return json.loads(self.meta.to_json())

    def save_last(self, epoch: int) -> None:
        if self.paths is None or not self.dist.is_main:
            return
        tensors, doc = self._state(epoch)
        write_tensors(self.paths[1], tensors, doc)

    def save_best(self) -> None:
        if self.paths is None or not self.dist.is_main:
            return
        save_model(self.paths[0], self.model, self.meta)

    def write_log(self) -> None:
        if self.paths is None or not self.dist.is_main or not self.history:
            return
        # columns: the union over all rows (a run resumed from an older version's state adds
        # some); disk full or folder gone: the previous log stays as it was
        write_csv(self.paths[2], self.history, what="the training log")

    def resume(self) -> bool:
        """Restore the last completed epoch from ``*.last.safetensors``; False if there is none."""
        if self.paths is None or not self.paths[1].exists():
            return False
        tensors, doc = read_tensors(self.paths[1])
        st = doc.get("train_state")
        if st is None:
            raise InputError("not a training-state file; cannot resume from it", self.paths[1])
        if doc["meta"]["kind"] != self.meta.kind or doc["meta"]["config"] != self._meta_doc()["config"]:
            raise InputError("cannot resume: the saved run used a different network or configuration "
                             f"({doc['meta']['kind']} {doc['meta']['config']})", self.paths[1])
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.opt.load_state_dict(unflatten_state(st["optimizer"], tensors))
        self.scaler.load_state_dict(unflatten_state(st["scaler"], tensors))
        self.schedule.load_state_dict(st["schedule"])
        self.history = st["history"]
        self.best_score = math.inf if st["best_score"] is None else st["best_score"]
        self.best_epoch = st["best_epoch"]
        self.start_epoch = st["epoch"]
        return True

    # -------------------------------------------------------------------- loop
    def _emit(self, **kw) -> None:
        if self.callback is not None and self.dist.is_main:
            self.callback(Progress(n_epochs=self.cfg.epochs, **kw))

    def fit(self, train: ImageSet, val: ImageSet | None = None, resume: bool = False,
            val_variants: dict[str, np.ndarray] | None = None) -> TrainResult:
        """Train; validate after every epoch on ``val``.

        ``val_variants``: other ways of presenting the same val images to the network (e.g.
        ``{"border": padded}``), each scored every epoch beside the plain images
        (``val_loss_plain``, ``val_loss_<name>`` ... in the log); the epoch's ``val_loss`` /
        ``val_accuracy`` are those of the lowest-loss one, named in ``val_input``, so the
        best checkpoint and the plateau schedule follow the better presentation."""
        with cpu_allocator_tuned(self.device.type == "cpu"):
            return self._fit(train, val, resume, val_variants or {})

    def _validate(self, val: ImageSet, variants: dict[str, np.ndarray]) -> dict:
        net = self.model
        if getattr(net, "kind", None) == "wscnn" and not self.dist.enabled:  # DDP: SyncBatchNorm, no deepcopy

            net = inference_copy(net, self.channels_last)  # BN folded: ~18% faster on CPU, same outputs

        def ev(images):
            return evaluate_arrays(net, images, val.labels, self.norm, self.device, self.cfg.eval_batch_size,
                                   self.amp_dtype, self.channels_last)
        plain = ev(val.images)
        if not variants:
            return {"val_loss": plain["loss"], "val_accuracy": plain["accuracy"]}
        scored = {"plain": plain, **{name: ev(images) for name, images in variants.items()}}
        pick = min(scored, key=lambda k: scored[k]["loss"])
        row = {"val_loss": scored[pick]["loss"], "val_accuracy": scored[pick]["accuracy"], "val_input": pick}
        for name, e in scored.items():
            row.update({f"val_loss_{name}": e["loss"], f"val_accuracy_{name}": e["accuracy"]})
        return row

    def _fit(self, train: ImageSet, val: ImageSet | None, resume: bool, val_variants: dict) -> TrainResult:
        n = len(train)
        if n < 2:
            raise InputError(f"need at least 2 training images, found {n}", train.root)
        bs = min(self.batch_size, n)
        n_batches = max(1, n // bs)
        self.schedule = LRSchedule(self.recipe["schedule"], self.lr, self.cfg.epochs * n_batches,
                                   factor=self.recipe["factor"], patience=self.cfg.plateau_patience,
                                   step_every=self.cfg.step_every)
        if resume and not self.resume():
            resume = False
        images = torch.from_numpy(np.ascontiguousarray(train.images))
        labels = torch.from_numpy(train.labels)
        n_out = int(getattr(getattr(self.model, "config", None), "n_classes", 0) or int(train.labels.max()) + 1)
        weights = class_weights(train.labels, n_out, self.cfg.class_weights)
        weights = None if weights is None else weights.to(self.device)
        if fits_on_device(images, self.device):
            # GPU: the uint8 images live on the device; batches are gathered there, no copies
            images, labels = images.to(self.device), labels.to(self.device)
        elif self.device.type == "cuda":
            images = images.pin_memory()
        t0 = time.perf_counter()
        cancelled = False
        self.net.train()
        for epoch in range(self.start_epoch, self.cfg.epochs):
            gen = torch.Generator().manual_seed(_seed_for(self.cfg.seed, epoch))
            torch.manual_seed(_seed_for(self.cfg.seed, epoch) + 1)
            perm = torch.randperm(n, generator=gen)
            run_loss, run_correct, seen = 0.0, 0, 0
            for b in range(n_batches):
                if self.cancel.cancelled:
                    cancelled = True
                    break
                idx = perm[b * bs:(b + 1) * bs]
                share = self.dist.share(len(idx))
                xb = augment_batch(images[idx].to(self.device, non_blocking=True), self.augment, gen, share,
                                   self.augment.strength(epoch + b / n_batches))
                yb = (labels[idx] if share is None else labels[idx][share]).to(self.device, non_blocking=True)
                xb = to_model_input(xb, self.norm, self.device, self.channels_last)
                for g in self.opt.param_groups:
                    g["lr"] = self.schedule.lr()
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    logits = self.net(xb)
                loss = F.cross_entropy(logits.float(), yb, weight=weights)
                self.opt.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.opt)
                self.scaler.update()
                self.schedule.after_batch()
                lv = float(loss.detach())
                if not math.isfinite(lv):
                    raise FloatingPointError(f"training diverged at epoch {epoch + 1}, batch {b + 1} (loss {lv}); "
                                             "lower the learning rate or check the images for extreme values")
                run_loss += lv * len(yb)
                run_correct += int((logits.argmax(1) == yb).sum())
                seen += len(yb)
                self._emit(stage="batch", epoch=epoch, batch=b + 1, n_batches=n_batches, loss=lv,
                           lr=self.schedule.lr(), elapsed=time.perf_counter() - t0)
            if cancelled:
                break
            self._precise_bn(images, epoch)
            # DDP: every rank saw its share; rank 0 logs the numbers of the whole epoch
            run_loss, run_correct, seen = dist_util.all_sum(self.dist, [run_loss, run_correct, seen])
            row = {"epoch": epoch + 1, "train_loss": run_loss / max(seen, 1),
                   "train_accuracy": run_correct / max(seen, 1), "lr": self.schedule.lr()}
            if val is not None and len(val):
                row.update(self._validate(val, val_variants))
                score = row["val_loss"] if self.cfg.select_on == "val_loss" else -row["val_accuracy"]
            else:
                score = row["train_loss"]
            row["seconds"] = round(time.perf_counter() - t0, 3)
            self.schedule.after_epoch(epoch + 1, row.get("val_loss"))
            self.history.append(row)
            is_best = score < self.best_score
            if is_best:
                self.best_score, self.best_epoch = score, epoch + 1
                self._update_meta(val)
                self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.save_best()
            self.save_last(epoch + 1)
            self.write_log()
            self._emit(stage="epoch", epoch=epoch + 1, batch=n_batches, n_batches=n_batches,
                       loss=row["train_loss"], lr=row["lr"], metrics=dict(row, best=is_best),
                       elapsed=time.perf_counter() - t0)
            if self.cfg.early_stop and epoch + 1 - self.best_epoch >= self.cfg.early_stop:
                break
        return self._finish(cancelled, val, time.perf_counter() - t0)

    def precise_bn_images(self) -> int:
        n = self.cfg.precise_bn
        if n is None:
            n = 512 if self.augment.changes_statistics() else 0
        return max(int(n), 0)

    def _precise_bn(self, images: torch.Tensor, epoch: int) -> None:
        """Batch-norm statistics from un-augmented training images (core.training.batchnorm); seeded
        per epoch, the same images on every rank."""
        n = min(self.precise_bn_images(), len(images))
        if n:
            gen = torch.Generator().manual_seed(_seed_for(self.cfg.seed, epoch) + 2)
            idx = torch.randperm(len(images), generator=gen)
            bs = self.batch_size
            batches = (to_model_input(images[idx[s:s + bs]].to(self.device, non_blocking=True), self.norm,
                                      self.device, self.channels_last) for s in range(0, n, bs))
            recompute_bn_statistics(self.model, batches, self.amp_dtype)

    def _update_meta(self, val: ImageSet | None) -> None:
        last = self.history[-1]
        self.meta.training.update(
            recipe=self.cfg.recipe, optimizer=self.recipe["optimizer"], lr=self.lr, batch_size=self.batch_size,
            epochs_planned=self.cfg.epochs, best_epoch=self.best_epoch, seed=self.cfg.seed,
            device=str(self.device), precision=str(self.amp_dtype or "fp32"), world_size=self.dist.world_size,
            augment=asdict(self.augment), precise_bn_images=self.precise_bn_images(),
            best_metrics={k: v for k, v in last.items() if k != "epoch"},
            n_val=len(val) if val is not None else 0)

    def _finish(self, cancelled: bool, val: ImageSet | None, seconds: float) -> TrainResult:
        best_path = last_path = log_path = None
        if self.paths is not None:
            best_path, last_path, log_path = self.paths
            if not best_path.exists() and self.dist.is_main:
                # stopped before any epoch ended: keep what there is, marked as such
                self.meta.training.update(best_epoch=0, note="stopped before the first epoch ended")
                self.save_best()
        if getattr(self, "_best_state", None) is not None:
            self.model.load_state_dict(self._best_state)
        if self.dist.enabled:
            dist_util.unsync_batchnorm(self.model)  # plain batch norm again outside this run
        self.model.eval()
        self._emit(stage="cancelled" if cancelled else "done", epoch=len(self.history),
                   metrics={"best_epoch": self.best_epoch, "best_path": str(best_path) if best_path else None},
                   message=("stopped; kept the best weights (epoch %d)" % self.best_epoch) if cancelled else "done",
                   elapsed=seconds)
        dist_util.barrier(self.dist)
        return TrainResult(self.model, self.meta, self.history, self.best_epoch, best_path, last_path, log_path,
                           cancelled, seconds)
