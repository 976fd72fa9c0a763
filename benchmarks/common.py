"""Shared benchmark plumbing: machine description, timing, JSON results, tables."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE / "data"            # generated data (git-ignored)
sys.path.insert(0, str(HERE.parent / "src"))
from napari_rarepheno.core.datasets.bundled import MITOSIS_CROPS  # noqa: E402  (the crops shipped in the package)

MITOSIS = Path(os.environ.get("RAREPHENO_MITOSIS", MITOSIS_CROPS))


def machine() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError):
        mem_gb = None
    return {"platform": platform.platform(), "python": sys.version.split()[0], "cpu": cpu,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "memory_gb": mem_gb,
            "torch": torch.__version__, "cuda": torch.cuda.is_available(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def save(name: str, result: dict, results: Path | None = None) -> Path:
    """Write ``result`` and the machine description to ``results/NAME.json`` (default
    benchmarks/results; the diagnostics in benchmarks/experiments pass their own folder)."""
    results = results or RESULTS
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    result = dict(result, machine=machine())
    path.write_text(json.dumps(result, indent=2, default=float))
    print(f"\nresults written to {path}")
    return path


def positives_with_boxes(model, split_dir: Path, limit: int | None = None):
    """A split's positive images (at most ``limit``) and their objects.csv boxes, for the
    localisation benchmarks: ``(loaded model, images (N, C, H, W), [[Box, ...] per image])``."""
    from napari_rarepheno.core.io.boxes import read_objects
    from napari_rarepheno.core.io.folders import load_wscnn_split
    from napari_rarepheno.core.io.modelfile import as_loaded

    lm = as_loaded(model, "wscnn")
    data = load_wscnn_split(split_dir, lm.meta.channels, lm.model.min_input_size)
    pos = [i for i in range(len(data)) if data.labels[i] == 1][:limit]
    boxes = read_objects(split_dir / "objects.csv", {data.relpath(i): data.images.shape[2:] for i in range(len(data))})
    return lm, data.images[pos], [boxes.get(data.relpath(i), []) for i in pos]


@contextmanager
def timed(label: str, store: dict | None = None):
    t0 = time.perf_counter()
    yield
    dt = time.perf_counter() - t0
    if store is not None:
        store[label] = dt
    print(f"[{label}: {dt:.1f} s]", flush=True)


def table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[f"{c:.2%}" if isinstance(c, float) and abs(c) <= 1.0 else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
