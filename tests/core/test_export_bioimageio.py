"""bioimage.io export (``core.export``): a WSCNN and a DeepYeast packaged in the bioimage.io model
format pass bioimage.io's own test (``bioimageio.core``, a validator written elsewhere) offline,
and the packaged model gives napari-rarepheno's outputs, on the package's test input and on others;
bad input is refused with the file named and nothing written."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import random_wscnn

from napari_rarepheno.core.errors import InputError, ModelFileError, OutputError
from napari_rarepheno.core.export.bioimageio import TOLERANCE, export_bioimageio
from napari_rarepheno.core.inputs.normalize import Normalization
from napari_rarepheno.core.io.modelfile import (
    LoadedModel,
    ModelMeta,
    load_model,
    save_model,
)

pytestmark = [pytest.mark.filterwarnings("ignore:.*centre-cropping", "ignore::UserWarning:bioimageio"), pytest.mark.usefixtures("one_thread")]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Every connection refused and recorded: export and bioimage.io's test must not need one."""
    tried = []

    def refuse(*a, **k):
        tried.append(a[1:] or k)
        raise OSError("network access attempted")
    for mod, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "getaddrinfo"),
                      (socket, "create_connection")):
        monkeypatch.setattr(mod, name, refuse)
    yield
    assert tried == []


def member(package: Path, name: str) -> np.ndarray:
    with zipfile.ZipFile(package) as z:
        return np.load(io.BytesIO(z.read(name)))


def bioimageio_predict(package: Path, *inputs: np.ndarray) -> list[dict[str, np.ndarray]]:
    """The packaged model run by bioimage.io itself (its preprocessing, weights and architecture
    file) on each of ``inputs``."""
    from bioimageio.core import (
        create_prediction_pipeline,
        load_model_description,
        predict,
    )

    pp = create_prediction_pipeline(load_model_description(package))  # predict() loads and unloads it
    return [{str(k): v.data.values for k, v in predict(model=pp, inputs=x).members.items()} for x in inputs]


def bioimageio_test_command(package: Path, tmp_path: Path) -> dict:
    """``bioimageio test PACKAGE`` (the bioimageio.core command) in a fresh process whose every
    connection attempt fails and is logged; asserts it exits 0 having tried no connection and
    returns its JSON summary."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    log = tmp_path / "connections.log"
    (site / "sitecustomize.py").write_text(
        "import socket\n"
        "def _refuse(*a, **k):\n"
        f"    open({str(log)!r}, 'a').write(repr(a[1:] or k) + '\\n')\n"
        "    raise OSError('network access attempted')\n"
        "socket.socket.connect = socket.socket.connect_ex = _refuse\n"
        "socket.getaddrinfo = socket.create_connection = _refuse\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
               BIOIMAGEIO_CACHE_PATH=str(tmp_path / "bioimageio-cache"), OMP_NUM_THREADS="1")
    script = Path(sys.executable).with_name("bioimageio")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "bioimageio.core"]
    summary = tmp_path / "summary.json"
    run = subprocess.run([*command, "test", str(package), "--devices", "cpu", "--summary", str(summary)],
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert not log.exists(), f"bioimageio test tried to connect: {log.read_text()}"
    return json.loads(summary.read_text())


def ours(lm: LoadedModel, x: np.ndarray) -> dict[str, np.ndarray]:
    """napari-rarepheno's own outputs (float32 on the CPU) for (N, C, H, W) inputs as read."""
    if lm.meta.kind == "deepyeast":
        from napari_rarepheno.core.deepyeast.classify import classify_crops

        return {"probabilities": classify_crops(lm, x, device="cpu", precision="fp32")}
    from napari_rarepheno.core.inference.predict import classify_batch, predict_wscnn

    return {"probabilities": classify_batch(lm, x, device="cpu"),
            "class_maps": np.stack([predict_wscnn(lm, img, saliency=False).class_maps for img in x])}


