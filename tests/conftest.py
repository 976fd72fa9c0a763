"""Shared fixtures: isolated caches and model folders, tiny simulated data sets.

Data sets are session-scoped (built once, read-only for the tests); anything a test
writes goes to its own ``tmp_path``. Plain helper functions shared by several test
modules are in ``tests/helpers.py`` (imported as ``helpers``).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

# pytest's default (prepend) import mode already puts this folder on sys.path for this
# conftest; say so explicitly so that ``import helpers`` works under any import mode
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

# pytest-qt picks its own binding (PySide6 first when installed); one process can hold only one
# Qt, so it follows qtpy's QT_API (``make test``: pyqt6). Read by pytest-qt's configure hook,
# which runs after this initial conftest.
if os.environ.get("QT_API") and not os.environ.get("PYTEST_QT_API"):
    os.environ["PYTEST_QT_API"] = os.environ["QT_API"]

#: the tiny WSCNN simulation used by widget and demo tests (fast on 2 CPU cores)
TINY_SIM = dict(height=96, width=128, grid=(3, 4), n_objects=(6, 10), size=(14, 18), rare_fraction=0.25)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """Never write into the user's home: caches and default model folders go to tmp."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("RAREPHENO_CACHE", str(base / "cache"))
    monkeypatch.setenv("RAREPHENO_MODELS_DIR", str(base / "models"))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))


@pytest.fixture(scope="session")
def wscnn_data(tmp_path_factory) -> Path:
    """DATA/{train,val,test}/{negative,positive}/*.png, 96x128 px, 16 images per class."""
    from napari_rarepheno.core.datasets.synthetic import SimConfig, simulate

    out = tmp_path_factory.mktemp("wscnn") / "data"
    simulate(out, SimConfig(n_per_class=16, seed=5, **TINY_SIM))
    return out


@pytest.fixture(scope="session")
def wscnn_model(wscnn_data, tmp_path_factory) -> Path:
    """A WSCNN trained for 3 epochs on :func:`wscnn_data` (through the core, not the GUI)."""
    from napari_rarepheno.core.training.trainer import TrainConfig
    from napari_rarepheno.core.wscnn.train import WSCNNOptions, train_wscnn

    out = tmp_path_factory.mktemp("wscnn-model") / "wscnn.safetensors"
    train_wscnn(wscnn_data, out, WSCNNOptions(), TrainConfig(epochs=3, device="cpu", seed=0, batch_size=8))
    return out


@pytest.fixture(scope="session")
def yeast_data(tmp_path_factory) -> Path:
    """Synthetic yeast: fields/ (2-channel TIFF + labels) and crops/<class>/ for 4 classes."""
    from napari_rarepheno.core.datasets.yeast import YeastConfig, simulate_yeast

    out = tmp_path_factory.mktemp("yeast") / "data"
    simulate_yeast(out, n_proteins=4, fields_per_protein=1, seed=0,
                   cfg=YeastConfig(height=192, width=192, n_cells=(10, 14)))
    for d in (out / "crops").iterdir():  # classes without a protein stay empty
        if not any(d.iterdir()):
            d.rmdir()
    return out


@pytest.fixture(scope="session")
def positive_image() -> np.ndarray:
    """One tiny simulated positive image (uint8 HxW), not part of :func:`wscnn_data`."""
    from napari_rarepheno.core.datasets.synthetic import (
        SimConfig,
        image_rng,
        render_image,
    )

    cfg = SimConfig(seed=105, **TINY_SIM)
    return render_image(image_rng(cfg, True, 3), cfg, True)[0]


@pytest.fixture(scope="session")
def deepyeast_model(yeast_data, tmp_path_factory) -> Path:
    """A quarter-width DeepYeast trained for 1 epoch on :func:`yeast_data` crops."""
    from napari_rarepheno.core.deepyeast.data import DeepYeastOptions
    from napari_rarepheno.core.deepyeast.train import train_deepyeast
    from napari_rarepheno.core.training.trainer import TrainConfig

    out = tmp_path_factory.mktemp("deepyeast-model") / "deepyeast.safetensors"
    train_deepyeast(yeast_data / "crops", out, DeepYeastOptions(width=0.25, val_split="random"),
                    TrainConfig(epochs=1, device="cpu", seed=0, batch_size=16))
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Random-weight model files (no training needed to test how files are refused):
    ``"wscnn"`` (narrow, 1 channel) and ``"deepyeast"`` (12 classes). Read-only for the tests."""
    from helpers import random_wscnn

    from napari_rarepheno.core.io.modelfile import ModelMeta, save_model
    from napari_rarepheno.core.nets.deepyeast import DeepYeast, DeepYeastConfig
    from napari_rarepheno.core.nets.registry import config_to_dict

    root = tmp_path_factory.mktemp("models")
    out = {"wscnn": random_wscnn(root / "wscnn.safetensors")}
    cfg = DeepYeastConfig(widths=(8,) * 8, fc_widths=(16, 16))
    out["deepyeast"] = save_model(root / "deepyeast.safetensors", DeepYeast(cfg),
                                  ModelMeta("deepyeast", config_to_dict(cfg), [f"c{i}" for i in range(12)]))
    return out


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks: one torch thread is fastest (and on a busy machine many times faster);
    modules ask for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
