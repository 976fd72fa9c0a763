"""Plain helpers shared by several test modules (fixtures live in ``conftest.py``).

Imported as ``helpers``: ``conftest.py`` puts this folder on ``sys.path``, and
``test_ddp.py`` passes it on to the processes it launches.

* Input files: :func:`noise`, :func:`png`, :func:`tif`, :func:`tree` build tiny images and
  class-folder trees under a test's ``tmp_path`` (used by the bad-input table, the
  accepted-input tests, the disk-full and the no-network tests).
* Model files: :func:`wscnn_meta`, :func:`random_wscnn` write random-weight models (no
  training needed to test how files are read or refused).
* CLI: :func:`predict` builds the ``rarepheno predict`` argv the tests run in-process.
* Training: :func:`blob_set` and :func:`make_trainer`, the tiny separable task that the
  trainer tests and the DDP test both train on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

from napari_rarepheno.core.inputs.normalize import Normalization
from napari_rarepheno.core.io.folders import ImageSet
from napari_rarepheno.core.io.modelfile import ModelMeta, save_model
from napari_rarepheno.core.nets.registry import config_to_dict
from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig
from napari_rarepheno.core.training.augment import AugmentConfig
from napari_rarepheno.core.training.trainer import TrainConfig, Trainer

SIZE = 64  # > the WSCNN's minimum input (46 px), small enough to be instant


# ------------------------------------------------------------------ input files
def noise(seed: int, shape=(SIZE, SIZE), dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        return rng.random(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 60000), shape, endpoint=True).astype(dtype)


def png(path: Path, arr: np.ndarray | None = None, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noise(seed) if arr is None else arr).save(path)
    return path


def tif(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, arr, **kw)
    return path


def tree(root: Path, n=(3, 3), split: str | None = "train", rgb_positive=False, size=SIZE) -> Path:
    """root/[split/]{negative,positive}/ with n noise PNGs each; returns the split folder."""
    base = root / split if split else root
    for c, k in zip(("negative", "positive"), n):
        for i in range(k):
            seed = (0 if c == "negative" else 50) + i
            arr = noise(seed, (size, size, 3) if (rgb_positive and c == "positive") else (size, size))
            png(base / c / f"{c[:3]}_{i}.png", arr)
    return base


# ------------------------------------------------------------------ model files
def wscnn_meta(cfg: WSCNNConfig, **kw) -> ModelMeta:
    return ModelMeta("wscnn", config_to_dict(cfg), ["negative", "positive"], None,
                     {"mean": [0.5] * cfg.in_channels, "std": [0.25] * cfg.in_channels}, **kw)


def random_wscnn(path: Path, **meta_kw) -> Path:
    torch.manual_seed(0)
    cfg = WSCNNConfig(in_channels=1, widths=(8, 16, 16))  # narrow: instant to run
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_model(path, WSCNN(cfg), wscnn_meta(cfg, **meta_kw))


# ------------------------------------------------------------------ CLI
def predict(tmp: Path, model: Path, *inputs: str) -> list[str]:
    return ["predict", str(model), *(inputs or [str(tmp / "in")]), "--out", str(tmp / "pred"),
            "--device", "cpu", "--quiet"]


# ------------------------------------------------------------------ training
def blob_set(n=32, size=64, seed=0):
    """Positives hold one bright 6x6 square at a random place; negatives only noise."""
    rng = np.random.default_rng(seed)
    imgs = rng.normal(0.1, 0.03, (n, 1, size, size)).astype(np.float32)
    labels = np.arange(n) % 2
    for i in np.flatnonzero(labels):
        y, x = rng.integers(4, size - 10, 2)
        imgs[i, 0, y:y + 6, x:x + 6] = 1.0
    return ImageSet(imgs, labels, ["negative", "positive"], [f"img{i}.png" for i in range(n)])


def make_trainer(tmp_path, epochs=4, **kw):
    """A full-width WSCNN :class:`Trainer` on :func:`blob_set` (seed 3), writing
    ``tmp_path/model.safetensors`` (nothing when ``tmp_path`` is None); returns it and the set."""
    data = blob_set()
    cfg = WSCNNConfig(in_channels=1)
    meta = ModelMeta("wscnn", config_to_dict(cfg), ["negative", "positive"])
    tc = TrainConfig(epochs=epochs, batch_size=8, seed=3, **kw)
    out = tmp_path / "model.safetensors" if tmp_path else None
    torch.manual_seed(3)  # weights are initialised when the network is built
    return Trainer(WSCNN(cfg), meta, tc, AugmentConfig(), Normalization.fit(data.images), out=out), data