def assert_same(got: dict, want: dict, atol: float = 1e-4) -> None:
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k].shape == v.shape, k
        assert np.abs(got[k] - v).max() < atol, (k, float(np.abs(got[k] - v).max()))


def real_inputs(kind: str, wscnn_data: Path | None = None, yeast_data: Path | None = None) -> np.ndarray:
    """Inputs that are not the package's test input: two simulated WSCNN test images (96x128, not
    the 128x128 test size) or eight simulated yeast crops."""
    from napari_rarepheno.core.io.images import read_image

    if kind == "wscnn":
        files = sorted((wscnn_data / "test" / "positive").glob("*.png"))[:2]
        return np.stack([read_image(f) for f in files])
    files = sorted(p for p in (yeast_data / "crops").rglob("*") if p.is_file())[::7][:8]
    return np.stack([read_image(f) for f in files])


# ------------------------------------------------------------------ the requirement
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["wscnn", "deepyeast"])
def test_bioimageio_test_passes_offline_and_the_package_gives_our_outputs(kind, request, tmp_path, wscnn_data,
                                                                         yeast_data):
    """A trained WSCNN / DeepYeast exported: ``bioimageio test OUT.zip`` passes offline (format, test
    input -> test outputs, other sizes and batch sizes); the package's test outputs are
    napari-rarepheno's, and bioimage.io running the package on other inputs gives ours too."""
    model = request.getfixturevalue(f"{kind}_model")
    (tmp_path / "out").mkdir()
    res = export_bioimageio(model, tmp_path / "out" / "model.zip")
    assert res.format_version.startswith("0.5")
    assert {"rdf.yaml", "weights.pt", "rarepheno_net.py", "test_input.npy", "test_output_probabilities.npy",
            "cover.png", "README.md", "sample_input.tif"} <= set(res.files)
    assert ("test_output_class_maps.npy" in res.files) == (kind == "wscnn")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.zip"]  # no staging left behind

    summary = bioimageio_test_command(res.path, tmp_path)
    assert summary["status"] == "passed"
    assert all(d["status"] == "passed" for d in summary["details"])
    assert any("Reproduce test outputs" in d["name"] for d in summary["details"])

    lm = load_model(model)
    x = member(res.path, "test_input.npy")
    want = ours(lm, x)
    for k, v in want.items():  # the test outputs are ours, computed from the test input
        assert np.allclose(member(res.path, f"test_output_{k}.npy"), v, atol=1e-6)
    other = real_inputs(kind, wscnn_data, yeast_data)
    got_test, got_other = bioimageio_predict(res.path, x, other)
    assert_same(got_test, want, TOLERANCE / 10)
    assert_same(got_other, ours(lm, other), TOLERANCE / 10)


# ------------------------------------------------------------------ every normalisation step
def _rewrite(path: Path, norm: Normalization, training: dict) -> Path:
    """The model file at ``path`` with another normalisation and training record."""
    lm = load_model(path)
    lm.meta.normalization = norm.to_dict()
    lm.meta.training = dict(training)
    return save_model(path, lm.model, lm.meta)


def _deepyeast(tmp_path: Path, norm: Normalization) -> Path:
    from napari_rarepheno.core.nets.deepyeast import DeepYeast, DeepYeastConfig
    from napari_rarepheno.core.nets.registry import config_to_dict

    torch.manual_seed(1)
    cfg = DeepYeastConfig(in_channels=2, n_classes=3, widths=(8,) * 8, fc_widths=(16, 16))
    meta = ModelMeta("deepyeast", config_to_dict(cfg), ["a", "b", "c"], None, norm.to_dict())
    return save_model(tmp_path / "dy.safetensors", DeepYeast(cfg).eval(), meta)


def _blobs(n: int, c: int, h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.1, 0.02, (n, c, h, w)).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        for _ in range(4):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            x[i] += rng.uniform(0.2, 0.6) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)[None]
    return x


@pytest.mark.parametrize("case", ["wscnn percentile, clip, border", "wscnn plain, no border",
                                  "deepyeast smooth, clip", "deepyeast smooth, no scaling"])
