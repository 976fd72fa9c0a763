"""A network over in-memory images: the model input (normalised, on the device) and the
loss / accuracy / probabilities of a validation split. Used by the trainer after every
epoch and by whatever scores a model on arrays (the border-margin check, the DeepYeast
feature and evaluation paths)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..device import cpu_allocator_tuned
from ..inputs.normalize import Normalization


def to_model_input(x: torch.Tensor, norm: Normalization, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True).float()
    x = norm.apply_torch(x)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


@torch.no_grad()
def evaluate_arrays(model: nn.Module, images: np.ndarray, labels: np.ndarray | None, norm: Normalization,
                    device: torch.device, batch_size: int = 64, autocast_dtype=None,
                    channels_last: bool = True) -> dict:
    """Loss, accuracy and probabilities of ``model`` on in-memory images."""
    with cpu_allocator_tuned(device.type == "cpu"):
        return _evaluate_arrays(model, images, labels, norm, device, batch_size, autocast_dtype, channels_last)


def _evaluate_arrays(model, images, labels, norm, device, batch_size, autocast_dtype, channels_last) -> dict:
    was_training = model.training
    model.eval()
    probs, losses = [], []
    for s in range(0, len(images), batch_size):
        xb = to_model_input(torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size])), norm, device,
                            channels_last)
        with torch.no_grad(), torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(xb)
        logits = logits.float()
        probs.append(torch.softmax(logits, 1).cpu())
        if labels is not None:
            yb = torch.from_numpy(labels[s:s + batch_size]).to(device)
            losses.append(F.cross_entropy(logits, yb, reduction="sum").item())
    model.train(was_training)
    p = torch.cat(probs).numpy() if probs else np.zeros((0, 0), np.float32)
    out = {"probabilities": p}
    if labels is not None and len(labels):
        out["loss"] = float(sum(losses) / len(labels))
        out["accuracy"] = float((p.argmax(1) == labels).mean())
    return out


__all__ = ["to_model_input", "evaluate_arrays"]
