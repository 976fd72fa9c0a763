"""Synthetic two-channel yeast fields for the DeepYeast engine (Parnamaa & Parts 2017 classes).

Each field shows one protein (``YP0000``, ``YP0001`` ...; protein ``k`` has class
``YEAST_CLASSES[k % 12]``) in 40-70 round/oval cells (radius 8-14 px, mostly separated,
touching allowed). Channel 0 (red) is the cytosolic marker: it fills the cell, dimmer
in the vacuole and the nucleus, with texture. Channel 1 (green) is the protein:

=================  ===========================================================
cell_periphery     thin patchy rim at the cell outline
cytoplasm          diffuse fill, excluded from vacuole, dimmer in the nucleus
endosome           2-7 medium puncta (sigma 1.0-1.7 px), mostly at the vacuole rim
er                 ring around the nucleus + patchy cortical rim
golgi              3-10 puncta of mixed size and brightness (sigma 0.7-1.3 px), anywhere
mitochondrion      3-6 curved tubules near the cortex
nuclear_periphery  ring around the nucleus with punctate (pore-cluster) modulation
nucleolus          crescent at one side of the nucleus (30% of cells: a compact blob)
nucleus            filled nucleus disk, sometimes with a dark nucleolar hole
peroxisome         1-5 small bright puncta (sigma 0.55-0.95 px) anywhere in the cytoplasm
spindle_pole       1-2 tiny puncta (sigma 0.55-0.9 px) at the nuclear edge
vacuole            vacuole lumen, brighter rim, sometimes 2-3 lobes
=================  ===========================================================

The overlaps are deliberate, as in the real data: puncta counts and sizes of endosome,
golgi, peroxisome and spindle pole overlap; nucleolus blobs pass for nuclei; weak
cortical ER looks like nuclear periphery; endosomes crowd the vacuole rim; 6% of the
cells barely express the protein. Every protein draws its own expression level and
pattern density, every field its own blur (sigma 0.5-1.3 px), background and noise.
A random forest on simple hand features therefore stays clearly below 100% per cell.

Layout written by :func:`simulate_yeast`::

    DATA/yeast.json                                  # config, protein -> class
    DATA/fields/<protein>_f<k>.tif                   # 2 x H x W uint16, axes CYX
    DATA/fields/<protein>_f<k>_labels.tif            # H x W uint16 cell labels
    DATA/fields/<protein>_f<k>_cells.csv             # id,y,x,area,class,protein
    DATA/crops/<class>/<protein>_f<k>_<id>.tif       # 2 x 64 x 64 uint16, red then green

Cell centres keep ``crop // 2`` px from the field border, so every cell has a full
64x64 crop (the number of crops equals the number of labels).
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from ..io.atomic import staged_dir
from ..progress import ProgressCallback, report_items

YEAST_CLASSES = ("cell_periphery", "cytoplasm", "endosome", "er", "golgi", "mitochondrion",
                 "nuclear_periphery", "nucleolus", "nucleus", "peroxisome", "spindle_pole",
                 "vacuole")
Progress = Callable[[int, int], None]


@dataclass
class YeastConfig:
    height: int = 512
    width: int = 512
    radius: tuple[float, float] = (8.0, 14.0)
    n_cells: tuple[int, int] = (40, 70)
    crop: int = 64
    dim_fraction: float = 0.06


class _Cell:
    """Pixel-centre coordinates of a patch around one cell, and its compartments."""

    def __init__(self, rng: np.random.Generator, cy: float, cx: float, r: float, half: int):
        self.iy, self.ix = int(round(cy)), int(round(cx))
        g = np.arange(-half, half + 1, dtype=np.float32)
        self.Y = g[:, None] + np.float32(self.iy - cy)
        self.X = g[None, :] + np.float32(self.ix - cx)
        q, th = rng.uniform(0.8, 1.0), rng.uniform(0, np.pi)
        self.r = r
        c, s = np.cos(th), np.sin(th)
        rho = np.hypot((c * self.X + s * self.Y) / r, (c * self.Y - s * self.X) / (r * q))
        self.inside = np.clip(0.5 + (1 - rho) * r / 0.8, 0, 1)
        self.rho = rho
        self.phi = np.arctan2(self.Y, self.X)
        an = rng.uniform(0, 2 * np.pi)
        dn = r * rng.uniform(0.0, 0.3)
        self.nuc = (dn * np.cos(an), dn * np.sin(an), r * rng.uniform(0.28, 0.38))
        av = an + np.pi + rng.uniform(-1, 1)
        dv = r * rng.uniform(0.1, 0.35)
        self.vac = (dv * np.cos(av), dv * np.sin(av), r * rng.uniform(0.3, 0.5))
        self.d_nuc = self.dist(self.nuc)
        self.d_vac = self.dist(self.vac)

    def dist(self, c: tuple) -> np.ndarray:
        return np.hypot(self.X - c[0], self.Y - c[1])

    def cyto_points(self, rng: np.random.Generator, k: int, near_vac: float = 0.0):
        """k random points in the cytoplasm; a fraction ``near_vac`` hugs the vacuole."""
        n = 64
        ang, rad = rng.uniform(0, 2 * np.pi, n), self.r * 0.85 * np.sqrt(rng.uniform(0, 1, n))
        x, y = rad * np.cos(ang), rad * np.sin(ang)
        hug = rng.random(n) < near_vac
        rv = self.vac[2] + rng.uniform(0.5, 2.0, n)
        x = np.where(hug, self.vac[0] + rv * np.cos(ang), x)
        y = np.where(hug, self.vac[1] + rv * np.sin(ang), y)
        ok = (np.hypot(x - self.nuc[0], y - self.nuc[1]) > self.nuc[2]) & \
             ((np.hypot(x - self.vac[0], y - self.vac[1]) > self.vac[2]) | hug) & \
             (np.hypot(x, y) < self.r * 0.9)
        x, y = x[ok][:k], y[ok][:k]
        return x, y

    def spots(self, x, y, sig, amp) -> np.ndarray:
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        d2 = (self.X[None] - x[:, None, None]) ** 2 + (self.Y[None] - y[:, None, None]) ** 2
        sig = np.broadcast_to(np.asarray(sig, np.float32), x.shape)[:, None, None]
        amp = np.broadcast_to(np.asarray(amp, np.float32), x.shape)[:, None, None]
        return (amp * np.exp(-d2 / (2 * sig ** 2))).sum(0)


def _disk(d, rad, edge=0.8):
    return np.clip(0.5 - (d - rad) / edge, 0, 1)


def _ring(d, rad, w):
    return np.exp(-0.5 * ((d - rad) / w) ** 2)


def _patchy(rng, cell, depth):
    k, p0 = rng.integers(2, 6), rng.uniform(0, 2 * np.pi)
    return 1 + depth * np.cos(k * cell.phi + p0)


def _pattern(cls: str, rng: np.random.Generator, c: _Cell, pp: dict) -> np.ndarray:
    """Green signal of one cell (peak ~1) for class ``cls``; ``pp`` = protein params."""
    U = rng.uniform
    nx, ny, rn = c.nuc
    haze = pp["haze"] * c.inside * (1 - 0.7 * _disk(c.d_vac, c.vac[2]))
    if cls == "cell_periphery":
        g = _ring(c.rho * c.r, c.r - 0.6, U(0.6, 1.1)) * _patchy(rng, c, U(0.1, 0.5))
    elif cls == "cytoplasm":
        g = c.inside * (1 - 0.75 * _disk(c.d_vac, c.vac[2])) * (1 - 0.35 * _disk(c.d_nuc, rn))
    elif cls in ("endosome", "golgi", "peroxisome"):
        (lo, hi), a_lo, hug = {"endosome": ((1.0, 1.7), 0.5, 0.75),
                               "golgi": ((0.7, 1.3), 0.25, 0.0),
                               "peroxisome": ((0.55, 0.95), 0.6, 0.1)}[cls]
        k = 1 + rng.poisson(pp["density"])
        x, y = c.cyto_points(rng, k, near_vac=hug)
        g = c.spots(x, y, U(lo, hi, len(x)), U(a_lo, 1.0, len(x)))
    elif cls == "spindle_pole":
        k = 1 if rng.random() < 0.55 else 2
        a0 = U(0, 2 * np.pi)
        ang = a0 + np.array([0, np.pi + U(-0.6, 0.6) if rng.random() < 0.5 else U(0.5, 1.5)])[:k]
        rr = rn * U(0.8, 1.1, k)
        g = c.spots(nx + rr * np.cos(ang), ny + rr * np.sin(ang), U(0.55, 0.9, k), U(0.7, 1, k))
    elif cls in ("er", "nuclear_periphery"):
        g = _ring(c.d_nuc, rn, U(0.6, 1.0))
        if cls == "er":
            cortex = _ring(c.rho * c.r, c.r - 1.2, U(0.6, 1.0)) * _patchy(rng, c, U(0.2, 0.6))
            g = g + pp["cortical"] * U(0.3, 1.0) * cortex
        else:
            g = g * _patchy(rng, c, U(0.3, 0.8))
    elif cls == "mitochondrion":
        xs, ys = [], []
        for _ in range(rng.integers(3, 7)):
            a, rr = U(0, 2 * np.pi), c.r * U(0.45, 0.8)
            step = U(0.07, 0.14) * rng.choice([-1, 1])
            n = rng.integers(6, 14)
            angs = a + step * np.arange(n) + np.cumsum(rng.normal(0, 0.05, n))
            rads = rr + np.cumsum(rng.normal(0, 0.35, n))
            xs.append(rads * np.cos(angs))
            ys.append(rads * np.sin(angs))
        x, y = np.concatenate(xs), np.concatenate(ys)
        g = np.minimum(c.spots(x, y, U(0.7, 1.0), 0.5), 1.2)
    elif cls == "nucleolus":
        a = U(0, 2 * np.pi)
        if rng.random() < pp["blob"]:
            g = _disk(c.dist((nx + 0.3 * rn * np.cos(a), ny + 0.3 * rn * np.sin(a))),
                      rn * U(0.55, 0.8), 1.2)
        else:
            outer = _disk(c.d_nuc, rn * U(0.95, 1.1))
            inner = _disk(c.dist((nx - rn * U(0.3, 0.6) * np.cos(a),
                                  ny - rn * U(0.3, 0.6) * np.sin(a))), rn * U(0.7, 0.9))
            g = np.clip(outer - inner, 0, 1)
        g = g + 0.12 * _disk(c.d_nuc, rn)
    elif cls == "nucleus":
        g = _disk(c.d_nuc, rn * U(0.9, 1.15), 1.2)
        if rng.random() < 0.5:
            a = U(0, 2 * np.pi)
            hole = _disk(c.dist((nx + 0.5 * rn * np.cos(a), ny + 0.5 * rn * np.sin(a))), rn * 0.4)
            g = g * (1 - U(0.3, 0.6) * hole)
    elif cls == "vacuole":
        vx, vy, rv = c.vac
        g = U(0.4, 0.8) * _disk(c.d_vac, rv) + _ring(c.d_vac, rv, U(0.6, 1.0))
        for _ in range(rng.integers(0, 3)):
            a, rl = U(0, 2 * np.pi), rv * U(0.4, 0.7)
            d = c.dist((vx + rv * np.cos(a), vy + rv * np.sin(a)))
            g = np.maximum(g, 0.6 * _disk(d, rl) + _ring(d, rl, 0.8))
    else:  # pragma: no cover - YEAST_CLASSES is closed
        raise InputError(f"unknown yeast class {cls!r}")
    return g * c.inside + haze


def _protein_params(rng: np.random.Generator, cls: str) -> dict:
    dens = {"endosome": (1.5, 4.5), "golgi": (3.0, 8.0), "peroxisome": (0.5, 3.0)}
    lo, hi = dens.get(cls, (1.0, 1.0))
    return {"level": float(np.exp(rng.normal(np.log(900), 0.4))), "density": rng.uniform(lo, hi),
            "haze": rng.uniform(0.02, 0.15), "cortical": rng.uniform(0.2, 0.9),
            "blob": rng.uniform(0.15, 0.45)}


def _place_cells(rng: np.random.Generator, cfg: YeastConfig) -> list[tuple[float, float, float]]:
    m = cfg.crop // 2
    target = int(rng.integers(cfg.n_cells[0], cfg.n_cells[1] + 1))
    cells: list[tuple[float, float, float]] = []
    arr = np.zeros((0, 3))
    for _ in range(40 * target):
        if len(cells) >= target:
            break
        y, x = rng.uniform(m, cfg.height - m), rng.uniform(m, cfg.width - m)
        r = rng.uniform(*cfg.radius)
        gap = rng.uniform(-1.0, 4.0)
        if len(arr) and (np.hypot(arr[:, 0] - y, arr[:, 1] - x) < arr[:, 2] + r + gap).any():
            continue
        cells.append((y, x, r))
        arr = np.asarray(cells)
    return cells


def render_field(rng: np.random.Generator, cls: str, pp: dict, cfg: YeastConfig,
                 ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """One field: (2xHxW uint16 image, HxW uint16 labels, [{id, y, x, area}, ...])."""
    H, W = cfg.height, cfg.width
    red = np.zeros((H, W), np.float32)
    green = np.zeros((H, W), np.float32)
    labels = np.zeros((H, W), np.uint16)
    half = int(np.ceil(cfg.radius[1])) + 3
    cells = _place_cells(rng, cfg)
    red_level = rng.uniform(500, 1500)
    for i, (y, x, r) in enumerate(cells, start=1):
        c = _Cell(rng, y, x, r, half)
        sl = (slice(c.iy - half, c.iy + half + 1), slice(c.ix - half, c.ix + half + 1))
        mask = (c.inside > 0.5) & (labels[sl] == 0)
        labels[sl][mask] = i
        cyto = c.inside * (1 - 0.55 * _disk(c.d_vac, c.vac[2]))
        cyto *= 1 - 0.25 * _disk(c.d_nuc, c.nuc[2])
        red[sl] += red_level * rng.uniform(0.6, 1.4) * cyto
        expr = pp["level"] * np.exp(rng.normal(0, 0.35))
        if rng.random() < cfg.dim_fraction:
            expr *= rng.uniform(0.05, 0.25)
        green[sl] += expr * _pattern(cls, rng, c, pp)
    for ch, depth in ((red, 0.25), (green, 0.2)):  # texture, blur, camera
        tex = ndi.gaussian_filter(rng.standard_normal((H, W), dtype=np.float32), 1.5)
        ch *= 1 + depth * tex / max(float(tex.std()), 1e-6)
    blur = rng.uniform(0.5, 1.3)
    img = np.stack([ndi.gaussian_filter(red, blur), ndi.gaussian_filter(green, blur)])
    img += np.array([rng.uniform(80, 200), rng.uniform(80, 200)], np.float32)[:, None, None]
    sigma = np.sqrt(rng.uniform(5, 15) ** 2 + rng.uniform(0.5, 1.5) * img)
    img += sigma * rng.standard_normal(img.shape, dtype=np.float32)
    image = np.clip(np.rint(img), 0, 65535).astype(np.uint16)
    area = np.bincount(labels.ravel(), minlength=len(cells) + 1)
    table = [{"id": i, "y": int(round(y)), "x": int(round(x)), "area": int(area[i])}
             for i, (y, x, _) in enumerate(cells, start=1)]
    return image, labels, table


def protein_class(k: int) -> str:
    return YEAST_CLASSES[k % len(YEAST_CLASSES)]


def simulate_yeast(out_dir: str | Path, n_proteins: int = 24, fields_per_protein: int = 1,
                   seed: int = 0, cfg: YeastConfig | None = None, overwrite: bool = False,
                   callback: ProgressCallback = None) -> dict:
    """Write synthetic yeast fields, labels, cell tables and 64x64 crops (see module doc)."""
    import tifffile

    cfg = cfg or YeastConfig()
    if n_proteins < 1 or fields_per_protein < 1:
        raise InputError("n_proteins and fields_per_protein must be at least 1", out_dir)
    t0, m, n_cells = time.perf_counter(), cfg.crop // 2, 0
    proteins = {f"YP{k:04d}": protein_class(k) for k in range(n_proteins)}
    with staged_dir(out_dir, overwrite=overwrite) as stage:
        (stage / "fields").mkdir()
        for cls in YEAST_CLASSES:
            (stage / "crops" / cls).mkdir(parents=True)
        for k, (prot, cls) in enumerate(proteins.items()):
            pp = _protein_params(np.random.default_rng([seed, k]), cls)
            for f in range(fields_per_protein):
                rng = np.random.default_rng([seed, k, f + 1])
                image, labels, table = render_field(rng, cls, pp, cfg)
                stem = f"{prot}_f{f}"
                tifffile.imwrite(stage / "fields" / f"{stem}.tif", image, metadata={"axes": "CYX"})
                tifffile.imwrite(stage / "fields" / f"{stem}_labels.tif", labels,
                                 metadata={"axes": "YX"})
                with open(stage / "fields" / f"{stem}_cells.csv", "w", newline="") as fh:
                    w = csv.writer(fh, lineterminator="\n")
                    w.writerow(("id", "y", "x", "area", "class", "protein"))
                    for row in table:
                        w.writerow((row["id"], row["y"], row["x"], row["area"], cls, prot))
                        crop = image[:, row["y"] - m:row["y"] + m, row["x"] - m:row["x"] + m]
                        tifffile.imwrite(stage / "crops" / cls / f"{stem}_{row['id']:04d}.tif",
                                         np.ascontiguousarray(crop), metadata={"axes": "CYX"})
                n_cells += len(table)
                report_items(callback, k * fields_per_protein + f + 1, n_proteins * fields_per_protein)
        meta = {"generator": "napari_rarepheno.core.datasets.yeast", "seed": seed,
                "n_proteins": n_proteins, "fields_per_protein": fields_per_protein,
                "config": asdict(cfg), "classes": list(YEAST_CLASSES), "proteins": proteins,
                "channels": ["cytoplasm marker (red)", "protein (green)"]}
        (stage / "yeast.json").write_text(json.dumps(meta, indent=2))
    return {"out_dir": str(out_dir), "n_fields": n_proteins * fields_per_protein,
            "n_cells": n_cells, "proteins": proteins,
            "seconds": round(time.perf_counter() - t0, 3)}
