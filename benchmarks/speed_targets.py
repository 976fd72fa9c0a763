"""The inference targets of benchmarks/speed.py, through the package's own functions: a
2048x2048 field with saliency (<= 2 s) and 10k DeepYeast crops (<= 60 s)."""
from __future__ import annotations

import statistics

import numpy as np
import speed_timing as timing
import torch

from napari_rarepheno.core.device import cpu_supports_bf16, resolve_precision
from napari_rarepheno.core.inputs.normalize import Normalization
from napari_rarepheno.core.io.modelfile import LoadedModel, ModelMeta
from napari_rarepheno.core.nets.deepyeast import DeepYeast, DeepYeastConfig
from napari_rarepheno.core.nets.registry import config_to_dict
from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig


def wscnn_loaded() -> LoadedModel:
    torch.manual_seed(0)
    m = WSCNN(WSCNNConfig()).eval()
    with torch.no_grad():  # some positive evidence, so the saliency objective is not all zero
        m.classifier.bias[1] += 2.0
    meta = ModelMeta("wscnn", config_to_dict(m.config), ["negative", "positive"],
                     normalization={"mean": [0.1], "std": [0.1]})
    return LoadedModel(m, meta)


def field_target(side: int, reps: int, roof_fp32: float) -> dict:
    """A side x side field with saliency: the package's predict_wscnn (as shipped), and the
    tiled streaming path of core.tiles (batch norm folded, channels_last; fp32 and bf16)."""
    from napari_rarepheno.core.inference.lazy import predict_wscnn_lazy
    from napari_rarepheno.core.inference.predict import predict_wscnn

    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (1, side, side), dtype=np.uint8)
    out: dict = {"side": side, "target_s": 2.0}
    runs = {
        "predict_wscnn untiled (as shipped: fp32, BN folded, channels_last)": lambda lm, im: predict_wscnn(lm, im, saliency=True),
        "predict_wscnn tile=1024 (as shipped)": lambda lm, im: predict_wscnn(lm, im, saliency=True, tile=1024),
        "tiles.predict_wscnn_lazy tile=768 fp32 (BN folded, channels_last)":
            lambda lm, im: predict_wscnn_lazy(lm, im, tile=768, precision="fp32"),
    }
    if cpu_supports_bf16():
        runs["tiles.predict_wscnn_lazy tile=768 bf16 (BN folded, channels_last)"] = \
            lambda lm, im: predict_wscnn_lazy(lm, im, tile=768, precision="bf16")
    out["gflop"] = saliency_gflop(side)
    print(f"  one {side}x{side} saliency pass = {out['gflop']:.0f} GFLOP (forward + input gradient); "
          f"at the fp32 roofline that alone takes {out['gflop'] / roof_fp32:.1f} s", flush=True)
    from napari_rarepheno.core.inference.segment import segment_saliency

    ref = ref_mask = None
    for name, fn in runs.items():
        lm = wscnn_loaded()
        fn(lm, img[:, :600, :600])  # warm-up on a small field: libraries, thread pools, kernels
        ts = []
        for _ in range(reps):
            t = timing.CLOCK()
            res = fn(lm, img)
            ts.append(timing.CLOCK() - t)
        sec = statistics.median(ts)
        sal = np.asarray(res.saliency)
        mask = segment_saliency(sal).mask
        ref, ref_mask = (sal, mask) if ref is None else (ref, ref_mask)
        corr = float(np.corrcoef(ref.ravel(), sal.ravel())[0, 1]) if sal.std() > 0 else float("nan")
        iou = float((mask & ref_mask).sum() / max((mask | ref_mask).sum(), 1))
        out[name] = {"seconds": sec, "saliency_corr_vs_fp32_untiled": corr, "mask_iou_vs_fp32_untiled": iou,
                     "gflop_per_s": out["gflop"] / sec}
        print(f"  {side}x{side} + saliency, {name}: {sec:.2f} s (target 2 s), {out['gflop'] / sec:.0f} GFLOP/s, "
              f"saliency corr vs fp32 {corr:.5f}, object-mask IoU {iou:.3f}", flush=True)
    return out


def saliency_gflop(side: int) -> float:
    """FLOPs of one saliency pass (forward + gradient to the input), counted on 512x512 and
    scaled by the pixel count (the layers are convolutions: cost per pixel is constant)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = WSCNN(WSCNNConfig()).eval().requires_grad_(False)
    x = torch.randn(1, 1, 512, 512, requires_grad=True)
    with FlopCounterMode(display=False) as fc:
        maps = model.class_maps(x)
        (maps * torch.rand_like(maps)).sum().backward()  # as saliency: gradient to the input only
    return fc.get_total_flops() / 1e9 * (side / 512) ** 2


def crops_target(n: int, reps: int) -> dict:
    """10k-crop target: ``classify_crops`` as shipped ('auto' precision: bf16 where the CPU
    has bf16 matrix units; BN folded, channels_last) and with ``precision='fp32'``, against
    the plain float32 NCHW eval of the same network; argmax agreement with the plain path."""
    from napari_rarepheno.core.deepyeast.classify import classify_crops
    from napari_rarepheno.core.inference.arrays import evaluate_arrays

    torch.manual_seed(0)
    model = DeepYeast(DeepYeastConfig()).eval()
    meta = ModelMeta("deepyeast", config_to_dict(model.config), [f"c{i}" for i in range(12)],
                     normalization={"mean": [0.2, 0.2], "std": [0.1, 0.1]})
    lm = LoadedModel(model, meta)
    crops = np.random.default_rng(0).integers(0, 4000, (n, 2, 64, 64), dtype=np.uint16)
    out: dict = {"n_crops": n, "target_s_per_10k": 60.0,
                 "shipped_precision": str(resolve_precision("auto", torch.device("cpu")) or "fp32")}
    norm = Normalization.from_dict(meta.normalization)
    x = crops.astype(np.float32) / 65535.0
    evaluate_arrays(model, x[:256], None, norm, torch.device("cpu"), 128, None, False)
    t = timing.CLOCK()
    ref = evaluate_arrays(model, x, None, norm, torch.device("cpu"), 128, None, False)["probabilities"]
    base = timing.CLOCK() - t
    out["plain fp32 NCHW eval, batch 128"] = {"seconds": base, "seconds_per_10k": base * 10_000 / n}
    print(f"  {n} crops, plain fp32 NCHW eval: {base:.1f} s -> {base * 1e4 / n:.1f} s per 10k", flush=True)
    for label, prec in (("classify_crops as shipped (auto)", "auto"), ("classify_crops precision=fp32", "fp32")):
        classify_crops(lm, crops[:256], device="cpu", precision=prec)
        t = timing.CLOCK()
        p = classify_crops(lm, crops, device="cpu", precision=prec)
        sec = timing.CLOCK() - t
        agree = float((p.argmax(1) == ref.argmax(1)).mean())
        out[label] = {"seconds": sec, "seconds_per_10k": sec * 10_000 / n, "speedup_vs_plain": base / sec,
                      "argmax_agreement_vs_fp32": agree, "max_abs_prob_diff": float(np.abs(p - ref).max())}
        print(f"  {n} crops, {label}: {sec:.1f} s -> {sec * 1e4 / n:.1f} s per 10k (target 60 s), "
              f"{base / sec:.2f}x plain; argmax agreement {agree:.4f}, max |dp| {np.abs(p - ref).max():.3g}",
              flush=True)
    return out
