"""More like this: the nearest neighbours of one cell among every cell of a folder.

A folder of crops (class subfolders are read as one pool, recursively; one file per
channel with ``channel_files``) is embedded once per folder and model into an *index*:

* DeepYeast: the ``fc1`` layer (``core.deepyeast.classify.embed_crops``, the paper's
  transfer features); the class probabilities come from the same activations (fc2 and
  the output layer applied to fc1), so the pool is read and run once;
* WSCNN: the features the gallery uses (``core.discover.gallery``): the last
  convolutional features max-pooled over the units centred within 3/8 of the crop of
  its centre;
* no network yet (``model=None`` or ``"features"``): hand-made features
  (``core.classic.features.extract_features``), standardised with the pool's mean and
  spread (stored in the index, so a query is scaled the same way).

Every vector is scaled to unit length; the distance is the cosine distance
``1 - cos`` (0 = same direction, 2 = opposite). Search is exact: the (N, D) float32
matrix is memory-mapped (``embeddings.npy``, written a batch at a time with
``np.lib.format.open_memmap``) and multiplied by the query in blocks, keeping the best
``top`` of each block -- 100,000 cells x 512 dims answer in tens of milliseconds
(``benchmarks/similar.py``), so no approximate library is needed at screen sizes.

The index lives in the cache (``$RAREPHENO_CACHE`` or ``~/.cache/napari-rarepheno``,
``similar/<slot>-<content>/``): ``slot`` names the folder, model file and embedding;
``content`` hashes the folder's image files (relative path, size, modification time) and
the model's weights and metadata. A second build with the same folder and model loads
the index (``index.cached``); a changed folder or model builds a new one and removes
the stale index of the same slot. An index is written to a hidden folder and renamed
when complete: a stopped build leaves nothing behind.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import Cancelled, InputError
from ..io.atomic import staged_dir
from ..io.files import entry_path, image_entries
from ..io.folders import read_entry
from ..io.images import to_float
from ..io.tables import write_csv
from ..progress import CancelToken, ProgressCallback, report_items

INDEX_VERSION = 1
FEATURES = "features"          # the model argument that means: hand-made features, no network
SEARCH_BLOCK = 32768           # rows multiplied at once (32768 x 512 float32 = 64 MB)
COLUMNS = ("rank", "image", "distance")


def cache_root() -> Path:
    """Where indexes are kept: ``$RAREPHENO_CACHE/similar`` (else the XDG cache)."""
    env = os.environ.get("RAREPHENO_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "napari-rarepheno"
    return base / "similar"


def _hash(*parts) -> str:
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(str(p).encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


# --------------------------------------------------------------------------- embedders
class Embedder:
    """How a crop becomes a vector. ``read(entry)`` gives the (C, H, W) float image of a file
    (or per-channel tuple), ``__call__(x)`` maps a (B, C, H, W) batch to ``(vectors (B, D),
    probabilities (B, K) or None)``. ``kind``, ``identity`` (what the content key hashes) and
    ``class_names`` describe it."""

    kind = "none"
    class_names: tuple[str, ...] = ()
    channels: list[int] | None = None

    def read(self, entry) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def identity(self) -> str:
        return self.kind

    def slot(self) -> str:
        return self.kind


class HandmadeEmbedder(Embedder):
    """Hand-made per-cell features (intensity, shape, texture, Zernike, Gabor, correlation,
    radial profile) of the crops' ``channels`` (default: every channel of the files)."""

    kind = FEATURES

    def __init__(self, channels: Sequence[int] | None = None):
        self.channels = list(channels) if channels is not None else None

    def read(self, entry) -> np.ndarray:
        return read_entry(entry, self.channels)

    def __call__(self, x):
        from ..classic.features import (  # deferred: loads scikit-image
            FeatureConfig,
            extract_features,
        )

        c = x.shape[1]
        cfg = FeatureConfig(marker_channel=0, protein_channel=min(1, c - 1))
        return extract_features(x, config=cfg)[0], None

    def identity(self) -> str:
        return f"features|{self.channels}"

    def slot(self) -> str:
        return self.identity()


