"""DeepYeast Train tab: class folders of single-cell crops -> a per-cell classifier."""
from __future__ import annotations

from pathlib import Path

from magicgui.widgets import ComboBox, LineEdit

from .. import _workers
from ..core.errors import InputError
from ..core.io.folders import parse_channels
from ._train_panel import TrainPanel, count_images

WIDTHS = {"full (paper)": 1.0, "half": 0.5, "quarter (fast)": 0.25}


def describe_class_folder(path: Path, channel_files=None) -> str:
    """'N classes, M crops: a (n), b (n)...' or what is wrong; with ``channel_files`` crops
    are counted, not files."""
    if not path.is_dir():
        return "not usable: folder not found"
    if path.suffix.lower() in (".h5", ".hdf5"):
        return "DeepLoc HDF5 file"
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        return "not usable: no class subfolders (expected ROOT/<class>/<crop images>)"
    try:
        counts = [(c.name, count_images(c, channel_files)) for c in classes]
    except InputError as e:
        return f"not usable: {e}"
    shown = ", ".join(f"{n} ({k})" for n, k in counts[:8]) + (", ..." if len(counts) > 8 else "")
    each = f" of {len(channel_files)} channel files each" if channel_files else ""
    return f"{len(counts)} classes, {sum(k for _, k in counts)} crops{each}: {shown}"


class DeepYeastTrainPanel(TrainPanel):
    kind = "deepyeast"
    default_epochs = 40  # with intensity augmentation (benchmarks/transfer.py: 20 epochs underfit)
    folder_label = "class folders"

    def folder_tooltip(self) -> str:
        return "ROOT/<class>/<crop>.tif: one folder per class of single-cell crops (e.g. 64x64, 2 channels)"

    def option_widgets(self) -> list:
        self.width = ComboBox(label="network size", choices=list(WIDTHS), value="full (paper)",
                              tooltip="'full' is the paper's network; smaller ones train faster on a CPU")
        self.channels = LineEdit(label="channels", value="",
                                 tooltip="channels of the crop files to use, in order, e.g. 0,1 (empty: all)")
        self.val_split = ComboBox(label="validation", choices=["position", "random", "none"], value="position",
                                  tooltip="hold out 15% of the crops: by field position/group (no leakage), "
                                  "at random, or none")
        return [self.width, self.channels, self.val_split]

    def check_folder(self, path: Path) -> str:
        return describe_class_folder(path, self.channel_file_patterns())

    def options(self) -> dict:
        try:
            channels = parse_channels(self.channels.value)
        except InputError:
            raise InputError(f"channels: give the crop files' channels as comma-separated numbers like 0,1 (got "
                             f"{self.channels.value!r})") from None
        return {"width": WIDTHS[self.width.value], "channels": channels,
                "val_split": None if self.val_split.value == "none" else self.val_split.value}

    def run_training(self, data, out, cfg, init_from, options, report, cancel):
        from ..core.deepyeast.data import DeepYeastOptions  # deferred: loads torch
        from ..core.deepyeast.train import train_deepyeast  # deferred: loads torch
        from ..core.training.trainer import TrainConfig  # deferred: loads torch

        return train_deepyeast(data, out, DeepYeastOptions(**options), TrainConfig(**cfg), callback=report,
                               cancel=cancel, init_from=init_from,
                               load_callback=_workers.count_progress(report, cancel, "loading crops"))
