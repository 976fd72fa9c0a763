"""DeepYeast inference on crops: class probabilities and layer embeddings (fc1 is the
paper's transfer feature), on the prediction copy of the network.

Crops whose size is not the network's ``input_size`` are centre-cropped or zero-padded
around their centre (with a warning): crops are cut centred on a cell, so keeping the
centre keeps the cell (:func:`.data.fit_size`).
"""
from __future__ import annotations

import numpy as np
import torch

from ..device import resolve_device, resolve_precision
from ..errors import CHOOSE_CHANNELS, InputError
from ..inference.arrays import evaluate_arrays, to_model_input
from ..inputs.normalize import Normalization
from ..io.images import to_float
from ..io.modelfile import LoadedModel, as_loaded
from ..nets.folding import inference_model
from .data import DeepYeastOptions, fit_size

LAYERS = tuple(f"conv{i}" for i in range(1, 9)) + ("fc1", "fc2", "logits")

def model_options(lm: LoadedModel, opts: DeepYeastOptions | None = None) -> DeepYeastOptions:
    """Options for reading crops for ``lm``: what the user gave, else what the model was trained with."""
    opts = opts or DeepYeastOptions()
    stored = lm.meta.training.get("input", {})
    opts.channels = opts.channels if opts.channels is not None else lm.meta.channels
    opts.channel_files = opts.channel_files or stored.get("channel_files")
    opts.group_regex = opts.group_regex or stored.get("group_regex")
    opts.input_size = lm.model.config.input_size
    opts.model_classes = list(lm.meta.class_names)
    return opts


def _prepare(lm: LoadedModel, crops) -> np.ndarray:
    x = to_float(np.asarray(crops))
    if x.ndim != 4:
        raise InputError(f"crops must be (N, C, H, W), got shape {x.shape}")
    if x.shape[1] != lm.model.config.in_channels:
        raise InputError(f"the model expects {lm.model.config.in_channels} channel(s) but the crops have "
                         f"{x.shape[1]}; {CHOOSE_CHANNELS}")
    return Normalization.of_model(lm.meta).scale_samples(fit_size(x, lm.model.config.input_size))


def classify_crops(loaded, crops, *, device: str = "auto", batch_size: int = 256,
                   precision: str = "auto") -> np.ndarray:
    """(N, K) class probabilities of (N, C, H, W) crops (integer data scaled like image files).

    Runs the prediction copy of the network (:func:`core.nets.folding.inference_model`: batch norm
    folded, channels_last) under ``precision`` ('auto': bf16 where the CPU has bf16 matrix
    units or on a GPU, see :func:`core.device.resolve_precision`; 'fp32' for bit-for-bit
    float32). On a CPU with AMX bf16 is ~4x faster than the float32 NCHW path with the same
    argmax; without bf16 instructions 'auto' is fp32, 1.16x faster (``benchmarks/speed.py``,
    docs/performance.md)."""
    lm = as_loaded(loaded, "deepyeast")
    x = _prepare(lm, crops)
    dev = resolve_device(device)
    amp = resolve_precision(precision, dev)
    lm.model.to(dev)
    net = inference_model(lm, dev)
    norm = Normalization.of_model(lm.meta)
    return evaluate_arrays(net, x, None, norm, dev, batch_size, amp, True)["probabilities"]


def embed_crops(loaded, crops, layer: str = "fc1", *, device: str = "auto", batch_size: int = 128) -> np.ndarray:
    """(N, D) activations of ``layer``: 'fc1' (the paper's transfer features), 'fc2', 'logits',
    'conv8' (flattened, as ``DeepYeast.embed``) or 'conv1'..'conv7' (averaged over space)."""
    if layer not in LAYERS:
        raise InputError(f"unknown layer {layer!r}; choose one of {', '.join(LAYERS)}")
    lm = as_loaded(loaded, "deepyeast")
    x = _prepare(lm, crops)
    dev = resolve_device(device)
    model = lm.model.to(dev).eval()
    norm = Normalization.of_model(lm.meta)
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            h = to_model_input(torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size])), norm, dev, False)
            if layer in ("conv8", "fc1", "fc2", "logits"):
                out.append(model.embed(h, layer).float().cpu().numpy())
                continue
            k, seen = int(layer[4:]), 0
            for m in model.features:
                h = m(h)
                seen += isinstance(m, torch.nn.ReLU)
                if seen == k:
                    break
            out.append(h.mean((2, 3)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
