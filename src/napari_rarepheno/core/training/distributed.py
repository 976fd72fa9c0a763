"""DistributedDataParallel when launched by ``torchrun``; a no-op otherwise.

``torchrun --nproc_per_node=N -m napari_rarepheno.cli train ...`` sets RANK/WORLD_SIZE;
we then join the process group (NCCL on CUDA, gloo on CPU), wrap the model in DDP with
batch statistics synchronised over the global batch, give each rank an equal slice of
every *global* batch (so the effective batch and the augmentation draws equal a
single-process run), and only rank 0 writes checkpoints and logs.

Batch norm: on CUDA the layers become ``nn.SyncBatchNorm``. PyTorch's SyncBatchNorm
refuses CPU tensors, so on CPU (gloo) each batch-norm layer is switched in place to
:class:`_CPUSyncBatchNorm` (same parameters, buffers and state-dict keys; only
``forward`` differs), which all-gathers per-rank mean/variance/count in the forward pass
and all-reduces the two gradient sums in the backward pass. Training on N ranks then
computes what one process computes on the whole batch, up to float summation order
(``tests/core/test_ddp.py`` checks it). :func:`unsync_batchnorm` switches the layers back.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def share(self, n: int) -> slice | None:
        """This rank's slice of a global batch of ``n`` items (equal parts; a remainder is dropped)."""
        if not self.enabled:
            return None
        per = n // self.world_size
        if per < 1:
            raise ValueError(f"global batch of {n} cannot be split over {self.world_size} processes")
        return slice(self.rank * per, (self.rank + 1) * per)


def setup() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    initialized_here = False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        initialized_here = True
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo(dist.get_rank(), dist.get_world_size(), initialized_here)


# ------------------------------------------------------- batch norm over ranks on CPU
class _SyncBNFunction(torch.autograd.Function):
    """Batch norm with statistics of the global batch (all ranks), for any device gloo serves."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps, momentum, group):
        import torch.distributed as dist

        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        n = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64, device=x.device)
        mean = xf.mean(dims).double()
        m2 = (xf - mean.float().view(shape)).square().sum(dims).double()
        gathered = [torch.empty(1 + 2 * x.shape[1], dtype=torch.float64, device=x.device)
                    for _ in range(dist.get_world_size(group))]
        dist.all_gather(gathered, torch.cat([n, mean, m2]), group=group)
        g = torch.stack(gathered)                      # (world, 1 + 2C)
        counts, means, m2s = g[:, :1], g[:, 1:1 + x.shape[1]], g[:, 1 + x.shape[1]:]
        total = counts.sum()
        gmean = (counts * means).sum(0) / total        # Chan et al.: exact pooled mean/variance
        gm2 = (m2s + counts * (means - gmean).square()).sum(0)
        var = gm2 / total
        invstd = torch.rsqrt(var + eps).float()
        if running_mean is not None:
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(gmean.to(running_mean.dtype), alpha=momentum)
                unbiased = gm2 / max(float(total) - 1.0, 1.0)
                running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        xhat = (xf - gmean.float().view(shape)) * invstd.view(shape)
        ctx.save_for_backward(xhat, weight, invstd)
        ctx.group, ctx.total, ctx.dims, ctx.shape = group, float(total), dims, shape
        y = xhat
        if weight is not None:
            y = y * weight.float().view(shape) + bias.float().view(shape)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        import torch.distributed as dist

        xhat, weight, invstd = ctx.saved_tensors
        dims, shape = ctx.dims, ctx.shape
        dyf = dy.float()
        sum_dy = dyf.sum(dims)
        sum_dy_xhat = (dyf * xhat).sum(dims)
        both = torch.cat([sum_dy, sum_dy_xhat])
        dist.all_reduce(both, group=ctx.group)
        c = sum_dy.numel()
        g_sum_dy, g_sum_dy_xhat = both[:c] / ctx.total, both[c:] / ctx.total
        scale = invstd if weight is None else invstd * weight.float()
        dx = (dyf - g_sum_dy.view(shape) - xhat * g_sum_dy_xhat.view(shape)) * scale.view(shape)
        dw = db = None
        if weight is not None:
            # this rank's share only: DDP averages parameter gradients over the ranks
            dw, db = sum_dy_xhat.to(weight.dtype), sum_dy.to(weight.dtype)
        return dx.to(dy.dtype), dw, db, None, None, None, None, None


class _CPUSyncBatchNorm:
    """Mixin: forward with global-batch statistics while training in a process group."""

    _sync_group = None

    def forward(self, x):  # noqa: D401 - same contract as nn.BatchNorm*d
        import torch.distributed as dist

        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        self._check_input_dim(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        rm = self.running_mean if self.track_running_stats else None
        rv = self.running_var if self.track_running_stats else None
        return _SyncBNFunction.apply(x, self.weight, self.bias, rm, rv, self.eps, momentum, self._sync_group)


_SYNC_CLASSES: dict[type, type] = {}


def sync_batchnorm_cpu(model: nn.Module, group=None) -> int:
    """Switch every BatchNorm1d/2d/3d of ``model`` (in place) to global-batch statistics.

    Parameters, buffers and state-dict keys stay as they are; returns how many layers changed."""
    n = 0
    for m in model.modules():
        cls = type(m)
        if cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
            if cls not in _SYNC_CLASSES:
                _SYNC_CLASSES[cls] = type("Sync" + cls.__name__, (_CPUSyncBatchNorm, cls), {})
            m.__class__ = _SYNC_CLASSES[cls]
            m._sync_group = group
            n += 1
    return n


def unsync_batchnorm(model: nn.Module) -> None:
    """Undo :func:`sync_batchnorm_cpu` (plain batch-norm layers again)."""
    plain = {v: k for k, v in _SYNC_CLASSES.items()}
    for m in model.modules():
        if type(m) in plain:
            m.__class__ = plain[type(m)]
            m.__dict__.pop("_sync_group", None)


def wrap(model: nn.Module, info: DistInfo, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(model, network to call): the same module alone, or the model and its DDP wrapper.

    Batch norm uses the statistics of the global batch: SyncBatchNorm on CUDA,
    :func:`sync_batchnorm_cpu` elsewhere (its own gloo group, so its collectives never
    interleave with DDP's gradient buckets)."""
    if not info.enabled:
        return model, model
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    else:
        group = dist.new_group(backend="gloo")
        sync_batchnorm_cpu(model, group)
    return model, DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def all_sum(info: DistInfo, values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (the values themselves when not distributed)."""
    if not info.enabled:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def teardown(info: DistInfo) -> None:
    if info.enabled and info.initialized_here:
        import torch.distributed as dist

        dist.destroy_process_group()
