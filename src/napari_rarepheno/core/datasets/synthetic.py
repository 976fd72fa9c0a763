"""The simulated "circles among ellipses" data of the WSCNN paper (Sailem et al. 2017, 3.1).

Each 210x280 image holds 30-48 bright objects drawn at a random subset of the points
of an equally spaced 6x8 grid, each shifted by 1-20 px in a random direction. Negative
images hold ellipses only; in positive images ``rare_fraction`` of the objects
(rounded, at least one) are circles.

Shapes (the paper only says "dimensions between 15 and 20 pixels"):

* ellipse: major axis ``L`` uniform in ``size`` (15-20 px), minor axis ``L * q`` with
  the aspect ratio ``q`` uniform in ``ellipse_ratio`` = (0.55, 0.75), random rotation.
  ``q <= 0.75`` means eccentricity >= 0.66, so a single ellipse can never pass for a
  circle (rendered circles measure an eccentricity below ~0.35) -- that is what
  makes the paper's ~99.6% accuracy reachable;
* circle: diameter uniform in ``size`` (15-20 px).

Objects are anti-aliased (coverage of each pixel from the distance to the outline),
brightness uniform in ``intensity`` on a dark ``background`` with Gaussian noise of
``noise`` grey levels, stored as uint8 grayscale PNG. Shifts are redrawn (and, if
needed, shrunk to 1 px) so that bounding boxes stay at least 3 px apart (objects never
touch), and clipped so that every box lies inside the image.

Layout written by :func:`simulate` (the layout every weakly labeled data set uses)::

    out/simulation.json
    out/{train,val,test}/{negative,positive}/img_XXXXX.png
    out/{train,val,test}/objects.csv          # see objects.py
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError
from ..io.atomic import staged_dir
from ..io.boxes import Box, write_objects
from ..io.images import write_png
from ..progress import ProgressCallback, report_items

Progress = Callable[[int, int], None]


@dataclass
class SimConfig:
    n_per_class: int = 2000
    rare_fraction: float = 0.1
    height: int = 210
    width: int = 280
    grid: tuple[int, int] = (6, 8)
    n_objects: tuple[int, int] = (30, 48)
    shift: tuple[float, float] = (1, 20)
    size: tuple[float, float] = (15, 20)
    seed: int = 0
    splits: tuple[str, ...] = ("train", "val", "test")
    ellipse_ratio: tuple[float, float] = (0.55, 0.75)
    intensity: tuple[int, int] = (150, 230)
    background: float = 20.0
    noise: float = 6.0

    def check(self) -> None:
        rows, cols = self.grid
        lo, hi = self.n_objects
        if not (0 < lo <= hi <= rows * cols):
            raise InputError(f"n_objects {self.n_objects} must lie within 1..{rows * cols} "
                             f"(the {rows}x{cols} grid)")
        if not 0.0 <= self.rare_fraction <= 1.0:
            raise InputError(f"rare_fraction must be between 0 and 1, got {self.rare_fraction}")
        if self.size[1] + 2 * self.shift[0] + 3 > min(self.height / rows, self.width / cols):
            raise InputError(f"objects of up to {self.size[1]} px do not fit a "
                             f"{rows}x{cols} grid on {self.height}x{self.width} images")
        if self.n_per_class < len(self.splits):
            raise InputError(f"n_per_class={self.n_per_class} is smaller than the number "
                             f"of splits ({len(self.splits)})")


def _extents(a: np.ndarray, b: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half widths (x) and half heights (y) of rotated ellipses with semi-axes a, b."""
    c, s = np.cos(theta), np.sin(theta)
    return np.sqrt((a * c) ** 2 + (b * s) ** 2), np.sqrt((a * s) ** 2 + (b * c) ** 2)


