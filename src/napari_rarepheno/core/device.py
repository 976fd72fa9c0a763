"""Device and precision choice: ``auto`` plus what is really available.

Also the CPU settings that measurably pay off (``benchmarks/speed.py``,
``docs/performance.md``): bf16 autocast where the CPU has bf16 matrix units (AMX), and
:func:`cpu_allocator_tuned`, which keeps PyTorch's big activation buffers in the heap
instead of mapping and unmapping them (and page-faulting them in) on every batch.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import threading
import warnings

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


def as_device(device: str | torch.device | None) -> torch.device:
    """A torch.device as is; a name through :func:`resolve_device` (None: the CPU)."""
    if isinstance(device, torch.device):
        return device
    return resolve_device(device or "cpu")


def cpu_supports_bf16() -> bool:
    """oneDNN can run bf16 here (natively or emulated with AVX-512)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def cpu_flags() -> set[str]:
    """The CPU's instruction-set flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_native_bf16() -> bool:
    """The CPU computes bf16 dot products in hardware: Intel AMX-BF16 (Sapphire Rapids and
    later) or AVX512-BF16 (e.g. AMD Zen 4, Intel Cooper Lake). Decided by instruction set,
    not by brand; measured (``benchmarks/speed.py``, docs/performance.md): on AMX, bf16
    autocast trains WSCNN ~2x and infers ~3x faster than float32; on a Zen 4 with
    AVX512-BF16 and no AMX, a DeepYeast training step 3.0x and inference 1.6-1.8x faster. On
    CPUs that only emulate bf16 (AVX-512 without BF16, AVX2) it is slower, so ``auto``
    keeps float32 there."""
    try:
        if not cpu_supports_bf16():
            return False
        if torch.cpu._is_amx_tile_supported():
            return True
        return "avx512_bf16" in cpu_flags() and torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX")
    except Exception:
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for float32.

    'auto': bf16 on CUDA where supported (else fp16); on CPU bf16 where the CPU computes
    bf16 in hardware (:func:`cpu_native_bf16`: AMX-BF16 or AVX512-BF16), else float32;
    float32 on MPS.
    """
    precision = (precision or "auto").lower()
    if precision in ("fp32", "float32", "32"):
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_native_bf16():
            return torch.bfloat16
        return None
    if precision in ("bf16", "bfloat16"):
        if device.type == "cpu" and not cpu_supports_bf16():
            warnings.warn("bf16 was requested but this CPU has no bf16 instructions: PyTorch emulates it, which "
                          "is slower than fp32 here (use --precision fp32 for speed)", RuntimeWarning, stacklevel=2)
        return torch.bfloat16
    if precision in ("fp16", "float16", "16"):
        if device.type == "cpu":
            raise InputError("fp16 autocast is for GPUs; on CPU use --precision bf16 or fp32")
        return torch.float16
    raise InputError(f"unknown precision {precision!r}; choose auto, fp32, bf16 or fp16")


# ------------------------------------------------------------------- CPU memory
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536}
_alloc_lock = threading.Lock()
_alloc_depth = 0


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@contextlib.contextmanager
def cpu_allocator_tuned(enabled: bool = True):
    """Within the block, glibc serves big buffers from the heap and keeps freed ones.

    By default glibc maps every allocation above 32 MiB afresh and unmaps it on free, so
    each training batch page-faults (and the kernel zeroes) every activation again --
    measured 30-70% of CPU time for WSCNN on 210x280 images. Turning off mmap and heap
    trimming lets the next batch reuse the same memory. On exit the defaults return and
    the free memory goes back to the system (``malloc_trim``), so a napari session does not
    keep the training peak. No-op off glibc (macOS, Windows, musl) and when ``enabled`` is
    false. Process-wide but re-entrant: nested and concurrent blocks restore once, at the end.
    """
    global _alloc_depth
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    with _alloc_lock:
        if _alloc_depth == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1)
        _alloc_depth += 1
    try:
        yield True
    finally:
        with _alloc_lock:
            _alloc_depth -= 1
            if _alloc_depth == 0:
                for opt, value in _GLIBC_DEFAULTS.items():
                    libc.mallopt(opt, value)
                libc.malloc_trim(0)


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(int(n))


def fits_on_device(images: torch.Tensor, device: torch.device, fraction: float = 0.25) -> bool:
    """Whether the training images take at most ``fraction`` of the accelerator's free memory."""
    nbytes = images.numel() * images.element_size()
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes <= fraction * free
    if device.type == "mps":
        return nbytes <= 512 * 2 ** 20
    return False