class NetworkEmbedder(Embedder):
    """A model's own embedding: DeepYeast ``layer`` (fc1), WSCNN pooled last convolutional
    features; the class probabilities come with it."""

    def __init__(self, model, device: str = "auto", layer: str = "fc1", channel_files=None):
        from ..device import resolve_device  # deferred: loads torch
        from ..io.modelfile import as_loaded  # deferred: loads torch

        self.lm = as_loaded(model)
        self.kind = self.lm.meta.kind
        if self.kind not in ("deepyeast", "wscnn"):
            raise InputError(f"cannot embed cells with a {self.kind} model", self.lm.path)
        self.layer = layer if self.kind == "deepyeast" else "features"
        self.device = resolve_device(device)
        self.class_names = list(self.lm.meta.class_names)
        self.channels = self.lm.meta.channels
        self._checksum: str | None = None

    def read(self, entry) -> np.ndarray:
        from .scoring import read_for_model  # deferred: loads torch

        return read_for_model(self.lm, entry)

    def __call__(self, x):
        import torch  # deferred: loads torch

        if self.kind == "deepyeast":
            from ..deepyeast.classify import embed_crops  # deferred: loads torch

            emb = embed_crops(self.lm, x, self.layer, device=str(self.device), batch_size=max(len(x), 1))
            if self.layer != "fc1":
                return emb, None
            model = self.lm.model
            with torch.no_grad():
                logits = model.out(model.fc2(torch.from_numpy(emb).to(self.device)))
                probs = torch.softmax(logits.float(), 1).cpu().numpy()
            return emb, probs
        return self._wscnn(x)

    def _wscnn(self, x):
        import torch  # deferred: loads torch

        from ..inference.saliency import eval_mode  # deferred: loads torch
        from ..inputs.normalize import Normalization  # deferred: loads torch
        from .gallery import feature_geometry, pool_around  # deferred: loads torch

        model = self.lm.model.to(self.device)
        norm = Normalization.of_model(self.lm.meta)
        offset, stride = feature_geometry(model)
        h, w = x.shape[2:]
        radius = max(float(stride), min(h, w) * 3 / 8)
        with eval_mode(model), torch.no_grad():
            xn = norm.apply_torch(torch.from_numpy(norm.scale_samples(x)).to(self.device))
            feats = model.features(xn)
            probs = torch.softmax(model.pool(model.classifier(feats)).float(), 1).cpu().numpy()
            fmaps = feats.float().cpu().numpy()
        vec = np.stack([pool_around(f, (h - 1) / 2, (w - 1) / 2, offset, stride, radius) for f in fmaps])
        return vec.astype(np.float32), probs

    def identity(self) -> str:
        if self._checksum is None:
            import torch  # deferred: loads torch

            h = hashlib.blake2b(digest_size=16)
            for k, t in sorted(self.lm.model.state_dict().items()):
                t = t.detach().to("cpu").contiguous()
                h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
                if t.numel():
                    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            h.update(self.lm.meta.to_json().encode())
            self._checksum = h.hexdigest()
        return f"{self.kind}|{self.layer}|{self._checksum}"

    def slot(self) -> str:
        where = str(Path(self.lm.path).resolve()) if self.lm.path else "in-memory:" + self.identity()
        return f"{self.kind}|{self.layer}|{where}"


def make_embedder(model, *, device: str = "auto", layer: str = "fc1",
                  channels: Sequence[int] | None = None) -> Embedder:
    """The embedder for ``model``: a network (path or LoadedModel), or hand-made features when
    ``model`` is None or ``"features"`` (then ``channels`` picks the files' channels)."""
    if isinstance(model, Embedder):
        return model
    if model is None or (isinstance(model, str) and model == FEATURES):
        return HandmadeEmbedder(channels)
    return NetworkEmbedder(model, device, layer)


# --------------------------------------------------------------------------- the pool
@dataclass
class PoolItem:
    entry: Path | tuple[Path, ...]
    label: str = ""

    @property
    def image(self) -> Path:
        return entry_path(self.entry)