def _place(rng: np.random.Generator, cfg: SimConfig, gx: np.ndarray, gy: np.ndarray,
           hx: np.ndarray, hy: np.ndarray, gap: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Shifted centres with boxes inside the image and no two boxes overlapping."""
    n = len(gx)

    def draw(k: int) -> tuple[np.ndarray, np.ndarray]:
        mag = rng.uniform(cfg.shift[0], cfg.shift[1], k)
        ang = rng.uniform(0.0, 2 * np.pi, k)
        return mag * np.cos(ang), mag * np.sin(ang)

    dx, dy = draw(n)
    unit_x, unit_y = np.cos(np.arctan2(dy, dx)), np.sin(np.arctan2(dy, dx))
    lo_x, hi_x = hx + 0.5, cfg.width - hx - 0.5
    lo_y, hi_y = hy + 0.5, cfg.height - hy - 0.5
    for attempt in range(40):
        cx = np.clip(gx + dx, lo_x, hi_x)
        cy = np.clip(gy + dy, lo_y, hi_y)
        sep_x = np.abs(cx[:, None] - cx[None, :]) - (hx[:, None] + hx[None, :]) - gap
        sep_y = np.abs(cy[:, None] - cy[None, :]) - (hy[:, None] + hy[None, :]) - gap
        clash = np.maximum(sep_x, sep_y) < 0
        np.fill_diagonal(clash, False)
        if not clash.any():
            return cx, cy
        # move the later object of every clashing pair; shrink shifts after 20 tries
        bad = np.triu(clash).any(axis=0)
        if attempt < 20:
            nx, ny = draw(int(bad.sum()))
            dx[bad], dy[bad] = nx, ny
            unit_x[bad], unit_y[bad] = np.cos(np.arctan2(ny, nx)), np.sin(np.arctan2(ny, nx))
        else:
            bad |= clash.any(axis=1)
            dx[bad], dy[bad] = unit_x[bad] * cfg.shift[0], unit_y[bad] * cfg.shift[0]
    raise RuntimeError("could not place objects without overlap")  # pragma: no cover


def render_image(rng: np.random.Generator, cfg: SimConfig, positive: bool,
                 ) -> tuple[np.ndarray, list[tuple[int, int, int, int, str]]]:
    """Render one image; returns (uint8 HxW image, [(x0, y0, x1, y1, kind), ...])."""
    rows, cols = cfg.grid
    n = int(rng.integers(cfg.n_objects[0], cfg.n_objects[1] + 1))
    cells = rng.choice(rows * cols, size=n, replace=False)
    gy = (cells // cols + 0.5) * cfg.height / rows
    gx = (cells % cols + 0.5) * cfg.width / cols
    rare = np.zeros(n, bool)
    if positive:
        n_rare = min(n, max(1, int(round(cfg.rare_fraction * n))))
        rare[rng.choice(n, size=n_rare, replace=False)] = True
    major = rng.uniform(cfg.size[0], cfg.size[1], n)
    ratio = np.where(rare, 1.0, rng.uniform(cfg.ellipse_ratio[0], cfg.ellipse_ratio[1], n))
    a, b = major / 2, major * ratio / 2
    theta = rng.uniform(0.0, np.pi, n)
    hx, hy = _extents(a, b, theta)
    cx, cy = _place(rng, cfg, gx, gy, hx, hy)
    level = rng.uniform(cfg.intensity[0], cfg.intensity[1], n)

    # anti-aliased coverage in one vectorised pass over n small patches (float32)
    p = int(np.ceil(cfg.size[1])) + 3
    ox = np.floor(cx).astype(np.int64) - p // 2
    oy = np.floor(cy).astype(np.int64) - p // 2
    grid = np.arange(p, dtype=np.float32) + 0.5
    u = (ox - cx).astype(np.float32)[:, None, None] + grid[None, None, :]  # n x 1 x p
    v = (oy - cy).astype(np.float32)[:, None, None] + grid[None, :, None]  # n x p x 1
    c = np.cos(theta).astype(np.float32)[:, None, None]
    s = np.sin(theta).astype(np.float32)[:, None, None]
    ia = (1.0 / a).astype(np.float32)[:, None, None]
    ib = (1.0 / b).astype(np.float32)[:, None, None]
    ur = (c * u + s * v) * ia                                 # rotated, in units of a, b
    vr = (c * v - s * u) * ib
    rho2 = ur * ur + vr * vr
    grad2 = (ur * ia) ** 2 + (vr * ib) ** 2                   # |grad rho|^2 * rho^2
    # signed distance to the outline ~ (rho - 1) / |grad rho|, rho = sqrt(rho2)
    dist = (rho2 - np.sqrt(rho2)) / np.sqrt(np.maximum(grad2, 1e-12))
    cover = np.clip(0.5 - dist, 0.0, 1.0) * level.astype(np.float32)[:, None, None]
    rows = oy[:, None, None] + np.arange(p)[None, :, None]
    cols = ox[:, None, None] + np.arange(p)[None, None, :]
    inside = (rows >= 0) & (rows < cfg.height) & (cols >= 0) & (cols < cfg.width)
    inside = np.broadcast_to(inside, cover.shape)
    flat = np.broadcast_to(rows * cfg.width + cols, cover.shape)[inside]
    cover = cover[inside]
    img = np.bincount(flat, weights=cover, minlength=cfg.height * cfg.width)
    img = img.reshape(cfg.height, cfg.width).astype(np.float32)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(cfg.noise)
    img += np.float32(cfg.background + 0.5)
    image = np.clip(img, 0, 255).astype(np.uint8)

    x0 = np.floor(cx - hx).astype(int)
    x1 = np.ceil(cx + hx).astype(int)
    y0 = np.floor(cy - hy).astype(int)
    y1 = np.ceil(cy + hy).astype(int)
    boxes = [(int(x0[i]), int(y0[i]), int(x1[i]), int(y1[i]), "rare" if rare[i] else "common")
             for i in range(n)]
    return image, boxes


def image_rng(cfg: SimConfig, positive: bool, index: int) -> np.random.Generator:
    """The generator of one image: the same (seed, class, index) always gives the same image."""
    return np.random.default_rng([cfg.seed, int(positive), index])


def split_ranges(n: int, splits: tuple[str, ...]) -> dict[str, range]:
    """Three (or k) contiguous, nearly equal parts of ``range(n)``."""
    edges = np.linspace(0, n, len(splits) + 1).round().astype(int)
    return {s: range(edges[i], edges[i + 1]) for i, s in enumerate(splits)}


def _make_one(args: tuple) -> list[Box]:
    cfg, folder, split_dir, positive, i = args
    image, objs = render_image(image_rng(cfg, positive, i), cfg, positive)
    name = f"{folder}/img_{i:05d}.png"
    write_png(split_dir / name, image)
    return [Box(name, *o) for o in objs]


def simulate(out_dir: str | Path, cfg: SimConfig | None = None,
             callback: ProgressCallback = None, overwrite: bool = False,
             workers: int = 2) -> dict:
    """Write the simulated data set to ``out_dir`` and return a summary.

    The data set is built in a hidden sibling folder and renamed into place at the
    end, so an interrupted run leaves nothing behind. A non-empty ``out_dir`` is
    refused unless ``overwrite``. ``workers`` threads render and encode images
    (numpy and libpng release the GIL); the output does not depend on it.
    """
    cfg = cfg or SimConfig()
    cfg.check()
    t0 = time.perf_counter()
    total = 2 * cfg.n_per_class
    done = 0
    counts: dict[str, dict[str, int]] = {}
    n_obj = n_rare = 0
    final = Path(out_dir)
    with staged_dir(final, overwrite=overwrite) as stage, \
            ThreadPoolExecutor(max(1, workers)) as pool:
        for split, idx in split_ranges(cfg.n_per_class, tuple(cfg.splits)).items():
            boxes: list[Box] = []
            counts[split] = {}
            for cls, positive in (("negative", False), ("positive", True)):
                (stage / split / cls).mkdir(parents=True)
                jobs = [(cfg, cls, stage / split, positive, i) for i in idx]
                for objs in pool.map(_make_one, jobs):
                    boxes.extend(objs)
                    n_obj += len(objs)
                    n_rare += sum(b.kind == "rare" for b in objs)
                    done += 1
                    report_items(callback, done, total)
                counts[split][cls] = len(idx)
            write_objects(stage / split / "objects.csv", boxes)
        meta = {"generator": "napari_rarepheno.core.datasets.synthetic",
                "description": "WSCNN simulated data: circles (rare) among ellipses",
                "config": asdict(cfg)}
        (stage / "simulation.json").write_text(json.dumps(meta, indent=2))
    return {"out_dir": str(final), "counts": counts, "n_images": total,
            "n_objects": n_obj, "n_rare": n_rare,
            "seconds": round(time.perf_counter() - t0, 3)}
