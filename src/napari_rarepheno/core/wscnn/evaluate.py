"""WSCNN evaluation on a split folder: classification, and with ``objects.csv`` the paper's
localisation metric (Table 3) and a detection score."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from ..device import resolve_device
from ..errors import CHOOSE_CHANNELS, InputError
from ..inference.predict import saliency_batch
from ..inference.segment import SaliencyConfig, segment_saliency
from ..inputs.normalize import Normalization
from ..io.boxes import read_objects
from ..io.folders import load_wscnn_split
from ..io.modelfile import LoadedModel, as_loaded
from ..metrics import (
    binary_metrics,
    detection_counts,
    localization_counts,
    localization_metrics,
)
from ..progress import ProgressCallback, report_items


def evaluate_wscnn(model: str | Path | LoadedModel, split_dir: str | Path, *, device: str = "auto",
                   localization: bool = True, saliency_config=None, batch_size: int = 16,
                   callback: ProgressCallback = None, channels: Sequence[int] | None = None,
                   channel_files: Sequence[str] | None = None, saliency_mode: str = "map") -> dict:
    """Accuracy/precision/recall on a split folder; with ``objects.csv`` also the paper's
    localisation metric on the positive images (``localization_*``: a box counts when the mask
    covers >= 90% of it) and a detection score (``detection_*``: a box counts when a detected
    peak lies in it; the fair one for mosaics, whose boxes are whole crops). ``channels``
    (``--channels``) overrides the channel selection stored in the model; ``channel_files``
    (``--channel-files``) reads images stored one file per channel (default: the model's
    patterns, if it was trained on such files)."""
    lm = as_loaded(model, "wscnn")
    split_dir = Path(split_dir)
    dev = resolve_device(device)
    channel_files = channel_files or lm.meta.training.get("input", {}).get("channel_files")
    data = load_wscnn_split(split_dir, lm.meta.channels if channels is None else channels, lm.model.min_input_size,
                            channel_files=channel_files)
    expected = lm.model.config.in_channels
    if data.n_channels != expected:
        raise InputError(f"the model expects {expected} channel(s) but the images have {data.n_channels}; "
                         + CHOOSE_CHANNELS, split_dir)
    lm.model.to(dev)
    norm = Normalization.of_model(lm.meta)
    objects_csv = split_dir / "objects.csv"
    want_loc = localization and objects_csv.exists()
    probs, counts, hits = [], [], []
    boxes_by_image = read_objects(objects_csv, {data.relpath(i): data.images.shape[2:] for i in range(len(data))}) \
        if want_loc else {}
    scfg = saliency_config or SaliencyConfig()
    for s in range(0, len(data), batch_size):
        sl = slice(s, min(s + batch_size, len(data)))
        # saliency (a backward pass) only for the positive images the localisation scores
        pos = np.flatnonzero(data.labels[sl] == 1) if want_loc else np.zeros(0, int)
        p = np.zeros((sl.stop - sl.start, len(lm.meta.class_names)), np.float32)
        rest = np.setdiff1d(np.arange(sl.stop - sl.start), pos)
        if len(rest):
            p[rest] = saliency_batch(lm, data.images[sl][rest], device=dev, saliency=False, norm=norm)[0]
        if len(pos):
            p[pos], sal = saliency_batch(lm, data.images[sl][pos], device=dev, norm=norm, mode=saliency_mode)
        probs.append(p)
        for j, k in enumerate(pos):
            i = sl.start + int(k)
            det = segment_saliency(sal[j], scfg)
            boxes = boxes_by_image.get(data.relpath(i), [])
            counts.append(localization_counts(det.mask, boxes))
            hits.append(detection_counts(det.peaks, boxes))
        report_items(callback, sl.stop, len(data))
    probs = np.concatenate(probs)
    pred = probs.argmax(1)
    out = binary_metrics(data.labels, pred, positive=1)
    out["n"] = int(len(data))
    if want_loc:
        out.update(localization_metrics(counts))
        out.update(localization_metrics(hits, prefix="detection"))  # a detected peak inside the box
        out["segmentation"] = asdict(scfg)  # the settings behind these numbers
        out["saliency_mode"] = saliency_mode
    out["probabilities"] = probs[:, 1].tolist()
    out["images"] = [data.relpath(i) for i in range(len(data))]
    out["labels"] = data.labels.tolist()
    return out
