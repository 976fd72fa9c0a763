"""A napari-rarepheno model as a bioimage.io model package (``rarepheno export M --bioimageio OUT.zip``).

The package follows the current bioimage.io model description (format 0.5, the version the
installed ``bioimageio.spec`` writes) and runs in any bioimage.io consumer with PyTorch:

* ``rdf.yaml`` - the description: inputs and outputs (axes, data types, channel and class
  names), preprocessing, weights, test tensors, authors, licence, citations, tags, and the
  napari-rarepheno model's metadata under ``config.napari-rarepheno``;
* ``weights.pt`` - ``pytorch_state_dict`` weights (a plain state dict of tensors);
* ``rarepheno_net.py`` - the architecture: the networks' own source (``core/nets``) and
  :mod:`.bioimageio_net`, nothing but torch needed;
* ``test_input.npy`` and ``test_output_*.npy`` - a test input and what napari-rarepheno itself
  gives for it (``classify_batch`` / ``predict_wscnn`` for a WSCNN, ``classify_crops`` for
  DeepYeast), so ``bioimageio test`` checks that the package reproduces napari-rarepheno;
* ``cover.png`` and ``README.md`` (what the model takes and gives, the normalisation, how it
  was checked).

Normalisation (:class:`core.inputs.normalize.Normalization`): the per-sample percentile scaling
is bioimage.io's ``scale_range`` over (y, x) per sample and channel, the per-channel statistics
``fixed_zero_mean_unit_variance`` along the channel axis; what preprocessing cannot say (the
per-crop smoothing of DeepYeast models, per-channel clipping, the WSCNN border margin) runs
inside the module (:mod:`.bioimageio_net`).

:func:`check_bioimageio` runs the bioimage.io validator (``bioimageio.core``) on a package
without touching the network.
"""
from __future__ import annotations

import ast
import getpass
import inspect
import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from ..errors import (
    InputError,
    OutputError,
    RarephenoError,
    ensure_writable_dir,
    output_error,
)
from ..inputs.normalize import Normalization
from ..io.atomic import atomic_path
from ..io.images import to_float
from ..io.modelfile import LoadedModel, as_loaded

ARCHITECTURE_FILE = "rarepheno_net.py"
WEIGHTS_FILE = "weights.pt"
#: default licence of the exported weights (bioimage.io's recommendation for models)
DEFAULT_LICENSE = "CC-BY-4.0"
CITATIONS = {
    "wscnn": (("Sailem H, Arias-Garcia M, Bakal C, Zisserman A, Rittscher J. Discovery of rare phenotypes in "
              "cellular images using weakly supervised deep learning. Proceedings of the IEEE International "
              "Conference on Computer Vision Workshops (ICCVW), 2017, 49-55 (the WSCNN)."), "10.1109/ICCVW.2017.13"),
    "deepyeast": (("Parnamaa T, Parts L. Accurate classification of protein subcellular localization from "
                  "high-throughput microscopy images using deep learning. G3 (Bethesda) 7(5), 2017, 1385-1392 "
                  "(DeepYeast)."), "10.1534/g3.116.033654"),
}
TAGS = {
    "wscnn": ["weakly-supervised", "rare-phenotypes", "image-classification", "class-activation-maps",
              "high-content-screening", "fluorescence-light-microscopy", "2d", "pytorch", "napari-rarepheno"],
    "deepyeast": ["protein-localization", "yeast", "single-cell", "cell-classification",
                  "high-content-screening", "fluorescence-light-microscopy", "2d", "pytorch", "napari-rarepheno"],
}
#: bioimage.io's default reproducibility tolerance; the tests hold the package to it
TOLERANCE = 1e-3


@dataclass
class BioimageioExport:
    """What :func:`export_bioimageio` wrote."""

    path: Path
    kind: str
    format_version: str
    files: list[str]
    outputs: list[str]                         # output tensor ids, in order
    test_input_shape: tuple[int, ...]
    smoothing_in_module: bool = False          # the per-crop smoothing runs inside the module
    notes: list[str] = field(default_factory=list)
    check: BioimageioCheck | None = None     # bioimage.io's test of the package, when asked for