def pool_items(folder: str | Path, channel_files: Sequence[str] | None = None) -> list[PoolItem]:
    """Every image below ``folder`` (recursively, sorted), labelled by its class subfolder
    (the parent folder's name; '' for images directly in ``folder``)."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError("folder not found" if not root.exists() else "expected a folder of crops", root)
    out = []
    for e in image_entries([root], channel_files):
        parent = entry_path(e).parent
        out.append(PoolItem(e, "" if parent.resolve() == root.resolve() else parent.name))
    return out


def contents_key(items: Sequence[PoolItem], root: Path) -> str:
    """Hash of the pool's files: relative path, size and modification time of each."""
    h = hashlib.blake2b(digest_size=16)
    for it in items:
        for p in (it.entry if isinstance(it.entry, tuple) else (it.entry,)):
            st = p.stat()
            h.update(f"{os.path.relpath(p, root)}|{st.st_size}|{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def read_batches(read, items: Sequence[PoolItem], batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start row, (B, C, H, W) float32) of consecutive same-size images, read lazily."""
    start, arrays = 0, []
    for i, it in enumerate(items):
        img = read(it.entry)
        if arrays and (img.shape != arrays[0].shape or len(arrays) >= batch_size):
            yield start, np.stack(arrays).astype(np.float32, copy=False)
            start, arrays = i, []
        arrays.append(img)
    if arrays:
        yield start, np.stack(arrays).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- writing
class IndexWriter:
    """Streams vectors into ``folder/embeddings.npy`` (a memory map of ``n`` rows), then
    standardises (optional) and scales every row to unit length in place, block by block."""

    def __init__(self, folder: Path, n: int):
        self.folder, self.n = Path(folder), int(n)
        self.emb: np.ndarray | None = None
        self.probs: np.ndarray | None = None

    def add(self, start: int, vectors: np.ndarray, probabilities: np.ndarray | None = None) -> None:
        v = np.asarray(vectors, np.float32)
        if v.ndim != 2:
            raise InputError(f"embeddings must be (B, D), got shape {v.shape}")
        if self.emb is None:
            self.emb = np.lib.format.open_memmap(self.folder / "embeddings.npy", "w+", np.float32, (self.n, v.shape[1]))
            if probabilities is not None:
                self.probs = np.lib.format.open_memmap(self.folder / "probabilities.npy", "w+", np.float32,
                                                       (self.n, np.shape(probabilities)[1]))
        self.emb[start:start + len(v)] = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
        if self.probs is not None and probabilities is not None:
            self.probs[start:start + len(v)] = probabilities

    def finish(self, standardize: bool) -> dict:
        """Scale the rows (after standardising with the pool's mean and spread when asked);
        returns ``{"center": [...], "scale": [...]}`` or ``{}``."""
        if self.emb is None:
            raise InputError("nothing was embedded")
        out = {}
        e = self.emb
        if standardize:
            s = np.zeros(e.shape[1], np.float64)
            s2 = np.zeros(e.shape[1], np.float64)
            for a in range(0, len(e), SEARCH_BLOCK):
                b = np.asarray(e[a:a + SEARCH_BLOCK], np.float64)
                s += b.sum(0)
                s2 += (b * b).sum(0)
            center = s / len(e)
            scale = np.sqrt(np.maximum(s2 / len(e) - center ** 2, 0.0))
            scale = np.where(scale > 1e-8 * np.maximum(np.abs(center), 1.0), scale, np.inf)  # constant: ignored
            out = {"center": center.astype(np.float32).tolist(), "scale": scale.astype(np.float32).tolist()}
        for a in range(0, len(e), SEARCH_BLOCK):
            e[a:a + SEARCH_BLOCK] = unit_rows(e[a:a + SEARCH_BLOCK], out.get("center"), out.get("scale"))
        e.flush()
        if self.probs is not None:
            self.probs.flush()
        return out


def unit_rows(v: np.ndarray, center=None, scale=None) -> np.ndarray:
    """Rows standardised (when ``center``/``scale`` are given) and scaled to unit length (a
    zero row stays zero)."""
    v = np.atleast_2d(np.asarray(v, np.float32))
    if center is not None:
        v = (v - np.asarray(center, np.float32)) / np.asarray(scale, np.float32)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.where(n > 0, n, 1.0)).astype(np.float32)


