"""A big memory-mapped TIFF is predicted tile by tile in bounded memory.

A 6000 x 6000 uint16 TIFF (69 MiB on disk) is opened with ``tifffile.memmap`` and predicted
with saliency by :func:`napari_rarepheno.core.inference.lazy.predict_wscnn_lazy`, the saliency
streamed into a ``.npy`` memmap. The run happens in a fresh subprocess that resets its
peak-RSS counter (``/proc/self/clear_refs``) just before predicting, so the measured peak
is the prediction's alone; a thread samples the anonymous (heap) memory every 5 ms.

One float32 copy of the image is 137 MiB (``F``). Holding the image as float32, a gradient
canvas, its absolute value and full-resolution class maps -- what the in-memory
``predict.predict_wscnn`` does -- costs ~5 F. Here:
* heap growth does not grow with the image height: the same field cut to its top 2000 rows
  (a third) needs as much heap, within 25% + 8 MiB, and both stay < F / 2. It is one tile's
  working set plus one band of 512 x 6000 float32: measured 16 MiB on an AVX-512 Xeon and
  35 MiB on an AVX2 EPYC (the convolution kernels' scratch differs; 14 / 35 / 106 MiB there
  at 256 / 512 / 1024 px tiles), against 137 MiB for one float copy of the image;
* total resident growth < 2 F, well below 4 F. It includes the page-cache pages the
  kernel keeps mapped for the input (0.5 F, uint16) and for the output memmap (1 F, the
  saliency the caller asked for), measured ~0.2 GiB in all.
A small network (4 filters per layer) keeps the test fast; the paper's network has a
larger per-tile working set (~0.3 GiB at 512 px), equally independent of the image size.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

SIDE = 6000
TILE = 512
FLOAT32_IMAGE_MB = SIDE * SIDE * 4 / 2 ** 20   # 137 MiB

SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    import numpy as np, tifffile, torch
    from napari_rarepheno.core.io.modelfile import LoadedModel, ModelMeta
    from napari_rarepheno.core.nets.registry import config_to_dict
    from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig
    from napari_rarepheno.core.inference.lazy import predict_wscnn_lazy

    tif, out_path, tile, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(0)
    model = WSCNN(WSCNNConfig(widths=(4, 4, 4))).eval()
    with torch.no_grad():
        model.classifier.bias[1] += 5.0  # positive evidence everywhere: saliency on every tile
    meta = ModelMeta("wscnn", config_to_dict(model.config), ["negative", "positive"],
                     normalization={"mean": [0.3], "std": [0.2]})
    lm = LoadedModel(model, meta)
    image = tifffile.memmap(tif)[:rows]
    assert isinstance(image, np.memmap), type(image)
    out = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.float32, shape=image.shape)
    predict_wscnn_lazy(lm, np.asarray(image[:700, :700]), tile=tile)  # warm-up: libraries, thread pools

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # MiB
    peak_anon, done = [status("RssAnon")], False

    def sample():
        while not done:
            peak_anon.append(status("RssAnon"))
            time.sleep(0.005)
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak-RSS counter (VmHWM)
    rss0, anon0 = status("VmRSS"), status("RssAnon")
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    pred = predict_wscnn_lazy(lm, image, tile=tile, out=out)
    seconds = time.perf_counter() - t0
    done = True
    th.join()
    out.flush()
    print(json.dumps({"rss_growth_mb": status("VmHWM") - rss0, "anon_growth_mb": max(peak_anon) - anon0,
                      "seconds": seconds, "n_tiles": pred.n_tiles, "maps_shape": list(pred.class_maps.shape),
                      "probabilities": pred.probabilities.tolist(), "saliency_max": float(out.max())}))
""")