# ------------------------------------------------------------------ architecture file
def _body(module) -> str:
    """A module's source without its docstring, ``from __future__`` and package-relative imports."""
    src = inspect.getsource(module)
    lines = src.split("\n")
    drop: set[int] = set()
    tree = ast.parse(src)
    for i, node in enumerate(tree.body):
        doc = i == 0 and isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)
        if doc or (isinstance(node, ast.ImportFrom) and (node.level > 0 or node.module == "__future__")):
            drop.update(range(node.lineno - 1, node.end_lineno))
    return "\n".join(line for j, line in enumerate(lines) if j not in drop).strip("\n")


def architecture_source() -> str:
    """The package's architecture file: the networks of ``core/nets`` and :mod:`.bioimageio_net` in one
    module that imports nothing but torch (and the standard library)."""
    from ..nets import deepyeast, layers, wscnn  # deferred: loads torch
    from . import bioimageio_net  # deferred: loads torch

    parts = [(m.__name__, _body(m)) for m in (layers, wscnn, deepyeast, bioimageio_net)]
    head = ('"""napari-rarepheno networks (WSCNN, DeepYeast) for bioimage.io: the callable is RarephenoNet.\n\n'
            'Generated by napari-rarepheno from its own source; see README.md."""\n'
            "from __future__ import annotations\n")
    return head + "".join(f"\n\n# {'-' * 66} from {name}\n{body}\n" for name, body in parts)


# ------------------------------------------------------------------ test inputs
def _blobs(rng: np.random.Generator, n_channels: int, size: int, diameter: float, n_blobs: int) -> np.ndarray:
    """A (C, size, size) float32 image in [0, 1]: dim background, noise, bright round objects."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    img = rng.normal(0.08, 0.01, (n_channels, size, size)).astype(np.float32)
    for _ in range(n_blobs):
        cy, cx = rng.uniform(0.15 * size, 0.85 * size, 2)
        r = diameter / 2 * rng.uniform(0.7, 1.3)
        blob = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (r / 1.5) ** 2)))
        for c in range(n_channels):
            img[c] += rng.uniform(0.2, 0.7) * blob * (1.0 if c == 0 else rng.uniform(0.2, 1.0))
    return np.clip(img, 0, 1).astype(np.float32)


def default_test_input(lm: LoadedModel, seed: int = 0) -> np.ndarray:
    """A small synthetic test input of the model's shape: one (1, C, S, S) image for a WSCNN
    (S: 128 px, or the fixed input size of an 'fc' head), four (4, C, 64, 64) crops for DeepYeast."""
    rng = np.random.default_rng(seed)
    cfg = lm.model.config
    c = int(cfg.in_channels)
    diameter = float(lm.meta.input_stats.get("object_diameter") or 0) or None
    if lm.meta.kind == "deepyeast":
        s = int(cfg.input_size)
        return np.stack([_blobs(rng, c, s, diameter or s / 3, 1) for _ in range(4)])
    if getattr(cfg, "head", "max") == "fc":
        h, w = (int(v) for v in cfg.input_size)
        return _blobs(rng, c, max(h, w), diameter or 14, 8)[None, :, :h, :w].copy()
    s = max(128, int(lm.model.min_input_size))
    return _blobs(rng, c, s, diameter or 14, 8)[None]


def _test_input(lm: LoadedModel, sample) -> np.ndarray:
    """The package's test input: ``sample`` (an array, or an image file read as napari-rarepheno reads
    it) brought to the network's input, or :func:`default_test_input`."""
    if sample is None:
        return default_test_input(lm)
    path = None
    if isinstance(sample, (str, Path)):
        from ..io.images import (
            read_image,  # deferred: reads image files (tifffile, PIL)
        )

        path = Path(sample)
        if not path.is_file():
            raise InputError("test input image not found", path)
        sample = read_image(path, as_float=False)
    x = np.asarray(sample)
    c = int(lm.model.config.in_channels)
    if lm.meta.kind == "wscnn":
        from ..inference.predict import prepare_image  # deferred: loads torch

        if x.ndim == 4:
            if x.shape[0] != 1:
                raise InputError(f"a WSCNN's test input is one image, got a stack of {x.shape[0]}", path)
            x = x[0]
        img = prepare_image(lm, x, path)
        size = tuple(getattr(lm.model.config, "input_size", ()) or ())
        if getattr(lm.model.config, "head", "max") == "fc" and tuple(img.shape[1:]) != size:
            raise InputError(f"this model (head='fc') takes {size} px images, the test input is "
                             f"{tuple(img.shape[1:])}", path)
        return img[None]
    from ..deepyeast.data import fit_size  # deferred: loads torch

    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[None] if (x.shape[0] == c or path is not None) else x[:, None]
    sel = list(lm.meta.channels or [])
    if x.ndim == 4 and x.shape[1] > c and len(sel) == c and all(-x.shape[1] <= k < x.shape[1] for k in sel):
        x = x[:, sel]  # the channels the model was trained on
    if x.ndim != 4 or x.shape[1] != c:
        raise InputError(f"DeepYeast test crops must be (N, {c}, H, W) (the model's {c} channel(s)), got shape "
                         f"{np.asarray(sample).shape}", path)
    x = fit_size(to_float(x), int(lm.model.config.input_size))
    if not np.isfinite(x).all():
        raise InputError("the test crops have NaN/inf pixels", path)
    return np.ascontiguousarray(x, dtype=np.float32)


