"""Train/validation/test splits that keep near-duplicates on one side.

Time-lapse crops named ``P<pos>_T<time>_X<x>_Y<y>.png`` (the CellCognition mitosis
crops: nearly all from position P0037) must not be split at random: consecutive frames
of one cell are near-duplicates. :func:`split_by_region` assigns whole *regions* of the
field to a split. A region is the position plus a spatial block of ``block`` pixels
(default 232x208, i.e. the 1392x1040 field cut into 6x5 blocks); regions that a cell
track crosses (a crop within ``link_distance`` px of a crop of the previous
``link_frames`` frames) are merged, so a cell followed over time stays in one split.

:func:`split_by_group` is the generic group-aware splitter behind it (proteins for the
yeast data, regions here); :func:`random_split` is a stratified random split for data
whose items are independent.

Items are either plain paths or ``(path, class)`` pairs; the result maps each split
name to the list of items it received, in input order.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Sequence, TypeVar

import numpy as np

from ..errors import InputError

T = TypeVar("T")
SPLITS = ("train", "val", "test")
_NAME = re.compile(r"^P(\d+)_T(\d+)_X(\d+)_Y(\d+)(?:\.[A-Za-z0-9]+)+$")


@dataclass(frozen=True)
class CellName:
    position: int
    time: int
    x: int
    y: int


def parse_cell_name(name: str | Path) -> CellName | None:
    """``P0037_T00012_X0412_Y0633.png`` -> CellName(37, 12, 412, 633); None if no match."""
    m = _NAME.match(Path(str(name)).name)
    return CellName(*(int(g) for g in m.groups())) if m else None


def region_key(name: str | Path, block: tuple[int, int] = (232, 208)) -> str:
    """``P0037_bx01_by03``: the position and the ``block`` (width, height) px block."""
    cell = parse_cell_name(name)
    if cell is None:
        raise InputError(f"file name {Path(str(name)).name} does not follow "
                         "P<pos>_T<time>_X<x>_Y<y>.png; use split_by_group or random_split",
                         name)
    return f"P{cell.position:04d}_bx{cell.x // block[0]:02d}_by{cell.y // block[1]:02d}"


def _path_and_class(item) -> tuple[str, Hashable]:
    if isinstance(item, (tuple, list)):
        return str(item[0]), item[1]
    return str(item), None


def _check_fractions(fractions: Sequence[float], splits: Sequence[str]) -> np.ndarray:
    f = np.asarray(fractions, float)
    if len(f) != len(splits) or (f < 0).any() or f.sum() <= 0:
        raise InputError(f"fractions {tuple(fractions)} must be {len(splits)} non-negative "
                         f"numbers, one per split {tuple(splits)}")
    return f / f.sum()


def _loss(counts: np.ndarray, target: np.ndarray, totals: np.ndarray) -> float:
    """Relative squared deviation from the target, plus a big penalty per missing class."""
    rel = (counts - target) / np.maximum(totals, 1)[None, :]
    missing = ((counts == 0) & (target > 0)).sum()
    return float((rel ** 2).sum() + 10.0 * missing)


def split_by_group(items: Sequence[T], group_of: Callable[[T], Hashable],
                   fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0,
                   splits: Sequence[str] = SPLITS,
                   class_of: Callable[[T], Hashable] | None = None,
                   max_swap_groups: int = 200) -> dict[str, list[T]]:
    """Assign whole groups to splits, close to ``fractions`` for every class.

    A greedy pass (largest groups first, ties broken by ``seed``) is followed by
    single moves and (up to ``max_swap_groups`` groups) pairwise swaps of groups
    while they lower the deviation from the target counts per (split, class); a
    class missing from a split costs most. ``class_of`` defaults to the second
    element of ``(path, class)`` items (None for plain paths).
    """
    f = _check_fractions(fractions, splits)
    if class_of is None:
        class_of = lambda it: _path_and_class(it)[1]  # noqa: E731
    keys = [group_of(it) for it in items]
    classes = sorted({class_of(it) for it in items}, key=str)
    groups = sorted(set(keys), key=str)
    if not groups:
        return {s: [] for s in splits}
    gi = {g: i for i, g in enumerate(groups)}
    ci = {c: i for i, c in enumerate(classes)}
    gc = np.zeros((len(groups), len(classes)))
    for it, k in zip(items, keys):
        gc[gi[k], ci[class_of(it)]] += 1
    totals = gc.sum(0)
    target = f[:, None] * totals[None, :]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(groups))
    order = order[np.argsort(-gc[order].sum(1), kind="stable")]
    assign = np.full(len(groups), -1)
    counts = np.zeros((len(splits), len(classes)))
    active = np.flatnonzero(f > 0)
    for g in order:  # greedy: the split where the group helps most
        best = min(active, key=lambda s: _loss(counts + np.eye(len(splits))[s][:, None] * gc[g],
                                               target, totals) + 1e-9 * rng.random())
        assign[g] = best
        counts[best] += gc[g]
    current = _loss(counts, target, totals)
    for _ in range(50):  # local search: moves, then swaps
        improved = False
        for g in rng.permutation(len(groups)):
            for s in active:
                if s == assign[g]:
                    continue
                trial = counts.copy()
                trial[assign[g]] -= gc[g]
                trial[s] += gc[g]
                val = _loss(trial, target, totals)
                if val < current - 1e-12:
                    counts, current, assign[g], improved = trial, val, s, True
        for g in range(len(groups) if len(groups) <= max_swap_groups else 0):
            for h in range(g + 1, len(groups)):
                if assign[g] == assign[h]:
                    continue
                trial = counts.copy()
                diff = gc[g] - gc[h]
                trial[assign[g]] -= diff
                trial[assign[h]] += diff
                val = _loss(trial, target, totals)
                if val < current - 1e-12:
                    counts, current, improved = trial, val, True
                    assign[g], assign[h] = assign[h], assign[g]
        if not improved:
            break
    out: dict[str, list[T]] = {s: [] for s in splits}
    for it, k in zip(items, keys):
        out[splits[assign[gi[k]]]].append(it)
    return out


def random_split(items: Sequence[T], fractions: Sequence[float] = (0.6, 0.2, 0.2),
                 seed: int = 0, splits: Sequence[str] = SPLITS,
                 class_of: Callable[[T], Hashable] | None = None) -> dict[str, list[T]]:
    """Stratified random split, for items that are independent of each other."""
    f = _check_fractions(fractions, splits)
    if class_of is None:
        class_of = lambda it: _path_and_class(it)[1]  # noqa: E731
    rng = np.random.default_rng(seed)
    by_class: dict[Hashable, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by_class[class_of(it)].append(i)
    where = np.zeros(len(items), int)
    for c in sorted(by_class, key=str):
        idx = np.asarray(by_class[c])[rng.permutation(len(by_class[c]))]
        edges = np.round(np.cumsum(f) * len(idx)).astype(int)
        for s, part in enumerate(np.split(idx, edges[:-1])):
            where[part] = s
    out: dict[str, list[T]] = {s: [] for s in splits}
    for i, it in enumerate(items):
        out[splits[where[i]]].append(it)
    return out


def link_tracks(names: Sequence[str | Path], link_distance: float = 40.0,
                link_frames: int = 3) -> list[int]:
    """Track id per crop: crops of one position within ``link_distance`` px and
    ``link_frames`` frames of each other are chained (union-find) into one track."""
    cells = [parse_cell_name(n) for n in names]
    bad = [Path(str(n)).name for n, c in zip(names, cells) if c is None]
    if bad:
        raise InputError(f"{len(bad)} file name(s) do not follow P<pos>_T<time>_X<x>_Y<y>.png, "
                         f"e.g. {', '.join(bad[:3])}; use split_by_group or random_split",
                         str(names[0]) if names else None)
    parent = list(range(len(cells)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    arr = np.array([(c.position, c.time, c.x, c.y) for c in cells], float).reshape(-1, 4)
    for pos in np.unique(arr[:, 0]):
        idx = np.flatnonzero(arr[:, 0] == pos)
        p = arr[idx]
        dt = p[None, :, 1] - p[:, None, 1]
        near = np.hypot(p[None, :, 2] - p[:, None, 2], p[None, :, 3] - p[:, None, 3])
        for a, b in zip(*np.nonzero((dt > 0) & (dt <= link_frames) & (near <= link_distance))):
            ra, rb = find(int(idx[a])), find(int(idx[b]))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(len(cells))]


def track_regions(names: Sequence[str | Path], block: tuple[int, int] = (232, 208),
                  link_distance: float = 40.0, link_frames: int = 3) -> list[str]:
    """Region key per crop: the block of the *first* crop of its track, so that a
    cell followed over consecutive frames lands in one region even if it drifts
    over a block border."""
    tracks = link_tracks(names, link_distance, link_frames)
    cells = [parse_cell_name(n) for n in names]
    first: dict[int, int] = {}
    for i, t in enumerate(tracks):
        if t not in first or (cells[i].time, i) < (cells[first[t]].time, first[t]):
            first[t] = i
    return [region_key(names[first[t]], block) for t in tracks]


def split_by_region(files: Sequence[T], fractions: Sequence[float] = (0.6, 0.2, 0.2),
                    seed: int = 0, block: tuple[int, int] = (232, 208),
                    link_distance: float = 40.0, link_frames: int = 3,
                    splits: Sequence[str] = SPLITS) -> dict[str, list[T]]:
    """Split ``P<pos>_T<time>_X<x>_Y<y>`` crops by region of the field (see module doc).

    ``files``: paths or ``(path, class)`` pairs. Whole regions go to one split; the
    assignment keeps each class close to ``fractions`` and present in every split
    whenever the number of regions holding that class allows it.
    """
    pairs = [_path_and_class(it) for it in files]
    regions = track_regions([p for p, _ in pairs], block, link_distance, link_frames)
    parts = split_by_group(range(len(files)), lambda i: regions[i], fractions, seed, splits,
                           class_of=lambda i: pairs[i][1])
    return {s: [files[i] for i in idx] for s, idx in parts.items()}


def split_counts(result: dict[str, list], class_of: Callable | None = None) -> dict[str, dict]:
    """``{split: {class: n}}`` for printing and checks."""
    class_of = class_of or (lambda it: _path_and_class(it)[1])
    return {s: dict(sorted(Counter(class_of(it) for it in items).items(), key=str))
            for s, items in result.items()}
