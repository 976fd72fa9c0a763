"""WSCNN Train tab: a folder of negative/positive images -> a weakly supervised CNN."""
from __future__ import annotations

from pathlib import Path

from magicgui.widgets import ComboBox

from .. import _workers
from ..core.errors import InputError
from ..core.io.folders import WSCNN_CLASSES, find_splits
from ._train_panel import TrainPanel, count_images


def describe_wscnn_folder(path: Path, channel_files=None) -> str:
    """One line saying what a WSCNN data folder holds (or what is wrong with it); with
    ``channel_files`` images are counted, not files."""

    try:
        splits = find_splits(path)
        parts = []
        for name, folder in splits.items():
            counts = [f"{count_images(folder / c, channel_files)} {c}" for c in WSCNN_CLASSES]
            parts.append(f"{name}: {' / '.join(counts)}")
    except InputError as e:
        return f"not usable: {e}"
    if "val" not in splits:
        parts.append("no val/ split: 20% of train is held out")
    if channel_files:
        parts.append(f"images of {len(channel_files)} channel files each")
    return "; ".join(parts)


#: augmentation choices: an AugmentConfig constructor name, or its keyword arguments
AUGMENT = {"paper (strong)": "wscnn_paper",
           "mild": {"rotation_ranges": [(-20.0, 20.0), (160.0, 200.0)], "translate_px": 8.0},
           "none": "none"}


class WSCNNTrainPanel(TrainPanel):
    kind = "wscnn"
    default_epochs = 10
    folder_label = "labeled folder"

    def folder_tooltip(self) -> str:
        return ("DATA/negative + DATA/positive, or DATA/{train,val,test}/{negative,positive}: "
                "each image labeled only as a whole")

    def option_widgets(self) -> list:
        self.depth = ComboBox(label="depth", choices=[4, 6], value=4,
                              tooltip="4 conv layers (paper default) or 6 (deeper variant)")
        self.head = ComboBox(label="head", choices=["max", "avg", "fc"], value="max",
                             tooltip="global max pooling localises best (paper); avg and fc are ablations")
        self.kernel = ComboBox(label="conv2 kernel", choices=[3, 5, 7], value=3,
                               tooltip="3 for small objects; 7 for cell images")
        self.augment = ComboBox(label="augmentation", choices=list(AUGMENT), value="paper (strong)",
                                tooltip="paper: flips, rotations, shifts of 40 px and scaling (Sailem et al.); "
                                "mild: flips, rotations and 8 px shifts (small images, few epochs)")
        return [self.depth, self.head, self.kernel, self.augment]

    def check_folder(self, path: Path) -> str:
        return describe_wscnn_folder(path, self.channel_file_patterns())

    def options(self) -> dict:
        return {"depth": int(self.depth.value), "head": str(self.head.value),
                "conv2_kernel": int(self.kernel.value), "augment": str(self.augment.value)}

    def run_training(self, data, out, cfg, init_from, options, report, cancel):
        from ..core.training.augment import AugmentConfig  # deferred: loads torch
        from ..core.training.trainer import TrainConfig  # deferred: loads torch
        from ..core.wscnn.train import (  # deferred: loads torch
            WSCNNOptions,
            train_wscnn,
        )

        options = dict(options)
        aug = AUGMENT[options.pop("augment")]
        opts = WSCNNOptions(**options, augment=getattr(AugmentConfig, aug)() if isinstance(aug, str)
                            else AugmentConfig(**aug))
        return train_wscnn(data, out, opts, TrainConfig(**cfg), callback=report, cancel=cancel, init_from=init_from,
                           load_callback=_workers.count_progress(report, cancel, "loading images"))
