"""Review decisions on suspected mislabels, and applying them to class folders (with undo).

The decisions CSV is append-only: one row per key press, ``image, current_label,
suggested_label, decision, timestamp`` (decision ``confirm`` or ``reject``); the last
row of an image wins, so changing one's mind is just another row.

Nothing moves silently: :func:`apply_decisions` returns a preview (``dry_run=True``,
the default) listing every move and every problem; only ``dry_run=False`` moves the
confirmed images from ``<split>/<current>/`` to ``<split>/<suggested>/``, after writing
an undo file (JSON) that :func:`undo` replays backwards. Image references in the
split's ``objects.csv`` / ``tiles.csv`` are renamed with the file (and back on undo).
"""
from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io.atomic import atomic_open, write_text

DECISION_FIELDS = ("image", "current_label", "suggested_label", "decision", "timestamp")
DECISIONS = ("confirm", "reject")
_REFERENCE_CSVS = ("objects.csv", "tiles.csv")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def record_decision(path: str | Path, image: str | Path, current_label: str, suggested_label: str,
                    decision: str) -> dict:
    """Append one decision (creating the file with its header); returns the row."""
    if decision not in DECISIONS:
        raise InputError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    row = {"image": str(image), "current_label": current_label, "suggested_label": suggested_label,
           "decision": decision, "timestamp": _now()}
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=DECISION_FIELDS, lineterminator="\n")
        if new:
            w.writeheader()
        w.writerow(row)
    return row


def read_decisions(path: str | Path) -> dict[str, dict]:
    """``{image: last decision row}`` of a decisions CSV."""
    path = Path(path)
    if not path.exists():
        raise InputError("decisions file not found", path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = set(DECISION_FIELDS[:4]) - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"not a decisions file: missing column(s) {', '.join(sorted(missing))} "
                             f"(expected {', '.join(DECISION_FIELDS)})", path)
        out: dict[str, dict] = {}
        for i, r in enumerate(reader, start=2):
            d = (r["decision"] or "").strip().lower()
            if d not in DECISIONS:
                raise InputError(f"line {i}: decision must be confirm or reject, got {r['decision']!r}", path)
            out[r["image"]] = dict(r, decision=d)
    return out


@dataclass
class Move:
    """One planned move. ``status``: 'move', 'skip' (rejected, or moved already) or 'error'."""

    image: str
    src: str
    dst: str
    status: str
    reason: str = ""


@dataclass
class ApplyPlan:
    moves: list[Move] = field(default_factory=list)
    applied: bool = False
    undo_file: str | None = None

    def count(self, status: str) -> int:
        return sum(m.status == status for m in self.moves)

    @property
    def errors(self) -> list[Move]:
        return [m for m in self.moves if m.status == "error"]

    def summary(self) -> str:
        verb = "moved" if self.applied else "to move"
        text = f"{self.count('move')} {verb}, {self.count('skip')} skipped, {self.count('error')} problem(s)"
        return text + (f"; undo file {self.undo_file}" if self.undo_file else "")


