"""The real data shipped inside the package (``napari_rarepheno/data/``, see its README):
CellCognition HeLa mitosis crops, one HeLa field stored one file per channel, and two
U2OS nuclei fields with hand-drawn masks. No download, no network."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError

DATA = Path(__file__).resolve().parents[2] / "data"
MITOSIS_CROPS = DATA / "mitosis-crops"
MITOSIS_FIELD = DATA / "mitosis-field"
NUCLEI = DATA / "nuclei"
#: the mitosis crops' channels (red, green); blue is empty and is not used
MITOSIS_CHANNELS = ("H2B", "tubulin")
MITOSIS_CLASSES = ("inter", "pro", "prometa", "meta", "earlyana", "lateana", "telo", "apo")


def bundled(path: Path) -> Path:
    """``path`` (one of the constants above), checked to be there."""
    if not path.exists():
        raise InputError("the data shipped with napari-rarepheno is missing from this installation; "
                         "reinstall the package", path)
    return path


def mitosis_field_files() -> tuple[Path, Path]:
    """(H2B file, tubulin file) of the bundled per-channel field."""
    folder = bundled(MITOSIS_FIELD)
    return next(folder.glob("*_Crfp_*.tif")), next(folder.glob("*_Cgfp_*.tif"))


def nuclei_pairs() -> list[tuple[Path, Path]]:
    """(image, hand-drawn mask) pairs of the bundled nuclei fields."""
    folder = bundled(NUCLEI)
    return [(img, folder / "masks" / img.name) for img in sorted((folder / "images").glob("*.png"))]
