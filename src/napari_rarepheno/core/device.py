"""Device and precision choice: ``auto`` plus what is really available."""
from __future__ import annotations

import os

import torch

from .errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """``auto`` first, then the devices this machine really has (for the GUI dropdown)."""
    devs = ["auto"]
    if torch.cuda.is_available():
        devs.append("cuda")
        if torch.cuda.device_count() > 1:
            devs += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devs.append("mps")
    devs.append("cpu")
    return devs


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU. An explicit unavailable device is an error
    (never a silent fallback)."""
    name = (name or "auto").lower()
    local_rank = os.environ.get("LOCAL_RANK")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(local_rank or 0))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device '{name}' was requested but this PyTorch has no CUDA GPU available "
                             f"(torch {torch.__version__}); use --device auto or cpu")
        if name == "cuda" and local_rank is not None:
            return torch.device("cuda", int(local_rank))
        return torch.device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise InputError("device 'mps' was requested but Apple MPS is not available here; "
                             "use --device auto or cpu")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise InputError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for float32.

    'auto': fp16 on CUDA (bf16 where supported), fp32 on CPU and MPS (bf16 on CPU is
    opt-in: the benchmark decides whether it pays off on a given CPU).
    """
    precision = (precision or "auto").lower()
    if precision in ("fp32", "float32", "32"):
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if precision in ("bf16", "bfloat16"):
        if device.type == "cpu" and not cpu_supports_bf16():
            raise InputError("bf16 was requested but this CPU has no bf16 support; use --precision fp32")
        return torch.bfloat16
    if precision in ("fp16", "float16", "16"):
        if device.type == "cpu":
            raise InputError("fp16 autocast is for GPUs; on CPU use --precision bf16 or fp32")
        return torch.float16
    raise InputError(f"unknown precision {precision!r}; choose auto, fp32, bf16 or fp16")


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(int(n))
