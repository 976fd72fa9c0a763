"""Timing helpers of benchmarks/speed.py: the machine record, the matmul roofline, the
round robin that makes variants take turns, and the table rows with paired ratios.

``CLOCK`` is the clock every timing reads (``set_clock``: ``time.thread_time`` for
``speed.py --cpu-time``)."""
from __future__ import annotations

import os
import statistics
import time

import torch

from napari_rarepheno.core.device import cpu_allocator_tuned, cpu_native_bf16, cpu_supports_bf16

CLOCK = time.perf_counter


def set_clock(clock) -> None:
    global CLOCK
    CLOCK = clock


# ------------------------------------------------------------------ machine
def machine_extra() -> dict:
    caps = {}
    try:
        c = torch.backends.cpu.get_cpu_capability()
        caps = {k: v for k, v in torch.cpu.get_capabilities().items()
                if k in ("avx512_f", "avx512_bf16", "amx_bf16", "amx_tile", "avx2")} if hasattr(
            torch.cpu, "get_capabilities") else {}
        caps["aten_capability"] = c
    except Exception:
        pass
    return {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "mkldnn": torch.backends.mkldnn.is_available(), "bf16_supported": cpu_supports_bf16(),
            "bf16_native_amx": cpu_native_bf16(), "capabilities": caps,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "loadavg_start": os.getloadavg()[0]}


def matmul_gflops(dtype: torch.dtype, n: int, reps: int) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    ts = []
    for _ in range(reps):
        t = CLOCK()
        a @ b
        ts.append(CLOCK() - t)
    return 2 * n ** 3 / statistics.median(ts) / 1e9


def matmul_step(dtype: torch.dtype, n: int):
    """A round-robin 'variant' whose throughput is the matmul roofline (n^3 multiply-adds per step)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return lambda: a @ b


class RoundRobin:
    """Variants take turns; each turn = 1 untimed warm-up step + ``steps`` timed steps."""

    def __init__(self, steps: int, reps: int):
        self.steps, self.reps = steps, reps
        self.variants: dict[str, tuple] = {}

    def add(self, name: str, step, images_per_step: int, alloc: bool = False) -> None:
        self.variants[name] = (step, images_per_step, alloc)

    def run(self, label: str) -> dict[str, float]:
        """Per variant: images (or multiply-adds) per second in each round. Also records the
        page faults and kernel (system) CPU seconds per step in ``self.kernel``: deterministic
        where timings are noisy (fresh pages for every activation are what the allocator
        setting removes)."""
        import resource

        times = {k: [] for k in self.variants}
        self.kernel = {k: {"minor_faults_per_step": [], "system_s_per_step": []} for k in self.variants}
        for r in range(self.reps):
            for name, (step, n, alloc) in self.variants.items():
                with cpu_allocator_tuned(alloc):
                    step()
                    u0 = resource.getrusage(resource.RUSAGE_SELF)
                    t = CLOCK()
                    for _ in range(self.steps):
                        step()
                    times[name].append((CLOCK() - t) / self.steps)
                    u1 = resource.getrusage(resource.RUSAGE_SELF)
                self.kernel[name]["minor_faults_per_step"].append((u1.ru_minflt - u0.ru_minflt) / self.steps)
                self.kernel[name]["system_s_per_step"].append((u1.ru_stime - u0.ru_stime) / self.steps)
                print(f"  [{label}] round {r + 1}/{self.reps} {name}: {n / times[name][-1]:.1f} /s", flush=True)
        return {k: [self.variants[k][1] / t for t in v] for k, v in times.items()}  # per round, /s


def rows_for(rounds: dict[str, list[float]], gflop: float, roof: dict, kernel: dict) -> tuple[list[list], dict]:
    """Table rows and a summary. Ratios are paired: the median over rounds of the ratio
    within each round, so load that changes between rounds cancels out."""
    roof_r = [v * 2 / 1e9 for v in rounds["roofline"]]
    names = [k for k in rounds if k != "roofline"]
    med = lambda xs: statistics.median(xs)  # noqa: E731
    rows, summary = [], {}
    for i, name in enumerate(names):
        v = rounds[name]
        bf = "bf16" in name or "allocator" in name
        vs_naive = med([a / b for a, b in zip(v, rounds[names[0]])])
        gain = med([a / b for a, b in zip(v, rounds[names[i - 1]])]) if i else None
        of_fp32 = med([a * gflop / r for a, r in zip(v, roof_r)])
        faults = med(kernel[name]["minor_faults_per_step"])
        sys_s = med(kernel[name]["system_s_per_step"])
        summary[name] = {"images_per_s": med(v), "gflop_per_s": med(v) * gflop, "of_fp32_roofline": of_fp32,
                         "minor_faults_per_step": faults, "system_s_per_step": sys_s,
                         "of_bf16_roofline": med(v) * gflop / roof["bf16"] if roof.get("bf16") and bf else None,
                         "vs_naive": vs_naive, "step_gain": gain, "rounds_images_per_s": v}
        rows.append([name, f"{med(v):.1f}", f"{med(v) * gflop:.0f}", f"{of_fp32:.0%}",
                     f"{med(v) * gflop / roof['bf16']:.0%}" if roof.get("bf16") and bf else "",
                     f"{vs_naive:.2f}x", f"{gain:.2f}x" if gain else "", f"{faults:,.0f}", f"{sys_s:.2f}"])
    return rows, summary
