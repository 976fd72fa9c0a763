"""A plate as a list of fields: ``(well, field, image source)``, read only when asked for.

Two forms of plate are read:

* **Folder plates** (what most microscopes export):

  - ``PLATE/<well>/<field files>``: one folder per well (``A01``, ``A1``, ``A-01``; or
    ``PLATE/<row>/<column>/`` as ``A/1``); a field is named by the ``s<N>`` of its file name
    when it has one (as :data:`DEFAULT_REGEX` reads it), else by its file name (the channel
    token taken out for per-channel files);
  - well and field taken from the file names by a regular expression with the named groups
    ``well`` and (optionally) ``field``, anywhere under ``PLATE`` -- the default
    :data:`DEFAULT_REGEX` reads MetaXpress-style names ``PLATE_A01_s1_w1.tif``. Without a
    ``field`` group the fields of a well are numbered in name order.

  Images stored one file per channel are paired as everywhere else (``channel_files``,
  e.g. ``_w1,_w2``: :func:`core.io.folders.pair_channel_files`).

* **OME-Zarr HCS plates** (NGFF 0.4 on zarr v2 and 0.5 on zarr v3): ``plate -> well ->
  field -> multiscale image``. Only the metadata is read here; a field's pixels are read
  when a worker asks for them, at any resolution ``level`` (0: full resolution, -1: the
  coarsest), by windows through :class:`core.inference.tiling.LazyImage` for big fields.
  Time and z axes: the first time point and plane ``z`` (default 0).

Every field reads as (C, H, W) in its stored dtype (the model's normalisation does the
rest). Fields are sources, not pixels: a :class:`PlateField` is a few strings, cheap to send
to another process or machine, which then reads the image itself from the shared disk or
object store.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..io.files import entry_path, image_entries
from ..io.folders import read_entry, token_pattern
from ..progress import CancelToken, ProgressCallback, report_items
from .layout import canonical_well, is_well, natural_key, plate_shape, well_sort_key

if TYPE_CHECKING:
    from ..inference.tiling import LazyImage

#: MetaXpress-style names: ``<plate>_<well>_s<field>[_w<channel>].tif``
DEFAULT_REGEX = r"_(?P<well>[A-Pa-p]\d{1,2})_s(?P<field>\d+)"


# ------------------------------------------------------------------ sources
@dataclass(frozen=True)
class FileSource:
    """One image file, or one single-channel file per channel."""

    files: tuple[str, ...]

    @property
    def entry(self):
        return Path(self.files[0]) if len(self.files) == 1 else tuple(Path(f) for f in self.files)

    def describe(self) -> str:
        return self.files[0]

    def read(self) -> np.ndarray:
        return read_entry(self.entry, as_float=False)

    def lazy(self) -> LazyImage:
        from ..inference.tiling import LazyImage  # deferred: loads torch

        return LazyImage(self.read())


class AxesView:
    """(C, H, W) view of an OME-Zarr array with other axes (t, z): numpy-style slicing of
    (c, y, x) reads only that window, at time point 0 and plane ``z``."""

    def __init__(self, array: Any, axes: Sequence[str], z: int = 0):
        self.array, self.axes, self.z = array, tuple(axes), int(z)
        shape = dict(zip(self.axes, (int(s) for s in array.shape)))
        self.shape = (shape.get("c", 1), shape["y"], shape["x"])
        self.dtype = np.dtype(array.dtype)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        pick = {"c": key[0], "y": key[1], "x": key[2], "z": self.z}
        win = np.asarray(self.array[tuple(pick.get(a, 0) for a in self.axes)])
        if "c" not in self.axes:
            win = win[None][key[0]]
        return win


@dataclass(frozen=True)
class ZarrSource:
    """One field of an OME-Zarr plate at one resolution level: ``store`` (path or URL of the
    plate), ``path`` (the array inside it, e.g. ``A/1/0/s0``), ``axes`` (e.g. ``cyx``, ``tczyx``)."""

    store: str
    path: str
    axes: tuple[str, ...]
    z: int = 0

    def describe(self) -> str:
        return f"{self.store}/{self.path}"

    def view(self) -> AxesView:
        import zarr  # deferred: loads zarr

        try:
            arr = zarr.open_array(store=self.store, path=self.path, mode="r")
        except (KeyError, FileNotFoundError, ValueError, TypeError) as e:
            raise InputError(f"cannot open the field's array {self.path} ({type(e).__name__}: {e})",
                             self.store) from None
        if arr.ndim != len(self.axes):
            raise InputError(f"the array {self.path} has {arr.ndim} dimensions but its metadata names the axes "
                             f"{''.join(self.axes)}", self.store)
        view = AxesView(arr, self.axes, self.z)
        nz = dict(zip(self.axes, arr.shape)).get("z", 1)
        if not 0 <= self.z < nz:
            raise InputError(f"plane z={self.z} asked for, but the field {self.path} has {nz} plane(s)", self.store)
        return view

    def read(self) -> np.ndarray:
        return self.view()[:, :, :]

    def lazy(self) -> LazyImage:
        from ..inference.tiling import LazyImage  # deferred: loads torch

        return LazyImage(self.view())


# ------------------------------------------------------------------ plates
@dataclass(frozen=True)
class PlateField:
    """One field of a plate: its well (``A01``), its name within the well, where its pixels are."""

    well: str
    field: str
    source: FileSource | ZarrSource

    @property
    def key(self) -> str:
        """``A01/s1``: unique within the plate (the fields table's ``well`` + ``field``)."""
        return f"{self.well}/{self.field}"

    def read(self) -> np.ndarray:
        """The field as (C, H, W) in its stored dtype."""
        return self.source.read()

    def lazy(self) -> LazyImage:
        """The field as a :class:`core.inference.tiling.LazyImage` (windows read on demand; files whole)."""
        return self.source.lazy()


@dataclass
class Plate:
    """The fields of a plate in plate order (A01 before A02 before B01; fields by name)."""

    path: str
    kind: str                      # 'folder' | 'ome-zarr'
    fields: list[PlateField]
    shape: tuple[int, int]         # rows, columns of the plate format (for the heatmap)
    name: str = ""
    level: int = 0
    # how it was read (to read it again: :func:`read_plate` with these)
    regex: str | None = None
    channel_files: tuple[str, ...] | None = None
    z: int = 0

    def __len__(self) -> int:
        return len(self.fields)

    @property
    def wells(self) -> list[str]:
        return list(dict.fromkeys(f.well for f in self.fields))


def _sorted(fields: list[PlateField]) -> list[PlateField]:
    return sorted(fields, key=lambda f: (well_sort_key(f.well), natural_key(f.field)))


def _check_unique(fields: list[PlateField], where) -> None:
    seen: dict[str, PlateField] = {}
    for f in fields:
        if f.key in seen:
            raise InputError(f"two images are field {f.field} of well {f.well}: {seen[f.key].source.describe()} and "
                             f"{f.source.describe()} (give a --regex whose 'field' group tells them apart)", where)
        seen[f.key] = f


def is_zarr(path: str | Path) -> bool:
    """A zarr group on disk (v2 or v3) or a URL (read as zarr)."""
    s = str(path)
    if "://" in s:
        return True
    p = Path(path)
    return p.is_dir() and any((p / n).is_file() for n in ("zarr.json", ".zattrs", ".zgroup"))


def read_plate(path: str | Path, *, regex: str | None = None, channel_files: Sequence[str] | None = None,
               level: int = 0, z: int = 0, callback: ProgressCallback = None,
               cancel: CancelToken | None = None) -> Plate:
    """A plate from an OME-Zarr HCS plate (``level``: resolution level, ``z``: plane) or a
    folder plate (``regex``, ``channel_files``); see the module docstring for the layouts."""
    if is_zarr(path):
        if regex or channel_files:
            raise InputError("--regex and --channel-files are for folder plates; an OME-Zarr plate names its wells "
                             "and fields itself", path)
        return read_zarr_plate(path, level=level, z=z, callback=callback, cancel=cancel)
    if level or z:
        raise InputError("--level and --z are for OME-Zarr plates; this is a folder plate", path)
    return read_folder_plate(path, regex=regex, channel_files=channel_files, callback=callback, cancel=cancel)


# ------------------------------------------------------------------ folder plates
def _compile(regex: str) -> re.Pattern:
    try:
        pat = re.compile(regex)
    except re.error as e:
        raise InputError(f"--regex {regex!r} is not a valid regular expression ({e})") from None
    if "well" not in pat.groupindex and pat.groups == 0:
        raise InputError(f"--regex {regex!r} needs a group for the well: (?P<well>...) (and optionally "
                         "(?P<field>...) for the field)")
    return pat


def _field_name(path: Path, channel_files: Sequence[str] | None) -> str:
    """The file name without suffix and channel token (``f1_w1.tif`` -> ``f1``)."""
    name = path.name
    if channel_files:
        m = token_pattern(channel_files[0]).search(name)
        if m:
            name = name[:m.start()] + name[m.end():]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return stem.strip("_-. ") or path.stem


def _well_of_folders(parts: Sequence[str]) -> str | None:
    """The well named by the folders between the plate and a file: ``A01/`` or ``A/1/``."""
    for i, part in enumerate(parts):
        if is_well(part):
            return canonical_well(part)
        if i + 1 < len(parts) and is_well(part + parts[i + 1]) and part.isalpha() and parts[i + 1].isdigit():
            return canonical_well(part + parts[i + 1])
    return None


def read_folder_plate(root: str | Path, *, regex: str | None = None, channel_files: Sequence[str] | None = None,
                      callback: ProgressCallback = None, cancel: CancelToken | None = None) -> Plate:
    """The fields of a folder plate. Wells come from ``regex`` (its ``well`` group, else its
    first group) when given, else from well folders, else from :data:`DEFAULT_REGEX`. Files
    that name no well are skipped with a warning; a plate where none does is refused."""
    root = Path(root)
    if not root.exists():
        raise InputError("plate folder not found", root)
    if not root.is_dir():
        raise InputError("expected a plate folder (PLATE/<well>/<images>) or an OME-Zarr plate, got a file", root)
    pat = _compile(regex) if regex else None
    default = re.compile(DEFAULT_REGEX)
    entries = image_entries([root], channel_files)
    found: list[tuple[str, str | None, Any]] = []
    unmatched: list[Path] = []
    for k, e in enumerate(entries):
        if cancel is not None:
            cancel.raise_if_cancelled()
        p = entry_path(e)
        well = field = None
        m = pat.search(p.name) if pat is not None else None
        if pat is None:
            well = _well_of_folders(p.relative_to(root).parts[:-1])
            m = default.search(p.name)
            if well is not None:  # the folder names the well; the name may still number the field
                field = m.group("field") if m is not None else _field_name(p, channel_files)
                m = None
        if m is not None:
            well = m.group("well") if "well" in m.re.groupindex else m.group(1)
            field = m.group("field") if "field" in m.re.groupindex else None
        if well is None or not is_well(well):
            unmatched.append(p)
            continue
        found.append((canonical_well(well, p), field, e))
        report_items(callback, k + 1, len(entries))
    how = f"--regex {regex!r}" if regex else "a well folder (PLATE/A01/...) or the default --regex " + repr(DEFAULT_REGEX)
    if not found:
        raise InputError(f"no image names its well: expected {how} (e.g. {unmatched[0].relative_to(root)})", root)
    if unmatched:
        names = ", ".join(str(p.relative_to(root)) for p in unmatched[:5])
        warnings.warn(f"{root}: skipped {len(unmatched)} image(s) that name no well ({how}): {names}"
                      f"{' ...' if len(unmatched) > 5 else ''}", stacklevel=2)
    counters: dict[str, int] = {}
    fields = []
    for well, field, e in sorted(found, key=lambda t: (well_sort_key(t[0]), natural_key(entry_path(t[2]).name))):
        if field is None:  # numbered in name order within the well
            counters[well] = counters.get(well, 0) + 1
            field = str(counters[well])
        files = tuple(str(f) for f in e) if isinstance(e, tuple) else (str(e),)
        fields.append(PlateField(well, str(field), FileSource(files)))
    _check_unique(fields, root)
    fields = _sorted(fields)
    return Plate(str(root), "folder", fields, plate_shape(f.well for f in fields), root.name, regex=regex,
                 channel_files=tuple(channel_files) if channel_files else None)


# ------------------------------------------------------------------ OME-Zarr HCS plates
def _ome(attrs) -> dict:
    """The OME metadata of a group: under 'ome' (NGFF 0.5, zarr v3) or at the top (0.4)."""
    a = dict(attrs)
    return dict(a.get("ome", a))


def _axes(ms: dict, ndim: int | None) -> tuple[str, ...]:
    axes = ms.get("axes")
    if axes is None:  # NGFF 0.1/0.2: always 5-D
        return ("t", "c", "z", "y", "x")[-(ndim or 5):]
    return tuple((a["name"] if isinstance(a, dict) else str(a)).lower() for a in axes)


def read_zarr_plate(store: str | Path, *, level: int = 0, z: int = 0, callback: ProgressCallback = None,
                    cancel: CancelToken | None = None) -> Plate:
    """The fields of an OME-Zarr HCS plate (metadata only; pixels are read per field).

    ``level``: the multiscale level every field is read at (0: full resolution; negative
    counts from the coarsest: -1). ``z``: the plane of z-stacks."""
    import zarr  # deferred: loads zarr

    store = str(store)
    try:
        root = zarr.open_group(store=store, mode="r")
    except (FileNotFoundError, KeyError, ValueError, TypeError) as e:
        raise InputError(f"not a zarr group ({type(e).__name__}: {e})", store) from None
    meta = _ome(root.attrs)
    if "plate" not in meta:
        what = ("one well of a plate; give the plate (its parent's parent)" if "well" in meta else
                "an OME-Zarr image, not an HCS plate" if "multiscales" in meta else "not an OME-Zarr HCS plate")
        raise InputError(f"{what} (no 'plate' metadata)", store)
    plate = meta["plate"]
    wells = plate.get("wells") or []
    if not wells:
        raise InputError("the plate metadata lists no wells", store)
    rows = [r["name"] for r in plate.get("rows", [])]
    cols = [c["name"] for c in plate.get("columns", [])]
    fields: list[PlateField] = []
    for k, w in enumerate(wells):
        if cancel is not None:
            cancel.raise_if_cancelled()
        wpath = w["path"] if isinstance(w, dict) else str(w)
        if isinstance(w, dict) and "rowIndex" in w and rows and cols:
            name = canonical_well(f"{rows[w['rowIndex']]}{cols[w['columnIndex']]}", store)
        else:
            name = canonical_well("".join(wpath.split("/")[-2:]), store)
        try:
            wmeta = _ome(root[wpath].attrs).get("well", {})
        except KeyError:
            raise InputError(f"the plate lists well {wpath} but it is not in the store", store) from None
        for img in wmeta.get("images", []):
            ipath = f"{wpath}/{img['path']}"
            try:
                ms = _ome(root[ipath].attrs).get("multiscales")
            except KeyError:
                raise InputError(f"well {wpath} lists field {img['path']} but it is not in the store", store) from None
            if not ms:
                raise InputError(f"field {ipath} has no multiscales metadata", store)
            datasets = ms[0]["datasets"]
            if not -len(datasets) <= level < len(datasets):
                raise InputError(f"resolution level {level} asked for, but field {ipath} has {len(datasets)} level(s) "
                                 f"(0..{len(datasets) - 1})", store)
            axes = _axes(ms[0], None)
            if not {"y", "x"} <= set(axes):
                raise InputError(f"field {ipath} has the axes {''.join(axes)}; y and x are needed", store)
            src = ZarrSource(store, f"{ipath}/{datasets[level]['path']}", axes, z)
            fields.append(PlateField(name, str(img["path"]), src))
        report_items(callback, k + 1, len(wells))
    if not fields:
        raise InputError("the plate's wells list no fields", store)
    _check_unique(fields, store)
    fields = _sorted(fields)
    need = plate_shape(f.well for f in fields)  # the metadata's rows and columns, or more if wells lie beyond
    shape = (max(len(rows), need[0]), max(len(cols), need[1]))
    return Plate(store, "ome-zarr", fields, shape, str(plate.get("name", Path(store).name)), level, z=int(z))