def _reference_outputs(lm: LoadedModel, x: np.ndarray, class_maps: bool) -> dict[str, np.ndarray]:
    """napari-rarepheno's own outputs for the test input (what the package must reproduce)."""
    if lm.meta.kind == "deepyeast":
        from ..deepyeast.classify import classify_crops  # deferred: loads torch

        return {"probabilities": classify_crops(lm, x, device="cpu", precision="fp32")}
    from ..inference.predict import (  # deferred: loads torch
        classify_batch,
        predict_wscnn,
    )

    out = {"probabilities": classify_batch(lm, x, device="cpu")}
    if class_maps:
        out["class_maps"] = predict_wscnn(lm, x[0], saliency=False, device="cpu").class_maps[None]
    return out


# ------------------------------------------------------------------ the module
def module_kwargs(lm: LoadedModel, class_maps: bool = True) -> dict:
    """The keyword arguments of ``RarephenoNet`` for ``lm`` (the rdf's ``architecture.kwargs``)."""
    from ..inference.border import border_margin  # deferred: loads torch

    norm = Normalization.of_model(lm.meta)
    return {
        "kind": lm.meta.kind,
        "config": json.loads(json.dumps(lm.meta.config)),
        "mean": [float(v) for v in norm.mean],
        "std": [float(v) for v in norm.std],
        "scale": norm.scale,
        "percentiles": [float(p) for p in norm.scale_percentiles],
        "smooth": float(norm.smooth),
        "clip": [[float(a), float(b)] for a, b in norm.clip_values] if norm.clip_values else None,
        "border": int(border_margin(lm)),
        "class_maps": bool(class_maps and lm.meta.kind == "wscnn"),
    }


def exported_module(lm: LoadedModel, class_maps: bool = True):
    """``RarephenoNet`` holding ``lm``'s weights, in eval mode (what the package's weights load into)."""
    from .bioimageio_net import RarephenoNet  # deferred: loads torch

    net = RarephenoNet(**module_kwargs(lm, class_maps))
    net.net.load_state_dict(lm.model.state_dict())
    return net.eval()


# ------------------------------------------------------------------ the package
def _name(lm: LoadedModel, name: str | None) -> str:
    base = name or (f"{'WSCNN' if lm.meta.kind == 'wscnn' else 'DeepYeast'} "
                    f"{Path(lm.path).stem if lm.path else 'model'}")
    clean = re.sub(r"[^A-Za-z0-9_+\- ()]+", " ", base).strip()
    clean = re.sub(r"\s+", " ", clean)[:64]
    return clean if len(clean) >= 5 else f"{clean} model".strip()


