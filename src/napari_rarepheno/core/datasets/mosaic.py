"""Weakly labeled fields tiled from per-cell crops (a generalisation of WSCNN's 2x2 mosaics).

Input: ``CROPS/<class>/*.png`` (e.g. the 64x64 RGB mitosis crops: red = H2B chromatin,
green = tubulin). Output, the same layout as :mod:`.synthetic`::

    DATA/mosaic.json
    DATA/{train,val,test}/{negative,positive}/img_XXXXX.png   # RGB, 256x256 for 4x4 tiles
    DATA/{train,val,test}/objects.csv    # image,x0,y0,x1,y1,kind  (one box per tile)
    DATA/{train,val,test}/tiles.csv      # image,x0,y0,x1,y1,class,source

Recipe: the crops are split into train/val/test *first*, by region of the field when
the names follow ``P<pos>_T<time>_X<x>_Y<y>`` (see :mod:`.splits`; otherwise a
stratified random split, recorded in ``mosaic.json``), so no cell -- nor a later frame
of it -- feeds two splits. Then, inside each split, crops are drawn with replacement:
a negative field holds only crops of ``common`` classes; a positive field holds
1-3 (``rare_per_positive``) crops of ``rare`` classes at random tile positions, the
rest common. A rare tile's class is drawn uniformly among the rare classes (so short
stages such as early anaphase still show up), then a crop of that class uniformly.
Each tile is randomly flipped and rotated by a multiple of 90 degrees.
``n_per_class`` fields per class are spread over the splits by ``fractions``.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError
from ..io.atomic import staged_dir
from ..io.boxes import Box, write_objects
from ..io.images import read_png, write_png
from ..progress import ProgressCallback, report_items
from .splits import SPLITS, parse_cell_name, random_split, split_by_region, split_counts

Progress = Callable[[int, int], None]
TILE_COLUMNS = ("image", "x0", "y0", "x1", "y1", "class", "source")


@dataclass
class MosaicConfig:
    rare: tuple[str, ...] = ("pro", "prometa", "meta", "earlyana", "lateana", "telo")
    common: tuple[str, ...] = ("inter",)
    grid: tuple[int, int] = (4, 4)
    rare_per_positive: tuple[int, int] = (1, 3)
    n_per_class: int = 200
    seed: int = 0
    fractions: tuple[float, ...] = (0.6, 0.2, 0.2)
    splits: tuple[str, ...] = SPLITS
    block: tuple[int, int] = (232, 208)
    augment: bool = True
    channel_names: tuple[str, ...] | None = None   # what the crops' channels are (kept in mosaic.json)


def list_crops(crops_dir: str | Path) -> dict[str, list[Path]]:
    """``{class: [png, ...]}`` for every sub-folder of ``crops_dir`` holding PNG files."""
    root = Path(crops_dir)
    if not root.is_dir():
        raise InputError(f"crops folder {root} does not exist", root)
    found = {d.name: sorted(d.glob("*.png")) for d in sorted(root.iterdir()) if d.is_dir()}
    found = {k: v for k, v in found.items() if v}
    if not found:
        raise InputError(f"crops folder {root} has no <class>/*.png sub-folders", root)
    return found


def _check(cfg: MosaicConfig, found: dict[str, list[Path]], root: Path) -> None:
    wanted = list(cfg.rare) + list(cfg.common)
    unknown = [c for c in wanted if c not in found]
    if unknown:
        raise InputError(f"class(es) {', '.join(unknown)} not found in {root}; classes found: "
                         f"{', '.join(found)}", root)
    both = set(cfg.rare) & set(cfg.common)
    if both:
        raise InputError(f"class(es) {', '.join(sorted(both))} are listed as both rare and "
                         "common", root)
    if not cfg.rare or not cfg.common:
        raise InputError("need at least one rare and one common class", root)
    lo, hi = cfg.rare_per_positive
    if not 1 <= lo <= hi <= cfg.grid[0] * cfg.grid[1]:
        raise InputError(f"rare_per_positive {cfg.rare_per_positive} must lie within "
                         f"1..{cfg.grid[0] * cfg.grid[1]} tiles", root)


def _load(paths: list[Path]) -> np.ndarray:
    tiles = []
    for p in paths:
        img = read_png(p)
        if img.dtype != np.uint8:
            raise InputError(f"crop {p} is {img.dtype}, expected 8-bit", p)
        if img.ndim == 2:
            img = img[..., None]
        if tiles and img.shape != tiles[0].shape:
            raise InputError(f"crop {p} has shape {img.shape}, the others "
                             f"{tiles[0].shape}; all crops must have the same size", p)
        tiles.append(img)
    stack = np.stack(tiles)
    if stack.shape[1] != stack.shape[2]:
        raise InputError(f"crops must be square, got {stack.shape[1]}x{stack.shape[2]}",
                         paths[0])
    return stack


def split_crops(found: dict[str, list[Path]], cfg: MosaicConfig) -> tuple[dict, str]:
    """``({split: {class: [path, ...]}}, method)`` for the classes the mosaics use."""
    files = [(p, c) for c in list(cfg.rare) + list(cfg.common) for p in found[c]]
    if all(parse_cell_name(p) is not None for p, _ in files):
        parts, method = split_by_region(files, cfg.fractions, cfg.seed, cfg.block,
                                        splits=cfg.splits), "region"
    else:
        parts, method = random_split(files, cfg.fractions, cfg.seed, cfg.splits), "random"
    out = {s: {c: [p for p, k in parts[s] if k == c] for c in found if c in
               set(cfg.rare) | set(cfg.common)} for s in cfg.splits}
    return out, method


def build_mosaics(crops_dir: str | Path, out_dir: str | Path, cfg: MosaicConfig | None = None,
                  callback: ProgressCallback = None, overwrite: bool = False) -> dict:
    """Write mosaic fields built from ``crops_dir`` to ``out_dir``; returns a summary."""
    cfg = cfg or MosaicConfig()
    root = Path(crops_dir)
    t0 = time.perf_counter()
    found = list_crops(root)
    _check(cfg, found, root)
    by_split, method = split_crops(found, cfg)
    fr = np.asarray(cfg.fractions, float) / np.sum(cfg.fractions)
    n_fields = dict(zip(cfg.splits, np.round(fr * cfg.n_per_class).astype(int)))
    for s in cfg.splits:
        empty = [c for c, v in by_split[s].items() if not v]
        if n_fields[s] and empty:
            raise InputError(f"after splitting {root} by {method}, split {s!r} has no crops of "
                             f"class(es) {', '.join(empty)}; add crops, merge classes or "
                             "change the fractions", root)
    gh, gw = cfg.grid
    total, done, counter = 2 * sum(n_fields.values()), 0, 0
    summary: dict = {"out_dir": str(out_dir), "split_method": method, "fields": {},
                     "crops": {s: {c: len(v) for c, v in d.items()} for s, d in by_split.items()}}
    with staged_dir(out_dir, overwrite=overwrite) as stage:
        for si, split in enumerate(cfg.splits):
            rng = np.random.default_rng([cfg.seed, si])
            pools = {c: (_load(v), [p.relative_to(root).as_posix() for p in v])
                     for c, v in by_split[split].items() if v}
            common = [(c, j) for c in cfg.common if c in pools for j in range(len(pools[c][1]))]
            boxes: list[Box] = []
            tiles: list[tuple] = []
            for cls_name, positive in (("negative", False), ("positive", True)):
                (stage / split / cls_name).mkdir(parents=True)
                for _ in range(n_fields[split]):
                    picks = [common[k] for k in rng.integers(0, len(common), gh * gw)]
                    kinds = ["common"] * (gh * gw)
                    if positive:
                        lo, hi = cfg.rare_per_positive
                        k = int(rng.integers(lo, hi + 1))
                        for pos in rng.choice(gh * gw, size=k, replace=False):
                            c = cfg.rare[int(rng.integers(len(cfg.rare)))]
                            picks[pos] = (c, int(rng.integers(len(pools[c][1]))))
                            kinds[pos] = "rare"
                    t = pools[picks[0][0]][0].shape[1]
                    field = np.zeros((gh * t, gw * t, pools[picks[0][0]][0].shape[3]), np.uint8)
                    name = f"{cls_name}/img_{counter:05d}.png"
                    counter += 1
                    for pos, (c, j) in enumerate(picks):
                        tile = pools[c][0][j]
                        if cfg.augment:
                            tile = np.rot90(tile, int(rng.integers(4)))
                            if rng.random() < 0.5:
                                tile = tile[:, ::-1]
                        r, q = divmod(pos, gw)
                        field[r * t:(r + 1) * t, q * t:(q + 1) * t] = tile
                        box = (q * t, r * t, (q + 1) * t, (r + 1) * t)
                        boxes.append(Box(name, *box, kinds[pos]))
                        tiles.append((name, *box, c, pools[c][1][j]))
                    write_png(stage / split / name, field[..., 0] if field.shape[2] == 1 else field)
                    done += 1
                    report_items(callback, done, total)
            write_objects(stage / split / "objects.csv", boxes)
            with open(stage / split / "tiles.csv", "w", newline="") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(TILE_COLUMNS)
                writer.writerows(tiles)
            summary["fields"][split] = {"negative": int(n_fields[split]),
                                        "positive": int(n_fields[split])}
        meta = {"generator": "napari_rarepheno.core.datasets.mosaic", "crops_dir": str(root),
                "config": asdict(cfg), "split_method": method, "crops": summary["crops"],
                "channel_names": list(cfg.channel_names) if cfg.channel_names else None}
        (stage / "mosaic.json").write_text(json.dumps(meta, indent=2))
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary


def crop_split_table(crops_dir: str | Path, cfg: MosaicConfig | None = None) -> dict:
    """``{split: {class: n}}`` of the crop split that :func:`build_mosaics` would use."""
    cfg = cfg or MosaicConfig()
    found = list_crops(crops_dir)
    _check(cfg, found, Path(crops_dir))
    parts, _ = split_crops(found, cfg)
    return split_counts({s: [(p, c) for c, v in d.items() for p in v] for s, d in parts.items()})
