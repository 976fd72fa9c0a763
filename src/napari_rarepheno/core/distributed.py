"""DistributedDataParallel when launched by ``torchrun``; a no-op otherwise.

``torchrun --nproc_per_node=N -m napari_rarepheno.cli train ...`` sets RANK/WORLD_SIZE;
we then join the process group (NCCL on CUDA, gloo on CPU), wrap the model in DDP with
SyncBatchNorm, give each rank an equal slice of every *global* batch (so the effective
batch and the augmentation draws equal a single-process run), and only rank 0 writes
checkpoints and logs.
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


def wrap(model: nn.Module, info: DistInfo, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(model, network to call): the same module alone, or the model and its DDP wrapper.

    On CUDA batch norm becomes SyncBatchNorm (statistics over the global batch); gloo on
    CPU has no SyncBatchNorm, so each rank normalises over its own share there."""
    if not info.enabled:
        return model, model
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model, DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def teardown(info: DistInfo) -> None:
    if info.enabled and info.initialized_here:
        import torch.distributed as dist

        dist.destroy_process_group()
