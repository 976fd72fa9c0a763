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
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelFileError, OutputError, ensure_writable_dir
from ..nets.registry import NETWORKS, build_model
from .atomic import atomic_path

FORMAT = "napari-rarepheno"
FORMAT_VERSION = 1
_META_KEY = "rarepheno"
_SUM_KEY = "rarepheno.blake2b"
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
    channel_names: list[str] | None = None      # what each input channel is, in order ("H2B", "tubulin")
    input_stats: dict = field(default_factory=dict)    # the training inputs, for shift checks (inputs.shift)
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
        if not isinstance(d, dict):
            raise ModelFileError("its metadata is not a JSON object; the file is corrupt", path)
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
        if not isinstance(d["kind"], str) or not isinstance(d["config"], dict) \
                or not isinstance(d["class_names"], list) or not d["class_names"]:
            raise ModelFileError("its metadata is malformed (kind, config or class_names of the wrong type)", path)

        if d["kind"] not in NETWORKS:
            raise ModelFileError(f"it holds a network of unknown type {d['kind']!r} (this version knows "
                                 f"{', '.join(sorted(NETWORKS))}); was it written by a newer napari-rarepheno?", path)
        ch = d.get("channels")
        if ch is not None and (not isinstance(ch, list) or not all(isinstance(c, int) for c in ch)):
            raise ModelFileError(f"its metadata is malformed (channels {ch!r} is not a list of integers)", path)
        names = d.get("channel_names")
        if names is not None and (not isinstance(names, list) or not all(isinstance(c, str) for c in names)):
            raise ModelFileError(f"its metadata is malformed (channel_names {names!r} is not a list of names)", path)
        if not isinstance(d.get("input_stats", {}), dict):
            raise ModelFileError("its metadata is malformed (input_stats is not a JSON object)", path)
        return cls(**{k: v for k, v in d.items() if k in known})

    def input_names(self) -> list[str]:
        """The model's input channels by name (``channel_names``, else "channel 0", ...)."""
        n = int(self.config.get("in_channels", len(self.channel_names or []) or 1))
        names = list(self.channel_names or [])
        return names + [f"channel {i}" for i in range(len(names), n)]