def _valid_label(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def plan_moves(data_dir: str | Path, decisions: dict[str, dict]) -> ApplyPlan:
    """What applying ``decisions`` to ``data_dir`` would do; changes nothing."""
    root = Path(data_dir).resolve()
    if not root.is_dir():
        raise InputError("data folder not found", data_dir)
    plan = ApplyPlan()
    targets: set[Path] = set()
    for image, d in decisions.items():
        src = Path(image)
        src = (src if src.is_absolute() else root / src).resolve()
        cur, sug = d["current_label"], d["suggested_label"]
        dst = src.parent.parent / sug / src.name
        renamed = dst.exists() and src.exists()
        if renamed:  # e.g. negative/img_00001.png and positive/img_00001.png
            dst = dst.with_name(f"{src.stem}__from_{cur}{src.suffix}")
        elif not src.exists() and not dst.exists():
            alt = dst.with_name(f"{src.stem}__from_{cur}{src.suffix}")
            dst = alt if alt.exists() else dst
        m = Move(image, str(src), str(dst), "move", f"renamed to {dst.name} (the name is taken)" if renamed else "")
        if d["decision"] == "reject":
            m.status, m.reason = "skip", "rejected"
        elif not src.is_relative_to(root):
            m.status, m.reason = "error", f"not inside the data folder {root}"
        elif not _valid_label(sug) or sug == cur:
            m.status, m.reason = "error", f"suggested label {sug!r} is not a different class folder name"
        elif not src.exists() and dst.exists():
            m.status, m.reason = "skip", "moved already"
        elif not src.exists():
            m.status, m.reason = "error", "image not found"
        elif src.parent.name != cur:
            m.status, m.reason = "error", f"the image is in {src.parent.name}/, not in {cur}/ (its current label)"
        elif dst.exists() or dst in targets:
            m.status, m.reason = "error", f"{dst} exists already"
        elif not dst.parent.is_dir():
            m.reason = f"creates the new class folder {dst.parent.name}/"
        targets.add(dst)
        plan.moves.append(m)
    return plan


def _rename_references(split_dir: Path, mapping: dict[str, str]) -> list[str]:
    """Rename image references (split-relative paths) in objects.csv / tiles.csv; returns
    the files changed."""
    changed = []
    for name in _REFERENCE_CSVS:
        path = split_dir / name
        if not path.exists() or not mapping:
            continue
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
        if not rows or "image" not in rows[0]:
            continue
        j = rows[0].index("image")
        hit = False
        for r in rows[1:]:
            if j < len(r) and r[j] in mapping:
                r[j], hit = mapping[r[j]], True
        if hit:
            with atomic_open(path, "w", "the table", encoding=None) as fh:
                csv.writer(fh, lineterminator="\n").writerows(rows)
            changed.append(str(path))
    return changed


def _references(moves: list[tuple[str, str]], reverse: bool = False) -> None:
    by_split: dict[Path, dict[str, str]] = {}
    for src, dst in moves:
        s, d = Path(src), Path(dst)
        a, b = f"{s.parent.name}/{s.name}", f"{d.parent.name}/{d.name}"
        by_split.setdefault(s.parent.parent, {}).update({b: a} if reverse else {a: b})
    for split, mapping in by_split.items():
        _rename_references(split, mapping)


def apply_decisions(data_dir: str | Path, decisions_csv: str | Path, dry_run: bool = True,
                    undo_file: str | Path | None = None) -> ApplyPlan:
    """Preview (default) or apply the confirmed decisions of ``decisions_csv`` to ``data_dir``.

    Applying refuses when the preview lists any problem (fix or remove those rows first).
    The undo file defaults to ``<decisions>.undo-<time>.json`` beside the decisions CSV."""
    plan = plan_moves(data_dir, read_decisions(decisions_csv))
    if dry_run:
        return plan
    if plan.errors:
        first = "; ".join(f"{Path(m.image).name}: {m.reason}" for m in plan.errors[:3])
        raise InputError(f"nothing moved: {len(plan.errors)} decision(s) cannot be applied ({first})",
                         decisions_csv)
    todo = [m for m in plan.moves if m.status == "move"]
    dc = Path(decisions_csv)
    undo_path = Path(undo_file) if undo_file else dc.with_name(f"{dc.stem}.undo-{time.strftime('%Y%m%d-%H%M%S')}.json")
    created = sorted({str(Path(m.dst).parent) for m in todo if not Path(m.dst).parent.is_dir()})
    record = {"kind": "napari-rarepheno apply-decisions", "data_dir": str(Path(data_dir).resolve()),
              "decisions": str(dc), "time": _now(), "created_folders": created,
              "moves": [{"src": m.src, "dst": m.dst} for m in todo], "undone": False}
    _write_json(undo_path, record)  # first: an interrupted apply can still be undone
    for m in todo:
        Path(m.dst).parent.mkdir(parents=True, exist_ok=True)
        os.replace(m.src, m.dst)
    _references([(m.src, m.dst) for m in todo])
    plan.applied, plan.undo_file = True, str(undo_path)
    return plan


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(doc, indent=2), "the undo file")


def undo(undo_file: str | Path, dry_run: bool = False) -> ApplyPlan:
    """Move the files of an applied decisions file back (and rename the CSV references back)."""
    path = Path(undo_file)
    try:
        doc = json.loads(path.read_text())
        moves = [(m["src"], m["dst"]) for m in doc["moves"]]
    except FileNotFoundError:
        raise InputError("undo file not found", path) from None
    except (ValueError, KeyError, TypeError):
        raise InputError("not an undo file written by apply-decisions", path) from None
    if doc.get("undone"):
        raise InputError(f"this undo file was used already ({doc.get('undone_time', '')})", path)
    plan = ApplyPlan(undo_file=str(path))
    for src, dst in reversed(moves):
        m = Move(Path(src).name, dst, src, "move")
        if not Path(dst).exists() and Path(src).exists():
            m.status, m.reason = "skip", "moved back already"
        elif not Path(dst).exists():
            m.status, m.reason = "error", "the moved image is gone"
        elif Path(src).exists():
            m.status, m.reason = "error", f"{src} exists again"
        plan.moves.append(m)
    if dry_run:
        return plan
    if plan.errors:
        raise InputError(f"nothing moved back: {plan.errors[0].src}: {plan.errors[0].reason}", path)
    back = [(m.dst, m.src) for m in plan.moves if m.status == "move"]
    for s, d in back:
        os.replace(d, s)
    _references(back, reverse=True)
    for folder in doc.get("created_folders", []):
        try:
            Path(folder).rmdir()  # only when empty again
        except OSError:
            pass
    doc.update(undone=True, undone_time=_now())
    _write_json(path, doc)
    plan.applied = True
    return plan


def plan_rows(plan: ApplyPlan) -> list[dict]:
    """The plan as table rows (for the CLI and the dock)."""
    return [asdict(m) for m in plan.moves]
