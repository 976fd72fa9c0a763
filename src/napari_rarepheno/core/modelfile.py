"""Model files: safetensors weights with JSON metadata in the same file.

One ``.safetensors`` file holds the network weights; its header's ``__metadata__``
carries a JSON document (format version, network type and config, class names,
channels, normalisation, training summary). Training-state files (``*.last.safetensors``)
add the optimiser and scheduler state and the RNG states, flattened into tensors +
JSON, so resuming is exact. Nothing is ever unpickled: a pickle posing as a model is
refused before any byte of it is interpreted as Python.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ModelFileError, InputError

FORMAT = "napari-rarepheno"
FORMAT_VERSION = 1
_META_KEY = "rarepheno"
_MAX_HEADER = 100 * 1024 * 1024


@dataclass
class ModelMeta:
    """Everything needed to use a trained network besides its weights."""

    kind: str                                   # "wscnn" | "deepyeast"
    config: dict                                # the network config dataclass as a dict
    class_names: list[str]
    channels: list[int] | None = None           # input channels selected from the files
    normalization: dict = field(default_factory=dict)  # {"mean": [...], "std": [...], ...}
    training: dict = field(default_factory=dict)       # summary: epochs, metrics, recipe...
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, path: Path) -> "ModelMeta":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelFileError(f"its metadata is not valid JSON ({e})", path) from None
        if d.get("format") != FORMAT:
            raise ModelFileError("it is a safetensors file but not a napari-rarepheno model "
                                 "(no rarepheno metadata)", path)
        v = d.get("format_version")
        if not isinstance(v, int) or v > FORMAT_VERSION:
            raise ModelFileError(f"it was written by a newer napari-rarepheno (model format {v}, this version "
                                 f"reads up to {FORMAT_VERSION}); update the plugin to load it", path)
        known = set(cls.__dataclass_fields__)
        missing = {"kind", "config", "class_names"} - set(d)
        if missing:
            raise ModelFileError(f"its metadata lacks {sorted(missing)}", path)
        return cls(**{k: v for k, v in d.items() if k in known})


# ------------------------------------------------------------------ low level I/O
def _sniff(path: Path) -> None:
    """Refuse anything that is not a safetensors file, without interpreting it."""
    if not path.exists():
        raise ModelFileError("model file not found", path)
    if path.is_dir():
        raise ModelFileError("is a folder, expected a model file (.safetensors)", path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
    if size < 8 or len(head) < 8:
        raise ModelFileError(f"model file is truncated ({size} bytes)", path)
    if head[:1] == b"\x80" or head[:2] in (b"PK",):
        raise ModelFileError("looks like a pickle/torch.save file; napari-rarepheno only loads "
                             "safetensors model files and never unpickles (that could run code)", path)
    (n,) = struct.unpack("<Q", head[:8])
    if n <= 0 or n > _MAX_HEADER or 8 + n > size or head[8:9] != b"{":
        raise ModelFileError("not a safetensors model file (bad header) or the file is truncated", path)


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Load all tensors and the rarepheno JSON document of a safetensors file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    _sniff(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise ModelFileError(f"model file is corrupt or truncated ({e})", path) from None
    if _META_KEY not in header:
        raise ModelFileError("it is a safetensors file but not a napari-rarepheno model "
                             "(no rarepheno metadata)", path)
    try:
        doc = json.loads(header[_META_KEY])
    except json.JSONDecodeError as e:
        raise ModelFileError(f"its metadata is not valid JSON ({e})", path) from None
    return tensors, doc


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], doc: dict) -> Path:
    """Write tensors + JSON atomically (temp file in the same folder, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise InputError("cannot write the model file: the folder is not writable", folder)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_META_KEY: json.dumps(doc)})
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"could not write the model file ({e.strerror or e})", path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ------------------------------------------------------------------- model files
@dataclass
class LoadedModel:
    model: nn.Module
    meta: ModelMeta
    path: Path | None = None


def save_model(path: str | Path, model: nn.Module, meta: ModelMeta) -> Path:
    model = getattr(model, "module", model)  # unwrap DDP
    return write_tensors(path, dict(model.state_dict()), {"meta": json.loads(meta.to_json())})


def load_model(path: str | Path, expect_kind: str | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the network from the metadata and load the weights, checking every shape."""
    from .models import build_model

    path = Path(path)
    tensors, doc = read_tensors(path)
    if "meta" not in doc:
        raise ModelFileError("it has no model metadata (is it a training-state file?)", path)
    meta = ModelMeta.from_json(json.dumps(doc["meta"]), path)
    if expect_kind is not None and meta.kind != expect_kind:
        raise ModelFileError(f"it is a {meta.kind} model, but a {expect_kind} model is needed here", path)
    try:
        model = build_model(meta.kind, meta.config)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"its network config is invalid ({e})", path) from None
    state = model.state_dict()
    missing = sorted(set(state) - set(tensors))
    unexpected = sorted(set(tensors) - set(state))
    wrong = [f"{k}: file {tuple(tensors[k].shape)} vs network {tuple(v.shape)}"
             for k, v in state.items() if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing weights {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected weights {unexpected[:5]}")
        if wrong:
            parts.append("shape mismatch " + "; ".join(wrong[:5]))
        raise ModelFileError("weights do not match its network config: " + ", ".join(parts), path)
    model.load_state_dict(tensors)
    model.to(device).eval()
    return LoadedModel(model, meta, path)


def read_meta(path: str | Path) -> ModelMeta:
    """Only the metadata (fast: reads the header alone)."""
    from safetensors import safe_open

    path = Path(path)
    _sniff(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as e:
        raise ModelFileError(f"model file is corrupt or truncated ({e})", path) from None
    if _META_KEY not in header:
        raise ModelFileError("it is a safetensors file but not a napari-rarepheno model", path)
    doc = json.loads(header[_META_KEY])
    if "meta" not in doc:
        raise ModelFileError("it has no model metadata", path)
    return ModelMeta.from_json(json.dumps(doc["meta"]), path)


# -------------------------------------------------- nested state <-> flat tensors
def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Split a nested state (dicts/lists/tensors/scalars) into tensors and a JSON skeleton."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}"
        tensors[key] = obj.detach().cpu().clone() if obj.dim() else obj.detach().cpu().reshape(1).clone()
        return {"__tensor__": key, "scalar": obj.dim() == 0}
    if isinstance(obj, dict):
        return {"__dict__": [[flatten_state(k, f"{prefix}.k{i}", tensors),
                              flatten_state(v, f"{prefix}.{i}", tensors)] for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a training state")


def unflatten_state(skel: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skel, dict):
        if "__tensor__" in skel:
            t = tensors[skel["__tensor__"]]
            return t.reshape(()) if skel.get("scalar") else t
        if "__dict__" in skel:
            return {unflatten_state(k, tensors): unflatten_state(v, tensors) for k, v in skel["__dict__"]}
        if "__list__" in skel:
            items = [unflatten_state(v, tensors) for v in skel["__list__"]]
            return tuple(items) if skel.get("tuple") else items
    return skel