# ------------------------------------------------------------------ low level I/O
def _sniff(path: Path) -> None:
    """Refuse anything that is not a safetensors file, without interpreting it.

    The safetensors layout is checked first (8-byte little-endian header length, then a
    JSON object), so a real model whose header length happens to start with byte 0x80
    or the letters 'PK' is not mistaken for a pickle or a zip archive."""
    if not path.exists():
        raise ModelFileError("model file not found", path)
    if path.is_dir():
        raise ModelFileError("is a folder, expected a model file (.safetensors)", path)
    size = path.stat().st_size
    if size == 0:
        raise ModelFileError("model file is empty (0 bytes); was the copy interrupted? copy it again", path)
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) == 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n <= _MAX_HEADER and head[8:9] == b"{":
            if 8 + n > size:
                raise ModelFileError(f"model file is truncated ({size} bytes, its header alone needs {8 + n}); "
                                     "was the copy interrupted? copy it again", path)
            return
    if head[:1] == b"\x80" or head[:2] == b"PK":
        raise ModelFileError("looks like a pickle/torch.save file; napari-rarepheno only loads "
                             "safetensors model files it wrote and never unpickles (that could run code)", path)
    if len(head) < 9:
        raise ModelFileError(f"model file is truncated ({size} bytes)", path)
    raise ModelFileError("not a napari-rarepheno model file (not safetensors: bad header) or the file is "
                         "truncated", path)


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    """blake2b over names, dtypes, shapes and bytes of every tensor (detects bit rot and
    half-copied files that still have the right length)."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for k in sorted(tensors):
        t = tensors[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _header(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types
        raise ModelFileError(f"model file is corrupt or truncated ({str(e).splitlines()[0] if str(e) else e!r})",
                             path) from None


def _doc(header: dict, path: Path) -> dict:
    if _META_KEY not in header:
        raise ModelFileError("it is a safetensors file but not a napari-rarepheno model "
                             "(no rarepheno metadata)", path)
    try:
        doc = json.loads(header[_META_KEY])
    except json.JSONDecodeError as e:
        raise ModelFileError(f"its metadata is not valid JSON ({e}); the file is corrupt", path) from None
    if not isinstance(doc, dict):
        raise ModelFileError("its metadata is not a JSON object; the file is corrupt", path)
    return doc


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Load all tensors and the rarepheno JSON document of a safetensors file."""
    from safetensors.torch import load_file

    path = Path(path)
    _sniff(path)
    header = _header(path)
    doc = _doc(header, path)
    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise ModelFileError(f"model file is corrupt or truncated ({str(e).splitlines()[0] if str(e) else e!r})",
                             path) from None
    want = header.get(_SUM_KEY)
    if want is not None and _checksum(tensors) != want:
        raise ModelFileError("model file is corrupt: its weights do not match the checksum stored when it was "
                             "written (damaged or half-copied file?); copy it again", path)
    return tensors, doc


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], doc: dict) -> Path:
    """Write tensors + JSON atomically (temp file in the same folder, then rename).

    On any failure (disk full, folder not writable, Ctrl-C) the temp file is removed
    and an existing file at ``path`` is left exactly as it was."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.is_dir():
        raise OutputError("is a folder; give a model file name ending in .safetensors", path)
    ensure_writable_dir(path.parent)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path, "the model file") as tmp:
        save_file(tensors, tmp, metadata={_META_KEY: json.dumps(doc), _SUM_KEY: _checksum(tensors)})
    return path


def check_model_output(path: str | Path) -> Path:
    """Fail early (before loading data or training) when ``path`` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise OutputError("is a folder; give a model file name ending in .safetensors", path)
    ensure_writable_dir(path.parent, create=False)
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

    path = Path(path)
    tensors, doc = read_tensors(path)
    if "meta" not in doc:
        raise ModelFileError("it has no model metadata (is it a training-state file?)", path)
    if "train_state" in doc:
        raise ModelFileError("this is a training-state file (for --resume), not a model; load the model file "
                             "next to it (MODEL.safetensors, without .last)", path)
    meta = ModelMeta.from_json(json.dumps(doc["meta"]), path)
    if expect_kind is not None and meta.kind != expect_kind:
        raise ModelFileError(f"it is a {meta.kind} model, but a {expect_kind} model is needed here", path)
    try:
        model = build_model(meta.kind, meta.config)
    except ModelFileError as e:
        raise ModelFileError(f"{e}; was it written by a newer napari-rarepheno?", path) from None
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
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ModelFileError(f"the weights contain NaN/inf values ({', '.join(bad[:3])}); the training that "
                             "wrote it diverged - train again with a lower learning rate", path)
    model.load_state_dict(tensors)
    model.to(device).eval()
    return LoadedModel(model, meta, path)


def as_loaded(model: str | Path | LoadedModel, expect_kind: str | None = None) -> LoadedModel:
    """The one way the engine takes a model: a :class:`LoadedModel` as it is, a path loaded
    with :func:`load_model`; either way of ``expect_kind`` when one is given."""
    if not isinstance(model, LoadedModel):
        return load_model(model, expect_kind=expect_kind)
    if expect_kind is not None and model.meta.kind != expect_kind:
        raise ModelFileError(f"it is a {model.meta.kind} model, but a {expect_kind} model is needed here", model.path)
    return model


def read_meta(path: str | Path) -> ModelMeta:
    """Only the metadata (fast: reads the header alone)."""
    path = Path(path)
    _sniff(path)
    doc = _doc(_header(path), path)
    if "meta" not in doc:
        raise ModelFileError("it has no model metadata (is it a training-state file?)", path)
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