# --------------------------------------------------------------------------- the index
@dataclass
class SimilarIndex:
    """An embedded pool: ``embeddings`` (N, D) unit rows (memory-mapped), ``probabilities``
    (N, K) for a network (else None), one ``images`` / ``labels`` / ``entries`` item per row,
    ``meta`` (index.json). ``cached``: loaded rather than computed by this call."""

    path: Path
    meta: dict
    entries: list
    labels: list[str]
    embeddings: np.ndarray
    probabilities: np.ndarray | None = None
    cached: bool = False
    embedder: Embedder | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def images(self) -> list[str]:
        return [str(entry_path(e)) for e in self.entries]

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names") or [])

    def find(self, path: str | Path) -> int | None:
        """The row of an image file of the pool (any of its channel files), or None."""
        p = Path(path).resolve()
        if not hasattr(self, "_rows"):
            self._rows = {}
            for i, e in enumerate(self.entries):
                for f in (e if isinstance(e, tuple) else (e,)):
                    self._rows.setdefault(Path(f).resolve(), i)
        return self._rows.get(p)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(Q, D) unit vectors of (Q, C, H, W) (or one (C, H, W)) float crops, scaled like the pool."""
        if self.embedder is None:
            raise InputError("this index was loaded without its model; open it with open_index(model, folder)")
        x = np.asarray(crops, np.float32)
        x = x[None] if x.ndim == 3 else x
        v, _ = self.embedder(x)
        return unit_rows(v, self.meta.get("center"), self.meta.get("scale"))

    def embed_file(self, path: str | Path, channel_files: Sequence[str] | None = None) -> np.ndarray:
        """(1, D) vector of one crop file (with ``channel_files``: the image whose channel files
        include ``path``, paired in its folder)."""
        if self.embedder is None:
            raise InputError("this index was loaded without its model; open it with open_index(model, folder)")
        return self.embed(self.embedder.read(query_entry(path, channel_files))[None])

    def search(self, query: np.ndarray, top: int = 10, self_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(rows (top,), distances (top,))`` of the nearest pool items to one unit ``query``
        vector, nearest first (ties by row). ``self_index``: the query's own row, put first
        at distance 0 whatever rounding gives."""
        rows, dist = search(self.embeddings, query, top)
        if self_index is not None:
            keep = rows != self_index
            rows = np.concatenate([[self_index], rows[keep]])[:len(rows)]
            dist = np.concatenate([[0.0], dist[keep]])[:len(rows)].astype(np.float32)
        return rows, dist

    def rows(self, rows: np.ndarray, dist: np.ndarray) -> list[dict]:
        """Result rows: rank, image, distance (+ index and label, for the docks)."""
        return [{"rank": k + 1, "image": str(entry_path(self.entries[i])), "distance": float(d),
                 "index": int(i), "label": self.labels[i]} for k, (i, d) in enumerate(zip(rows, dist))]