@pytest.mark.slow
def test_memmapped_tiff_predicts_in_bounded_memory(tmp_path):
    import tifffile  # a hard dependency
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure the peak resident memory")
    rng = np.random.default_rng(0)
    tif = tmp_path / "plate.tif"
    with tifffile.TiffWriter(tif) as tw:  # written in strips, never a full float copy
        tw.write(shape=(SIDE, SIDE), dtype=np.uint16,
                 data=((rng.integers(0, 20000, (500, SIDE), dtype=np.uint16)) for _ in range(SIDE // 500)),
                 rowsperstrip=500)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)

    def run(rows: int) -> dict:  # a fresh process each: allocator pools of one run would hide the other's
        proc = subprocess.run([sys.executable, str(script), str(tif), str(tmp_path / f"sal{rows}.npy"), str(TILE),
                               str(rows)], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        print(rows, "rows:", res)
        return res

    third, res = run(SIDE // 3), run(SIDE)
    assert res["maps_shape"][1:] == [754, 754]  # the class maps of the field and its 35 px margin, at 1/8
    assert abs(sum(res["probabilities"]) - 1) < 1e-5 and res["saliency_max"] > 0
    assert res["anon_growth_mb"] < FLOAT32_IMAGE_MB / 2, res
    assert res["anon_growth_mb"] <= 1.25 * third["anon_growth_mb"] + 8, (third, res)  # 3x the rows, same heap
    assert res["rss_growth_mb"] < 2 * FLOAT32_IMAGE_MB, res
    sal = np.load(tmp_path / f"sal{SIDE}.npy", mmap_mode="r")
    assert sal.shape == (SIDE, SIDE) and float(np.abs(sal[-100:, -100:]).max()) > 0  # written to the last row


def test_lazy_prediction_equals_predict_wscnn():
    """The streamed prediction is the tiled prediction of ``core.inference.predict``: exact stitching."""
    import torch

    from napari_rarepheno.core.inference.lazy import predict_wscnn_lazy
    from napari_rarepheno.core.inference.predict import predict_wscnn
    from napari_rarepheno.core.inference.tiling import LazyImage, iter_tiles
    from napari_rarepheno.core.io.modelfile import LoadedModel, ModelMeta
    from napari_rarepheno.core.nets.registry import config_to_dict
    from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig

    torch.manual_seed(0)
    model = WSCNN(WSCNNConfig(widths=(4, 4, 4))).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    lm = LoadedModel(model, ModelMeta("wscnn", config_to_dict(model.config), ["negative", "positive"],
                                      normalization={"mean": [0.2], "std": [0.1]}))
    rng = np.random.default_rng(1)
    img = (rng.random((520, 610)) * 20000).astype(np.uint16)
    img[300:315, 410:425] = 60000
    img[:12, 200:215] = 60000  # an object at the edge, where the border margin matters
    edge = {}
    for mode, border in (("map", False), ("max", False), ("map", True), ("max", True), ("cam", False),
                         ("cam", True)):
        # border: the margin (35 px of the median) read lazily around the field, cropped back
        ref = predict_wscnn(lm, img[None], saliency=True, saliency_mode=mode, border=border)
        p = predict_wscnn_lazy(lm, img, tile=256, saliency_mode=mode, channels_last=False, border=border)
        assert p.n_tiles > 4 and p.saliency.shape == img.shape
        edge[mode, border] = p.saliency[:12, 200:215].copy()
        np.testing.assert_allclose(p.probabilities, ref.probabilities, atol=1e-6)
        np.testing.assert_allclose(p.class_maps_window(0, 520, 0, 610), ref.class_maps, atol=1e-5)
        np.testing.assert_allclose(p.class_maps_window(100, 180, 333, 400), ref.class_maps[:, 100:180, 333:400],
                                   atol=1e-5)
        np.testing.assert_allclose(p.saliency, ref.saliency, atol=1e-5 * float(ref.saliency.max()))
    assert not np.allclose(edge["map", True], edge["map", False])  # the margin changed what the edge sees
    # per-image scaling (the model's percentiles of the whole field) gives tiles the same input
    lm.meta.normalization = {"mean": [0.2], "std": [0.1], "scale": "percentile"}
    for mode in ("map", "cam"):
        ref = predict_wscnn(lm, img[None], saliency=True, saliency_mode=mode)
        tiled = predict_wscnn(lm, img[None], saliency=True, saliency_mode=mode, tile=256)
        assert tiled.n_tiles > 4
        np.testing.assert_allclose(tiled.probabilities, ref.probabilities, atol=1e-6)
        np.testing.assert_allclose(tiled.saliency, ref.saliency, atol=1e-5 * float(ref.saliency.max()))
    # forward-only localisation: the positive evidence of the class maps, no backward pass
    from napari_rarepheno.core.inference.predict import saliency_batch
    from napari_rarepheno.core.inference.saliency import evidence_map
    # ... moved by the model's calibrated shift (where its detector fires relative to objects)
    lm.meta.training["cam_shift"] = [0, 0]
    ref = predict_wscnn(lm, img[None], saliency=True, saliency_mode="cam")
    np.testing.assert_allclose(ref.saliency, evidence_map(ref.class_maps, 1), atol=1e-6)
    lm.meta.training["cam_shift"] = [4, -8]
    moved = predict_wscnn(lm, img[None], saliency=True, saliency_mode="cam")
    np.testing.assert_allclose(moved.saliency[40:-40, 40:-40], ref.saliency[36:-44, 48:-32], atol=1e-5)
    crops = np.stack([img[None, :200, :240], img[None, 250:450, 350:590]])
    probs, sal = saliency_batch(lm, crops, mode="cam")
    for k in range(2):
        one = predict_wscnn(lm, crops[k], saliency=True, saliency_mode="cam")
        np.testing.assert_allclose(sal[k], one.saliency, atol=1e-5 * max(float(one.saliency.max()), 1e-6))
        np.testing.assert_allclose(probs[k], one.probabilities, atol=1e-6)
    # the tile reader: windows cover the image, values scaled like imageio.to_float
    seen = np.zeros(img.shape, bool)
    for t, px in iter_tiles(img, 200, 40):
        assert px.dtype == np.float32 and px.shape == (1, t.y1 - t.y0, t.x1 - t.x0)
        np.testing.assert_allclose(px[0], img[t.y0:t.y1, t.x0:t.x1] / 65535.0, rtol=1e-6)
        seen[t.y0:t.y1, t.x0:t.x1] = True
    assert seen.all()
    assert LazyImage(np.zeros((3, 40, 50), np.uint8), channels=[2]).shape == (1, 40, 50)


def test_lazy_border_matches_pad_border():
    """The lazily read margin is predict_wscnn's: pad_border of the float image (the fill is
    each channel's median), read window by window; for big images the median comes from
    every k-th row."""
    from napari_rarepheno.core.inference.border import (
        CroppedRows,
        LazyBorder,
        pad_border,
    )
    from napari_rarepheno.core.inference.tiling import LazyImage

    rng = np.random.default_rng(0)
    img = rng.integers(0, 4000, (2, 90, 70)).astype(np.uint16)
    lb = LazyBorder(LazyImage(img), 20)
    ref = pad_border(img.astype(np.float32) / np.float32(65535), 20)
    assert lb.shape == ref.shape == (2, 130, 110)
    np.testing.assert_array_equal(lb.read(0, 130, 0, 110), ref)
    np.testing.assert_array_equal(lb.read(5, 33, 90, 110), ref[:, 5:33, 90:110])  # a window across the edge
    sub = LazyBorder(LazyImage(img), 20, max_pixels=1000)  # every 7th row
    assert np.abs(sub.fill * 65535 - np.median(img, axis=(1, 2))).max() < 200  # of 4000 uniform values
    out = np.zeros((90, 70), np.float32)
    w = CroppedRows(out, 20, 90, 70)
    padded = np.arange(130 * 110, dtype=np.float32).reshape(130, 110)
    w[0:64] = padded[0:64]
    w[64:130] = padded[64:130]
    np.testing.assert_array_equal(out, padded[20:110, 20:90])
