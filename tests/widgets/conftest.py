"""Fixtures for the docks on real screens: the bundled HeLa field (one TIFF per channel) and
random-weight two-channel models that know their channels by name and their training
images' statistics (so the shift checks are active). Session-scoped, read-only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from screens import CHANNELS, DIAMETER, PATTERNS


@pytest.fixture(scope="session")
def mitosis_field() -> dict:
    """{"files": (H2B file, tubulin file), "names": their stems, "field": (2, 1040, 1392) uint8}."""
    from napari_rarepheno.core.datasets.bundled import mitosis_field_files
    from napari_rarepheno.core.io.images import read_image

    files = mitosis_field_files()
    field = np.concatenate([read_image(p, as_float=False) for p in files])
    return {"files": files, "names": [p.stem for p in files], "field": field}


@pytest.fixture(scope="session")
def wscnn_2ch(mitosis_field, tmp_path_factory) -> Path:
    """A narrow random WSCNN for (H2B, tubulin) trained on per-channel files (_Crfp, _Cgfp),
    whose training images are the bundled field (intensity levels and object size)."""
    import torch
    from helpers import wscnn_meta

    from napari_rarepheno.core.io.images import to_float
    from napari_rarepheno.core.io.modelfile import save_model
    from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig
    from napari_rarepheno.core.wscnn.shift import image_input_stats

    torch.manual_seed(0)
    cfg = WSCNNConfig(in_channels=2, widths=(8, 16, 16))
    meta = wscnn_meta(cfg, channel_names=list(CHANNELS), training={"input": {"channel_files": list(PATTERNS)}})
    meta.input_stats = image_input_stats(to_float(mitosis_field["field"])[None])
    return save_model(tmp_path_factory.mktemp("wscnn-2ch") / "wscnn2.safetensors", WSCNN(cfg).eval(), meta)


@pytest.fixture(scope="session")
def deepyeast_2ch(mitosis_field, tmp_path_factory) -> Path:
    """A tiny random DeepYeast for (H2B, tubulin), trained on per-channel files (_Crfp, _Cgfp),
    whose training cells are crops of the bundled field (so the plain field is like its
    training cells and a brighter one is not).

    (The bundled mitosis crops were contrast-stretched one by one: the field reads 3.4x
    darker than them, so they cannot stand for "a field like the training cells".)"""
    import torch

    from napari_rarepheno.core.cells.crops import extract_crops
    from napari_rarepheno.core.cells.segment import cells_from_labels, segment_field
    from napari_rarepheno.core.deepyeast.train import crop_input_stats
    from napari_rarepheno.core.inputs.normalize import Normalization
    from napari_rarepheno.core.io.images import to_float
    from napari_rarepheno.core.io.modelfile import LoadedModel, ModelMeta, save_model
    from napari_rarepheno.core.nets.deepyeast import DeepYeast, DeepYeastConfig
    from napari_rarepheno.core.nets.registry import config_to_dict

    torch.manual_seed(0)
    cfg = DeepYeastConfig(in_channels=2, n_classes=2, widths=(8,) * 8, fc_widths=(16, 16))
    meta = ModelMeta("deepyeast", config_to_dict(cfg), ["interphase", "mitotic"], channel_names=list(CHANNELS),
                     training={"input": {"channel_files": list(PATTERNS)}})
    field = mitosis_field["field"]
    cells = cells_from_labels(segment_field(field[0], diameter=DIAMETER).labels)
    centres = np.stack([cells["centroid_y"], cells["centroid_x"]], 1)[::3]
    crops = extract_crops(to_float(field), centres, cfg.input_size)
    meta.normalization = Normalization.fit(crops).to_dict()
    model = DeepYeast(cfg).eval()
    meta.input_stats = crop_input_stats(LoadedModel(model, meta), crops, np.arange(len(crops)) % 2)
    return save_model(tmp_path_factory.mktemp("deepyeast-2ch") / "deepyeast2.safetensors", model, meta)