def search(embeddings: np.ndarray, query: np.ndarray, top: int = 10,
           block: int = SEARCH_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine search of one unit vector in (N, D) unit rows (a memory map is read a
    block at a time): ``(rows, distances)``, nearest first, ties by row."""
    q = np.asarray(query, np.float32).reshape(-1)
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    if embeddings.shape[1] != len(q):
        raise InputError(f"the query has {len(q)} dimensions, the index {embeddings.shape[1]}")
    k = max(1, min(int(top), n))
    best_i = np.zeros(0, np.int64)
    best_s = np.zeros(0, np.float32)
    for a in range(0, n, block):
        s = np.asarray(embeddings[a:a + block]) @ q
        if len(s) > k:
            part = np.argpartition(-s, k - 1)[:k]
            s, idx = s[part], part + a
        else:
            idx = np.arange(a, a + len(s))
        best_i, best_s = np.concatenate([best_i, idx]), np.concatenate([best_s, s])
        if len(best_s) > k:
            part = np.argpartition(-best_s, k - 1)[:k]
            best_i, best_s = best_i[part], best_s[part]
    order = np.lexsort((best_i, -best_s))
    dist = np.clip(1.0 - best_s[order], 0.0, 2.0).astype(np.float32)
    return best_i[order], dist


def _read_items(path: Path) -> tuple[list, list[str]]:
    entries, labels = [], []
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            files = r["files"].split(os.pathsep) if r["files"] else []
            entries.append(tuple(Path(f) for f in files) if files else Path(r["image"]))
            labels.append(r["label"])
    return entries, labels


def load_index(path: str | Path, embedder: Embedder | None = None) -> SimilarIndex:
    """An index folder as written by :func:`build_index` (memory-mapped)."""
    path = Path(path)
    try:
        meta = json.loads((path / "index.json").read_text(encoding="utf-8"))
        entries, labels = _read_items(path / "items.csv")
        emb = np.load(path / "embeddings.npy", mmap_mode="r")
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"not a complete similarity index ({e})", path) from None
    probs = np.load(path / "probabilities.npy", mmap_mode="r") if (path / "probabilities.npy").exists() else None
    if meta.get("version") != INDEX_VERSION or len(entries) != len(emb):
        raise InputError("similarity index of another version or damaged; build it again", path)
    return SimilarIndex(path, meta, entries, labels, emb, probs, True, embedder)


def _index_dir(cache: Path, embedder: Embedder, folder: Path, channel_files, content: str) -> tuple[Path, str]:
    slot = _hash(INDEX_VERSION, folder.resolve(), embedder.slot(), channel_files)[:12]
    return cache / f"{slot}-{_hash(content, embedder.identity())[:16]}", slot


def build_index(model, folder: str | Path, *, channel_files: Sequence[str] | None = None,
                channels: Sequence[int] | None = None, layer: str = "fc1", standardize: bool | None = None,
                cache_dir: str | Path | None = None, rebuild: bool = False, batch_size: int = 64,
                device: str = "auto", callback: ProgressCallback = None,
                cancel: CancelToken | None = None) -> SimilarIndex:
    """The index of every crop below ``folder`` for ``model`` (a model file or LoadedModel;
    None or ``"features"``: hand-made features of ``channels``), from the cache when the
    folder's files and the model are unchanged (``rebuild`` forces a new one).

    Streams the pool ``batch_size`` images at a time into a memory-mapped matrix; a stopped
    build (``cancel``) raises :class:`~..errors.Cancelled` and leaves no index.
    ``standardize`` (default: only for hand-made features) scales each dimension by the
    pool's mean and spread before the vectors are made unit length."""
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    folder = Path(folder)
    items = pool_items(folder, channel_files)
    embedder = make_embedder(model, device=device, layer=layer, channels=channels)
    standardize = embedder.kind == FEATURES if standardize is None else bool(standardize)
    cache = Path(cache_dir) if cache_dir is not None else cache_root()
    content = contents_key(items, folder) + f"|std={standardize}"
    target, slot = _index_dir(cache, embedder, folder, tuple(channel_files or ()), content)
    if target.is_dir() and not rebuild:
        try:
            idx = load_index(target, embedder)
            report_items(callback, len(idx), len(idx), "index from the cache")
            return idx
        except InputError:
            pass  # damaged: build again
    t0 = time.perf_counter()
    cache.mkdir(parents=True, exist_ok=True)
    with staged_dir(target, overwrite=True) as stage:
        writer = IndexWriter(stage, len(items))
        done, crop_shape = 0, None
        for start, x in read_batches(embedder.read, items, batch_size):
            if cancel is not None and cancel.cancelled:
                raise Cancelled("index build stopped by the user")
            crop_shape = crop_shape or [int(v) for v in x.shape[1:]]
            v, p = embedder(x)
            writer.add(start, v, p)
            done = start + len(x)
            report_items(callback, done, len(items), "embedding")
        stats = writer.finish(standardize)
        dim = int(writer.emb.shape[1])
        del writer
        write_csv(stage / "items.csv", [{"index": i, "image": str(it.image), "label": it.label,
                                         "files": os.pathsep.join(str(f) for f in it.entry)
                                         if isinstance(it.entry, tuple) else ""}
                                        for i, it in enumerate(items)], ["index", "image", "label", "files"])
        meta = {"version": INDEX_VERSION, "kind": embedder.kind, "layer": getattr(embedder, "layer", FEATURES),
                "folder": str(folder.resolve()), "model": _model_name(embedder), "identity": embedder.identity(),
                "channel_files": list(channel_files or []), "channels": embedder.channels,
                "class_names": list(embedder.class_names), "n": len(items), "dim": dim,
                "standardized": standardize, "crop_shape": crop_shape, "seconds": round(time.perf_counter() - t0, 3),
                "built": time.strftime("%Y-%m-%d %H:%M:%S"), **stats}
        (stage / "index.json").write_text(json.dumps(meta), encoding="utf-8")
    for old in cache.glob(f"{slot}-*"):  # the same folder and model, older contents
        if old != target and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    idx = load_index(target, embedder)
    idx.cached = False
    return idx


def _model_name(embedder: Embedder) -> str:
    lm = getattr(embedder, "lm", None)
    return str(lm.path) if lm is not None and lm.path else ("" if lm is None else "in-memory")


# --------------------------------------------------------------------------- queries
def cell_at(image: np.ndarray, y: float, x: float, shape: Sequence[int],
            channels: Sequence[int] | None = None) -> np.ndarray:
    """The (C, h, w) float crop centred on (y, x) of a (C, H, W) or (H, W) image (a field, a
    mosaic, the gallery grid), zero outside it: a query cell picked in the viewer. ``shape``
    (..., h, w): the pool's crop size; ``channels``: the pool's channels, taken when the image
    has more."""
    img = to_float(np.asarray(image))
    img = img[None] if img.ndim == 2 else img
    if channels is not None and img.shape[0] > max(channels):
        img = img[list(channels)]
    h, w = int(shape[-2]), int(shape[-1])
    c, H, W = img.shape
    y0, x0 = int(round(y)) - h // 2, int(round(x)) - w // 2
    out = np.zeros((c, h, w), np.float32)
    ys, xs, ye, xe = max(0, y0), max(0, x0), min(H, y0 + h), min(W, x0 + w)
    if ye > ys and xe > xs:
        out[:, ys - y0:ye - y0, xs - x0:xe - x0] = img[:, ys:ye, xs:xe]
    return out


def query_entry(path: str | Path, channel_files: Sequence[str] | None = None):
    """The image a query file stands for: the file itself, or with ``channel_files`` the tuple
    of channel files (paired in its folder) that holds it."""
    path = Path(path)
    if not path.is_file():
        raise InputError("query image not found" if not path.exists() else "the query must be an image file", path)
    if not channel_files:
        return path
    for e in image_entries([path.parent], channel_files):
        if any(Path(f).resolve() == path.resolve() for f in e):
            return e
    raise InputError(f"the query matches none of the channel files {', '.join(channel_files)}", path)


def more_like_this(model, query, folder: str | Path, *, top: int = 10, out: str | Path | None = None,
                   channel_files: Sequence[str] | None = None, channels: Sequence[int] | None = None,
                   index: SimilarIndex | None = None, cache_dir: str | Path | None = None, batch_size: int = 64,
                   device: str = "auto", callback: ProgressCallback = None,
                   cancel: CancelToken | None = None) -> list[dict]:
    """The ``top`` cells of ``folder`` nearest to ``query``, nearest first: rows ``rank, image,
    distance`` (+ ``index``, ``label``), written to ``out`` (CSV: rank, image, distance) when given.

    ``query``: a crop file (with ``channel_files``: one of its channel files), a (C, H, W)
    crop (a cell cut from a field or mosaic), or an int, a row of the pool (a gallery pick).
    A query that is itself in the pool comes first at distance 0. ``index``: an index built
    before (the docks keep one); otherwise it is built or taken from the cache."""
    if top < 1:
        raise InputError(f"--top must be at least 1, got {top}")
    if index is None:
        index = build_index(model, folder, channel_files=channel_files, channels=channels, cache_dir=cache_dir,
                            batch_size=batch_size, device=device, callback=callback, cancel=cancel)
    self_row = None
    if isinstance(query, (int, np.integer)):
        if not 0 <= int(query) < len(index):
            raise InputError(f"pool row {query} does not exist (the pool has {len(index)} cells)")
        self_row = int(query)
        vec = np.asarray(index.embeddings[self_row])
    elif isinstance(query, (str, Path)):
        self_row = index.find(query)
        vec = np.asarray(index.embeddings[self_row]) if self_row is not None else \
            index.embed_file(query, channel_files)[0]
    else:
        vec = index.embed(np.asarray(query, np.float32))[0]
    rows = index.rows(*index.search(vec, top, self_row))
    if out is not None:
        write_csv(out, [{c: r[c] for c in COLUMNS} for r in rows], list(COLUMNS), "the similar-cells table")
    return rows