def _description(lm: LoadedModel) -> str:
    names = ", ".join(lm.meta.class_names)
    if lm.meta.kind == "wscnn":
        return (f"WSCNN (weakly supervised CNN, Sailem et al. 2017) trained with napari-rarepheno on image-level "
                f"labels: class probabilities of a whole image ({names}) and class maps that localise the evidence.")
    return (f"DeepYeast (Parnamaa & Parts 2017) trained with napari-rarepheno: class probabilities ({names}) of "
            f"single-cell crops of {lm.model.config.input_size}x{lm.model.config.input_size} px.")


def _cover(path: Path, lm: LoadedModel, x: np.ndarray, ref: dict[str, np.ndarray]) -> None:
    """A 2:1 PNG: the test input and what the model says about it."""
    from matplotlib.backends.backend_agg import (
        FigureCanvasAgg,  # deferred: loads matplotlib
    )
    from matplotlib.figure import Figure  # deferred: loads matplotlib

    def composite(img: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(img, (1, 99.8), axis=(1, 2), keepdims=True)
        s = np.clip((img - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
        if s.shape[0] == 1:
            return np.repeat(s[0][..., None], 3, -1)
        rgb = np.zeros(s.shape[1:] + (3,), np.float32)
        colours = [(0, 1, 0), (1, 0, 1), (0, 0.6, 1), (1, 0.6, 0)]
        for c in range(s.shape[0]):
            rgb += s[c][..., None] * np.asarray(colours[c % len(colours)], np.float32)
        return np.clip(rgb, 0, 1)

    fig = Figure(figsize=(8, 4), dpi=80)
    FigureCanvasAgg(fig)
    names = list(lm.meta.class_names)
    probs = ref["probabilities"]
    ax0, ax1 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    if lm.meta.kind == "wscnn":
        ax0.imshow(composite(x[0]))
        ax0.set_title("test input", fontsize=10)
        k = int(np.argmax(probs[0]))
        if "class_maps" in ref:
            ax1.imshow(ref["class_maps"][0, k], cmap="magma")
            ax1.set_title(f"class map: {names[k]} (p={probs[0, k]:.2f})", fontsize=10)
        else:
            ax1.barh(range(len(names)), probs[0], color="tab:orange")
            ax1.set_yticks(range(len(names)), names, fontsize=8)
            ax1.set_xlim(0, 1)
            ax1.set_title("class probabilities", fontsize=10)
    else:
        n = min(len(x), 4)
        side = int(np.ceil(np.sqrt(n)))
        s = x.shape[-1]
        grid = np.zeros((side * s, side * s, 3), np.float32)
        for i in range(n):
            r, c = divmod(i, side)
            grid[r * s:(r + 1) * s, c * s:(c + 1) * s] = composite(x[i])
        ax0.imshow(grid)
        ax0.set_title("test crops", fontsize=10)
        ax1.barh(range(len(names)), probs[:n].mean(0), color="tab:orange")
        ax1.set_yticks(range(len(names)), names, fontsize=7)
        ax1.set_xlim(0, 1)
        ax1.invert_yaxis()
        ax1.set_title("mean class probability", fontsize=10)
    ax0.axis("off")
    if lm.meta.kind == "wscnn" and "class_maps" in ref:
        ax1.axis("off")
    fig.suptitle(_description_title(lm), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, format="png")


def _description_title(lm: LoadedModel) -> str:
    return f"napari-rarepheno {'WSCNN' if lm.meta.kind == 'wscnn' else 'DeepYeast'}: {len(lm.meta.class_names)} classes"


def _readme(lm: LoadedModel, kw: dict, x: np.ndarray, outputs: list[str], name: str) -> str:
    kind = lm.meta.kind
    channels = lm.meta.input_names()
    norm = Normalization.of_model(lm.meta)
    cite_text, doi = CITATIONS[kind]
    lines = [f"# {name}", "", _description(lm), "",
             "Exported by napari-rarepheno (`rarepheno export MODEL --bioimageio OUT.zip`).", "",
             "## Inputs", ""]
    if kind == "wscnn":
        size = (f"exactly {tuple(lm.model.config.input_size)} px (this model's 'fc' head)"
                if getattr(lm.model.config, "head", "max") == "fc"
                else f"any size of at least {lm.model.min_input_size}x{lm.model.min_input_size} px")
        lines += [(f"`input`: (batch, channel, y, x) float32 whole images, {size}; "
                  f"channels: {', '.join(channels)}.")]
    else:
        s = lm.model.config.input_size
        lines += [(f"`input`: (batch, channel, y, x) float32 single-cell crops of {s}x{s} px centred on a cell; "
                  f"channels: {', '.join(channels)}.")]
    lines += ["", "## Preprocessing (the model's normalisation)", ""]
    step = 1
    if norm.scale == "percentile":
        lo, hi = norm.scale_percentiles
        lines += [(f"{step}. `scale_range` over (y, x), per sample and channel: the {lo:g}th percentile becomes 0 "
                  f"and the {hi:g}th percentile 1 (napari-rarepheno's per-sample percentile scaling).")]
    else:
        lines += [(f"{step}. No per-sample scaling: give intensities as napari-rarepheno reads them "
                  "(integer images divided by their type's maximum, so in [0, 1]).")]
    step += 1
    lines += [(f"{step}. `fixed_zero_mean_unit_variance` along the channel axis: mean "
              f"{[round(v, 6) for v in norm.mean]}, std {[round(v, 6) for v in norm.std]} "
              "(measured on the scaled training data).")]
    inside = []
    if norm.smooth > 0:
        inside.append(f"a Gaussian smoothing of each crop (sigma {norm.smooth:g} px, mirrored edges) that "
                      "napari-rarepheno applies *before* the percentile scaling. bioimage.io preprocessing has no "
                      "smoothing step, so the module undoes the standardisation, smooths, scales the smoothed crop "
                      "by its own percentiles and standardises again: the declared preprocessing followed by the "
                      "module gives what napari-rarepheno gives")
    if kw["border"] > 0:
        inside.append(f"a border of {kw['border']} px filled with each image's per-channel median (the WSCNN's "
                      "border margin: objects at the image edge get evidence too); the class maps are cropped back")
    if kw["clip"]:
        inside.append(f"per-channel clipping of the scaled values to {kw['clip']} (bioimage.io's `clip` has one "
                      "bound for all channels)")
    if inside:
        lines += ["", ("Inside the network module (`rarepheno_net.py`, `RarephenoNet.prepare`), because bioimage.io "
                  "preprocessing cannot express it:"), ""]
        lines += [f"- {s}." for s in inside]
    lines += ["", "## Outputs", "",
              (f"- `probabilities`: (batch, channel) float32 class probabilities (softmax), classes in order: "
              f"{', '.join(lm.meta.class_names)}.")]
    if "class_maps" in outputs:
        lines += [("- `class_maps`: (batch, channel, y, x) float32 class maps before the global "
                  f"{lm.model.config.head} pooling, bilinearly upsampled onto the input grid (one map per class): "
                  "where the evidence for each class lies.")]
    lines += ["", "## Validation", "",
              "The test input (`test_input.npy`, shape " + f"{tuple(x.shape)}) was run through napari-rarepheno "
              "itself (" + ("`classify_batch` and `predict_wscnn`" if kind == "wscnn" else "`classify_crops`, float32")
              + "); the test outputs are its results, so `bioimageio test` checks that this package reproduces "
              f"napari-rarepheno (to bioimage.io's tolerance, {TOLERANCE:g} absolute and relative).", "",
              ("Validate the model on held-out data of your own screen with napari-rarepheno "
              "(`rarepheno evaluate`), which reports accuracy per class."), "",
              "## Limitations", "",
              ("- Percentiles: napari-rarepheno estimates the scaling percentiles of images above 4 megapixels per "
              "channel from every k-th band of rows; bioimage.io computes them on every pixel, so very large "
              "images can differ slightly."),
              ("- Inputs unlike the training data (other magnification, stain or cell size) give unreliable "
              "probabilities; napari-rarepheno reports such shifts, a bioimage.io consumer does not."), "",
              "## Training", ""]
    tr = lm.meta.training or {}
    summary = {k: tr[k] for k in ("epochs", "best_epoch", "val_accuracy", "val_loss", "data", "recipe")
               if k in tr and isinstance(tr[k], (int, float, str))}
    lines += [f"- {k}: {v}" for k, v in summary.items()] or ["- (no training summary in the model file)"]
    lines += ["", "## Cite", "", f"- {cite_text} doi:{doi}", ""]
    return "\n".join(lines)


def _config(lm: LoadedModel, kw: dict) -> dict:
    meta = lm.meta
    return {"napari-rarepheno": {
        "kind": meta.kind, "class_names": list(meta.class_names), "channels": meta.channels,
        "channel_names": meta.input_names(), "normalization": json.loads(json.dumps(meta.normalization)),
        "module_kwargs": kw}}


def export_bioimageio(model, out: str | Path, *, sample=None, name: str | None = None,
                      authors: list[str] | None = None, license: str = DEFAULT_LICENSE,
                      class_maps: bool = True, overwrite: bool = False, check: bool = False) -> BioimageioExport:
    """Write ``model`` (a model file or a LoadedModel, WSCNN or DeepYeast) as a bioimage.io model
    package ``out`` (.zip).

    ``sample``: the test input (WSCNN: one (C, H, W) image as read; DeepYeast: (N, C, H, W) crops;
    or an image file), default a small synthetic one (:func:`default_test_input`). ``authors``: the
    people to contact about the model (default: this user). ``class_maps``: a WSCNN also outputs its
    class maps on the input grid. ``check``: run the bioimage.io test (:func:`check_bioimageio`) on
    the package before it is put in place; a package that fails it is not written. The zip is
    written atomically; an existing ``out`` is refused unless ``overwrite``."""
    import torch  # deferred: loads torch
    from bioimageio.spec import (
        save_bioimageio_package,  # deferred: loads bioimageio.spec
    )
    from bioimageio.spec.model import v0_5 as b  # deferred: loads bioimageio.spec

    lm = as_loaded(model)
    if lm.meta.kind not in CITATIONS:
        raise InputError(f"cannot export a {lm.meta.kind!r} network to bioimage.io", lm.path)
    n_channels = int(lm.model.config.in_channels)
    if len(Normalization.of_model(lm.meta).mean) != n_channels:
        raise InputError(f"the model file has no input statistics (normalisation) for its {n_channels} channel(s), "
                         "so its input cannot be described; train or load a model made by napari-rarepheno", lm.path)
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise InputError("a bioimage.io package is a .zip file; name the output OUT.zip", out)
    if out.is_dir():
        raise OutputError("is a folder; name a .zip file", out)
    if out.exists() and not overwrite:
        raise OutputError("exists already; pass --overwrite to replace it", out)
    ensure_writable_dir(out.parent, create=False)  # created only when the package is written
    try:
        licence = b.LicenseId(license)
    except ValueError:
        raise InputError(f"unknown licence {license!r}: give an SPDX identifier such as CC-BY-4.0, CC0-1.0, MIT "
                         "or BSD-3-Clause") from None

    x = _test_input(lm, sample)
    ref = _reference_outputs(lm, x, class_maps)
    kw = module_kwargs(lm, class_maps)
    outputs = list(ref)
    kind, norm = lm.meta.kind, Normalization.of_model(lm.meta)
    title = _name(lm, name)
    channels = lm.meta.input_names()
    notes = []
    if norm.smooth > 0:
        notes.append(f"per-crop smoothing (sigma {norm.smooth:g} px) runs inside the module")
    ensure_writable_dir(out.parent)
    try:
        stage_ctx = tempfile.TemporaryDirectory(prefix=f".{out.name}.stage-", dir=out.parent)
    except OSError as e:
        raise output_error(e, out, "could not write the package") from None
    with stage_ctx as stage_dir:
        stage = Path(stage_dir)
        try:
            (stage / ARCHITECTURE_FILE).write_text(architecture_source(), encoding="utf-8")
            net = exported_module(lm, class_maps)
            torch.save(net.state_dict(), stage / WEIGHTS_FILE)
            np.save(stage / "test_input.npy", x.astype(np.float32))
            tifffile.imwrite(stage / "sample_input.tif", x[0].astype(np.float32))
            for k, v in ref.items():
                np.save(stage / f"test_output_{k}.npy", np.ascontiguousarray(v, dtype=np.float32))
                tifffile.imwrite(stage / f"sample_output_{k}.tif", np.ascontiguousarray(v[0], dtype=np.float32))
            _cover(stage / "cover.png", lm, x, ref)
            (stage / "README.md").write_text(_readme(lm, kw, x, outputs, title), encoding="utf-8")
        except OSError as e:
            raise output_error(e, out, "could not write the package") from None

        if kind == "wscnn" and getattr(lm.model.config, "head", "max") == "fc":
            h, w = (int(v) for v in lm.model.config.input_size)
            ysize, xsize = h, w
        elif kind == "wscnn":
            ysize = xsize = b.ParameterizedSize(min=int(lm.model.min_input_size), step=1)
        else:
            ysize = xsize = int(lm.model.config.input_size)
        preprocessing = [b.EnsureDtypeDescr(kwargs=b.EnsureDtypeKwargs(dtype="float32"))]
        if norm.scale == "percentile":
            lo, hi = norm.scale_percentiles
            preprocessing.append(b.ScaleRangeDescr(kwargs=b.ScaleRangeKwargs(
                axes=[b.AxisId("y"), b.AxisId("x")], min_percentile=float(lo), max_percentile=float(hi))))
        preprocessing.append(b.FixedZeroMeanUnitVarianceDescr(kwargs=b.FixedZeroMeanUnitVarianceAlongAxisKwargs(
            axis=b.AxisId("channel"), mean=[float(v) for v in norm.mean], std=[float(v) for v in norm.std])))
        what = "whole images" if kind == "wscnn" else "single-cell crops centred on a cell"
        inp = b.InputTensorDescr(
            id=b.TensorId("input"), description=f"{what}; channels: {', '.join(channels)}"[:128],
            axes=[b.BatchAxis(), b.ChannelAxis(channel_names=channels),
                  b.SpaceInputAxis(id=b.AxisId("y"), size=ysize), b.SpaceInputAxis(id=b.AxisId("x"), size=xsize)],
            test_tensor=b.FileDescr(source=stage / "test_input.npy"),
            sample_tensor=b.FileDescr(source=stage / "sample_input.tif"),
            data=b.IntervalOrRatioDataDescr(type="float32"), preprocessing=preprocessing)
        outs = [b.OutputTensorDescr(
            id=b.TensorId("probabilities"), description="class probabilities (softmax)",
            axes=[b.BatchAxis(), b.ChannelAxis(channel_names=list(lm.meta.class_names))],
            test_tensor=b.FileDescr(source=stage / "test_output_probabilities.npy"),
            sample_tensor=b.FileDescr(source=stage / "sample_output_probabilities.tif"),
            data=b.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)))]
        if "class_maps" in ref:
            outs.append(b.OutputTensorDescr(
                id=b.TensorId("class_maps"), description="class maps on the input grid (before global pooling)",
                axes=[b.BatchAxis(), b.ChannelAxis(channel_names=list(lm.meta.class_names)),
                      b.SpaceOutputAxis(id=b.AxisId("y"), size=b.SizeReference(tensor_id=b.TensorId("input"),
                                                                              axis_id=b.AxisId("y"))),
                      b.SpaceOutputAxis(id=b.AxisId("x"), size=b.SizeReference(tensor_id=b.TensorId("input"),
                                                                              axis_id=b.AxisId("x")))],
                test_tensor=b.FileDescr(source=stage / "test_output_class_maps.npy"),
                sample_tensor=b.FileDescr(source=stage / "sample_output_class_maps.tif"),
                data=b.IntervalOrRatioDataDescr(type="float32")))
        cite_text, doi = CITATIONS[kind]
        people = [a for a in (authors or []) if a.strip()] or [_user()]
        try:
            descr = b.ModelDescr(
                name=title, description=_description(lm),
                authors=[b.Author(name=a.strip()) for a in people],
                cite=[b.CiteEntry(text=cite_text, doi=b.Doi(doi))],
                license=licence, tags=TAGS[kind],
                covers=[b.FileDescr(source=stage / "cover.png")],
                documentation=b.FileDescr(source=stage / "README.md"),
                inputs=[inp], outputs=outs,
                weights=b.WeightsDescr(pytorch_state_dict=b.PytorchStateDictWeightsDescr(
                    source=stage / WEIGHTS_FILE, pytorch_version=b.Version(torch.__version__.split("+")[0]),
                    architecture=b.ArchitectureFromFileDescr(source=stage / ARCHITECTURE_FILE,
                                                             callable=b.Identifier("RarephenoNet"), kwargs=kw))),
                config=b.Config(**_config(lm, kw)),
            )
        except ValueError as e:  # pydantic's ValidationError is a ValueError: its first lines say what
            why = " ".join(str(e).split("\n")[:3])[:400]
            raise InputError(f"cannot describe this model for bioimage.io: {why}", lm.path) from None
        try:
            built = Path(save_bioimageio_package(descr, output_path=stage / "package.zip"))
        except OSError as e:
            raise output_error(e, out, "could not write the package") from None
        checked = check_bioimageio(built) if check else None
        if checked is not None and not checked.passed:
            raise RarephenoError(f"{out}: not written: the package fails bioimage.io's test ({checked.status}): "
                                 + "; ".join(checked.errors[:3]))
        with zipfile.ZipFile(built) as z:
            files = sorted(z.namelist())
        with atomic_path(out, "the bioimage.io package") as tmp:
            os.replace(built, tmp)
    return BioimageioExport(out, kind, str(descr.format_version), files, outputs, tuple(x.shape),
                            norm.smooth > 0, notes, checked)


def _user() -> str:
    try:
        return getpass.getuser() or "unknown"
    except (OSError, KeyError, ImportError):  # no user name in this environment
        return "unknown"


# ------------------------------------------------------------------ the validator, offline
@dataclass
class BioimageioCheck:
    status: str                   # 'passed' | 'valid-format' | 'failed'
    details: list[tuple[str, str]]   # (check name, status)
    errors: list[str]
    format_version: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def check_bioimageio(package: str | Path, cache: str | Path | None = None) -> BioimageioCheck:
    """Run the bioimage.io test (``bioimageio.core.test_model``, what ``bioimageio test`` runs: the
    format, test input -> test outputs within the tolerance, other input sizes and batch sizes) on
    ``package`` on the CPU, offline: a package holds every file it names, so nothing is downloaded.
    ``cache``: bioimage.io's cache folder (default: a temporary one, removed afterwards). The test
    seeds the random generators; their states are restored afterwards."""
    package = Path(package)
    if not package.is_file():
        raise InputError("bioimage.io package not found", package)
    import torch  # deferred: loads torch
    from bioimageio.core import test_model  # deferred: loads bioimageio.core
    from bioimageio.spec import settings  # deferred: loads bioimageio.spec

    rng = (np.random.get_state(), torch.get_rng_state(), torch.are_deterministic_algorithms_enabled())
    with tempfile.TemporaryDirectory(prefix="rarepheno-bioimageio-") as tmp:
        before = settings.cache_path
        settings.cache_path = Path(cache or tmp)
        try:
            summary = test_model(str(package), devices=["cpu"])
        finally:
            settings.cache_path = before
            np.random.set_state(rng[0])
            torch.set_rng_state(rng[1])
            torch.use_deterministic_algorithms(rng[2])
    details = [(d.name, d.status) for d in summary.details]
    errors = [f"{d.name}: {e.msg}" for d in summary.details for e in d.errors]
    return BioimageioCheck(summary.status, details, errors, str(summary.format_version))
