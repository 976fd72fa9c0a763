"""Device dropdown: ``auto`` plus what this machine really has.

Opening a dock must not import torch (seconds), so the first list comes from a cheap
probe (an NVIDIA driver, Apple silicon); once torch is loaded by the first job, the
list is refreshed from :func:`~..core.device.available_devices`. An explicit device
that turns out to be unavailable is refused by the engine with a clear message.
"""
from __future__ import annotations

import os
import platform
import shutil
import sys

from magicgui.widgets import ComboBox


def probe_devices() -> list[str]:
    if "torch" in sys.modules:
        from ..core.device import available_devices  # deferred: loads torch

        return available_devices()
    devs = ["auto"]
    if os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi"):
        devs.append("cuda")
    if sys.platform == "darwin" and platform.machine() == "arm64":
        devs.append("mps")
    devs.append("cpu")
    return devs


class DevicePicker(ComboBox):
    """``auto`` | cuda | mps | cpu, as available."""

    def __init__(self, label: str = "device", **kw):
        super().__init__(label=label, choices=probe_devices(), value="auto",
                         tooltip="auto: a GPU when there is one, else the CPU", **kw)

    def refresh(self) -> None:
        """Re-read the available devices (after torch is loaded: the real list)."""
        current = self.value
        choices = probe_devices()
        self.choices = choices
        self.value = current if current in choices else "auto"
