"""Many loose image files: folders expanded to their images (one file each, or one file per
channel grouped into images), and output names that stay unique when inputs share a file
name (``a/img.png`` and ``b/img.png``, ``x.tif`` and ``x.png``, ``A.png`` and ``a.png`` on
a case-insensitive disk)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import InputError
from .folders import pair_channel_files, token_pattern
from .images import IMAGE_SUFFIXES, is_image_file


def expand_inputs(inputs: Sequence[Path]) -> list[Path]:
    """Files as given; folders expanded recursively to their images (sorted)."""
    files: list[Path] = []
    for p in inputs:
        p = Path(p)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f))
            if not found:
                raise InputError(f"folder contains no images ({', '.join(IMAGE_SUFFIXES)})", p)
            files += found
        elif p.exists():
            if not is_image_file(p):
                raise InputError(f"not an image file ({', '.join(IMAGE_SUFFIXES)})", p)
            files.append(p)
        else:
            raise InputError("not found", p)
    return files


def unique_names(files: Sequence[Path]) -> list[str]:
    """Output names: the file stem; where stems collide (compared case-insensitively, as
    on macOS/Windows disks) prefixed by as many parent folders as tell them apart, then
    the suffix (``x.tif``/``x.png``), then a counter."""
    files = [Path(f) for f in files]
    names = [f.stem for f in files]

    def collisions() -> list[list[int]]:
        groups: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            groups.setdefault(n.casefold(), []).append(i)
        return [g for g in groups.values() if len(g) > 1]

    for depth in range(1, 6):
        changed = False
        for g in collisions():
            if len({files[i].parent for i in g}) > 1:
                for i in g:
                    names[i] = "__".join(list(files[i].parts[-depth - 1:-1]) + [files[i].stem])
                changed = True
        if not changed:
            break
    for g in collisions():
        if len({files[i].suffix.casefold() for i in g}) > 1:
            for i in g:
                names[i] = f"{names[i]}_{files[i].suffix.lstrip('.')}"
    for g in collisions():
        for k, i in enumerate(g[1:], start=2):
            names[i] = f"{names[i]}_{k}"
    return names


def image_entries(inputs: Sequence[Path], channel_files: Sequence[str] | None = None) -> list[Path | tuple[Path, ...]]:
    """The images of ``inputs`` (files or folders, folders recursively): one file each, or
    with ``channel_files`` (substrings or regexes naming each channel's file, e.g.
    ``_Crfp,_Cgfp``) a tuple of one single-channel file per channel, paired within each
    folder (:func:`.folders.pair_channel_files`)."""
    files = expand_inputs(inputs)
    if not channel_files:
        return list(files)
    by_folder: dict[Path, list[Path]] = {}
    for f in files:
        by_folder.setdefault(f.parent, []).append(f)
    out: list[tuple[Path, ...]] = []
    for folder, fs in by_folder.items():
        out += pair_channel_files(folder, fs, channel_files)
    if not out:
        raise InputError(f"no image has all its channel files ({', '.join(channel_files)})", Path(inputs[0]))
    return out


def entry_path(entry: Path | tuple[Path, ...]) -> Path:
    """The file that stands for an image (its first channel's file)."""
    return entry[0] if isinstance(entry, tuple) else Path(entry)


def entry_names(entries: Sequence[Path | tuple[Path, ...]], channel_files: Sequence[str] | None = None) -> list[str]:
    """Unique output names: :func:`unique_names` of the files, with the channel token taken
    out of the names of per-channel images (``x_Crfp_s1.tif`` -> ``x_s1``)."""
    paths = []
    for e in entries:
        p = entry_path(e)
        if isinstance(e, tuple) and channel_files:
            m = token_pattern(channel_files[0]).search(p.name)
            if m:
                name = (p.name[:m.start()] + p.name[m.end():]).strip("_-. ") or p.name
                p = p.with_name(name)
        paths.append(p)
    return unique_names(paths)