def test_every_normalisation_step_reaches_the_network_as_ours(case, tmp_path):
    """Per-sample percentile scaling (bioimage.io's scale_range), per-channel standardisation,
    per-channel clipping, the WSCNN border margin and the per-crop smoothing (inside the module):
    bioimage.io running the package on inputs of another size gives napari-rarepheno's outputs."""
    if case.startswith("wscnn"):
        if "percentile" in case:
            norm = Normalization(mean=[0.4], std=[0.3], scale="percentile", scale_percentiles=(2.0, 99.5),
                                 clip_values=[(0.0, 0.9)], clip_percentiles=(0.1, 99.9))
            model = _rewrite(random_wscnn(tmp_path / "w.safetensors"), norm, {})  # border: the rule's
        else:
            norm = Normalization(mean=[0.15], std=[0.2])
            model = _rewrite(random_wscnn(tmp_path / "w.safetensors"), norm, {"border_margin": 0})
        x = _blobs(2, 1, 70, 90, seed=3)
    else:
        scale = None if "no scaling" in case else "percentile"
        norm = Normalization(mean=[0.3, 0.2], std=[0.25, 0.2], scale=scale, smooth=1.5,
                             clip_values=None if scale is None else [(0.0, 1.0), (-0.1, 0.8)])
        model = _deepyeast(tmp_path, norm)
        x = _blobs(5, 2, 64, 64, seed=4)
    res = export_bioimageio(model, tmp_path / "m.zip")
    assert_same(bioimageio_predict(res.path, x)[0], ours(load_model(model), x), 1e-4)


# ------------------------------------------------------------------ bad input
def test_bad_input_names_the_file_and_writes_nothing(tmp_path, models):
    png = tmp_path / "not_a_model.safetensors"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    out = tmp_path / "out" / "m.zip"
    with pytest.raises(ModelFileError, match="not_a_model.safetensors"):
        export_bioimageio(png, out)
    with pytest.raises(ModelFileError, match="missing.safetensors"):
        export_bioimageio(tmp_path / "missing.safetensors", out)
    with pytest.raises(InputError, match=r"m\.tar.*\.zip"):
        export_bioimageio(models["wscnn"], tmp_path / "m.tar")
    with pytest.raises(InputError, match="no input statistics") as e:  # a model file without its normalisation
        export_bioimageio(models["deepyeast"], out)
    assert str(models["deepyeast"]) in str(e.value)
    # a test image the model cannot take: named, nothing written, no staging folder left
    from helpers import noise
    from helpers import png as write_png

    rgb = write_png(tmp_path / "rgb.png", noise(1, (64, 64, 3)))
    with pytest.raises(InputError, match="rgb.png"):
        export_bioimageio(models["wscnn"], out, sample=rgb)
    with pytest.raises(InputError, match="nothere.png"):
        export_bioimageio(models["wscnn"], out, sample=tmp_path / "nothere.png")
    assert not out.parent.exists()  # not even its folder
    # an existing package is kept unless overwrite
    out.parent.mkdir()
    out.write_bytes(b"old")
    with pytest.raises(OutputError, match="exists already"):
        export_bioimageio(models["wscnn"], out)
    assert out.read_bytes() == b"old"
    (tmp_path / "dir.zip").mkdir()
    with pytest.raises(OutputError, match="folder"):
        export_bioimageio(models["wscnn"], tmp_path / "dir.zip")


def test_a_sample_image_becomes_the_test_input(tmp_path, models, positive_image):
    """--sample: the user's own image is the test input (as read: uint8 scaled to [0, 1])."""
    from helpers import png as write_png

    img = write_png(tmp_path / "field.png", positive_image)
    res = export_bioimageio(models["wscnn"], tmp_path / "m.zip", sample=img, class_maps=False)
    assert res.outputs == ["probabilities"] and "test_output_class_maps.npy" not in res.files
    x = member(res.path, "test_input.npy")
    assert x.shape == (1, 1, *positive_image.shape)
    assert np.allclose(x[0, 0], positive_image / 255.0)
