"""Speed against the machine's limit: roofline, FLOPs per image, training and inference throughput.

    python benchmarks/speed.py            # full run (~15 min on 2 cores), writes results/speed.json
    python benchmarks/speed.py --quick    # smaller batches and fewer repeats (~5 min), results/speed_quick.json

Prints, in one run on one machine:
* the roofline: measured fp32 (and bf16) matrix-multiply GFLOP/s with all threads;
* WSCNN (1x210x280) and DeepYeast (2x64x64, 12 classes) GFLOP per image, forward and
  forward+backward, counted by ``torch.utils.flop_counter`` from the real layers;
* training and inference images/s, achieved GFLOP/s and the fraction of the roofline, for
  a naive eager baseline (float32, NCHW, a DataLoader over per-image tensors with
  per-image augmentation) and for our path, one optimisation at a time (in-memory uint8
  + batch augmentation on the device, channels_last, bf16 autocast, the glibc allocator
  setting), then ``Trainer.fit`` / ``evaluate_arrays`` themselves with their defaults;
* the inference targets: a 2048x2048 field with saliency (<= 2 s) and 10k DeepYeast
  crops (<= 60 s), through the package's own functions.

Timing: every variant runs one untimed warm-up step, then ``--steps`` timed steps; the
variants take turns (round robin) for ``--reps`` rounds and we report the median, so a
change of machine load hits all of them alike; the fp32 matmul roofline takes its turn in
the same rounds. The 1-minute load average before and after is recorded.

On a shared, busy machine use ``--cpu-time``: one thread, timed with the thread's own CPU
clock (``time.thread_time``), so other processes do not count; numbers are then per core
(the 2-core wall-clock figure is at most twice that).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_timing as timing  # noqa: E402
from common import save, table  # noqa: E402
from speed_targets import crops_target, field_target  # noqa: E402
from speed_timing import RoundRobin, machine_extra, matmul_gflops, matmul_step, rows_for  # noqa: E402

from napari_rarepheno.core.device import cpu_supports_bf16, resolve_precision
from napari_rarepheno.core.inference.arrays import to_model_input  # noqa: E402
from napari_rarepheno.core.inputs.normalize import Normalization  # noqa: E402
from napari_rarepheno.core.io.modelfile import ModelMeta  # noqa: E402
from napari_rarepheno.core.nets.deepyeast import DeepYeast, DeepYeastConfig  # noqa: E402
from napari_rarepheno.core.nets.registry import config_to_dict  # noqa: E402
from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig  # noqa: E402
from napari_rarepheno.core.training.augment import AugmentConfig, augment_batch, sample_affine  # noqa: E402
from napari_rarepheno.core.training.trainer import TrainConfig, make_optimizer  # noqa: E402

BF16 = torch.bfloat16
NETS = {"wscnn": dict(shape=(1, 210, 280), augment=AugmentConfig.wscnn_paper(), batch=50, eval_batch=16),
        "deepyeast": dict(shape=(2, 64, 64), augment=AugmentConfig.deepyeast(), batch=100, eval_batch=256)}


# -------------------------------------------------------------------- FLOPs
def build(kind: str, pool_first: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    return WSCNN(WSCNNConfig(pool_first=pool_first)) if kind == "wscnn" else DeepYeast(DeepYeastConfig())


def flops_per_image(kind: str) -> dict:
    """GFLOP per image (1 multiply-add = 2 FLOP): inference forward, training forward+backward
    (no gradient for the input image, as in training)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build(kind)
    x = torch.randn(2, *NETS[kind]["shape"])  # 2 images: BatchNorm1d needs more than one in training
    model.eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x)
    fwd = fc.get_total_flops() / 2
    by_op = {str(k): v / 2 / 1e9 for k, v in fc.get_flop_counts()["Global"].items()}
    model.train()
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    return {"forward": fwd / 1e9, "train": fc.get_total_flops() / 2 / 1e9, "forward_by_op": by_op,
            "parameters": sum(p.numel() for p in model.parameters())}


def fake_data(kind: str, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    c, h, w = NETS[kind]["shape"]
    images = rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)
    k = 2 if kind == "wscnn" else 12
    labels = (np.arange(n) % k).astype(np.int64)
    return images, labels, k


class PerImageDataset(torch.utils.data.Dataset):
    """The naive baseline's data: one float32 tensor per image, augmented one at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, norm: Normalization, aug: AugmentConfig):
        self.images = [torch.from_numpy(im.astype(np.float32)) for im in images]
        self.labels, self.norm, self.aug = labels, norm, aug
        self.gen = torch.Generator().manual_seed(0)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i][None]
        if self.aug is not None:
            mat = sample_affine(1, x.shape[-2], x.shape[-1], self.aug, self.gen)
            grid = F.affine_grid(mat, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return self.norm.apply_torch(x)[0], int(self.labels[i])


def loop_forever(loader):
    while True:
        yield from loader


def training_variants(kind: str, batch: int, n_images: int, rr: RoundRobin) -> None:
    images, labels, k = fake_data(kind, n_images)
    norm = Normalization.fit(images)
    aug = NETS[kind]["augment"]
    cfg = TrainConfig()

    # naive eager baseline: defaults, float32, NCHW, DataLoader over per-image tensors
    model0 = build(kind)
    opt0 = make_optimizer(model0, "adamw", 1e-4, cfg)
    it = loop_forever(torch.utils.data.DataLoader(PerImageDataset(images, labels, norm, aug), batch_size=batch,
                                                  shuffle=True, drop_last=True))
    model0.train()

    def naive():
        x, y = next(it)
        loss = F.cross_entropy(model0(x), y)
        opt0.zero_grad()
        loss.backward()
        opt0.step()
    rr.add("naive eager (DataLoader, per-image aug, fp32, NCHW)", naive, batch)

    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)

    def ours(channels_last: bool, amp, pool_first: bool = False):
        model = build(kind, pool_first)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = make_optimizer(model, "adamw", 1e-4, cfg)
        gen = torch.Generator().manual_seed(0)
        model.train()

        def step():
            idx = torch.randint(0, len(x_all), (batch,), generator=gen)
            xb = to_model_input(augment_batch(x_all[idx], aug, gen), norm, torch.device("cpu"), channels_last)
            with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step
    rr.add("+ in-memory uint8, batch aug on device", ours(False, None), batch)
    rr.add("+ channels_last", ours(True, None), batch)
    if cpu_supports_bf16():
        rr.add("+ bf16 autocast", ours(True, BF16), batch)
        rr.add("+ glibc allocator (cpu_allocator_tuned)", ours(True, BF16), batch, alloc=True)
    else:
        rr.add("+ glibc allocator (cpu_allocator_tuned)", ours(True, None), batch, alloc=True)
    if kind == "wscnn":  # what train_wscnn builds now (WSCNNConfig.pool_first)
        rr.add("+ pool before BN/ReLU (pool_first)", ours(True, BF16 if cpu_supports_bf16() else None, True),
               batch, alloc=True)


def inference_variants(kind: str, batch: int, n_images: int, rr: RoundRobin) -> None:
    images, labels, k = fake_data(kind, n_images)
    norm = Normalization.fit(images)
    model0 = build(kind).eval()
    loader = loop_forever(torch.utils.data.DataLoader(PerImageDataset(images, labels, norm, None),
                                                      batch_size=batch))

    def naive():
        x, _ = next(loader)
        with torch.no_grad():
            model0(x)
    rr.add("naive eager (DataLoader, fp32, NCHW)", naive, batch)
    x_all = torch.from_numpy(images)

    def ours(channels_last: bool, amp):
        model = build(kind).eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        pos = [0]

        def step():
            s = pos[0] % (len(x_all) - batch + 1)
            pos[0] += batch
            xb = to_model_input(x_all[s:s + batch], norm, torch.device("cpu"), channels_last)
            with torch.no_grad(), torch.autocast("cpu", dtype=amp, enabled=amp is not None):
                model(xb)
        return step
    rr.add("+ in-memory uint8 batches", ours(False, None), batch)
    rr.add("+ channels_last", ours(True, None), batch)
    if cpu_supports_bf16():
        rr.add("+ bf16 autocast", ours(True, BF16), batch)
        rr.add("+ glibc allocator (cpu_allocator_tuned)", ours(True, BF16), batch, alloc=True)


def trainer_fit(kind: str, n_images: int, batch: int, precision: str = "auto") -> dict:
    """``Trainer.fit`` itself, one epoch over ``n_images`` (no validation), as the CLI runs it."""
    from napari_rarepheno.core.io.folders import ImageSet
    from napari_rarepheno.core.training.trainer import Trainer

    images, labels, k = fake_data(kind, n_images, seed=1)
    data = ImageSet(images, labels, [str(i) for i in range(k)], [Path(f"{i}.png") for i in range(n_images)])
    model = build(kind)
    meta = ModelMeta(kind, config_to_dict(model.config), data.class_names)
    tr = Trainer(model, meta, TrainConfig(epochs=1, batch_size=batch, precision=precision, device="cpu"),
                 NETS[kind]["augment"], Normalization.fit(images))
    t = timing.CLOCK()
    tr.fit(data)
    sec = timing.CLOCK() - t
    return {"images_per_s": (n_images // batch) * batch / sec, "seconds": sec,
            "precision": str(tr.amp_dtype or "fp32"), "channels_last": tr.channels_last}


def evaluate_path(kind: str, n_images: int, batch: int) -> dict:
    from napari_rarepheno.core.inference.arrays import evaluate_arrays

    images, _, _ = fake_data(kind, n_images, seed=2)
    model = build(kind).to(memory_format=torch.channels_last)
    amp = resolve_precision("auto", torch.device("cpu"))
    norm = Normalization.fit(images)
    evaluate_arrays(model, images[:batch], None, norm, torch.device("cpu"), batch, amp, True)
    t = timing.CLOCK()
    evaluate_arrays(model, images, None, norm, torch.device("cpu"), batch, amp, True)
    sec = timing.CLOCK() - t
    return {"images_per_s": n_images / sec, "precision": str(amp or "fp32")}


# --------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all cores)")
    ap.add_argument("--skip-targets", action="store_true")
    ap.add_argument("--only-targets", action="store_true", help="roofline and the two inference targets only")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compilation)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="one thread, timed by its own CPU clock: per-core numbers, robust to other load")
    args = ap.parse_args()
    if args.cpu_time:
        timing.set_clock(time.thread_time)
        torch.set_num_threads(1)
    elif args.threads:
        torch.set_num_threads(args.threads)
    q = args.quick
    steps, reps = (1, 3) if q else (1, 5)
    res: dict = {"quick": q, "clock": "thread CPU time, 1 thread" if args.cpu_time else "wall clock",
                 "machine_extra": machine_extra()}
    print("machine:", json.dumps(res["machine_extra"]))

    # roofline
    n = 1024
    sizes = (1024,) if q else (1024, 2048)
    roof = {"fp32": max(matmul_gflops(torch.float32, m, 5 if q else 10) for m in sizes for _ in range(2))}
    if cpu_supports_bf16():
        roof["bf16"] = max(matmul_gflops(BF16, m, 5 if q else 10) for m in sizes for _ in range(2))
    res["roofline_gflops"] = roof
    print(f"\nroofline: fp32 matmul {roof['fp32']:.0f} GFLOP/s" +
          (f", bf16 matmul {roof['bf16']:.0f} GFLOP/s" if "bf16" in roof else "") +
          f" (square {'/'.join(map(str, sizes))}, best median)")

    # FLOPs per image
    fl = {k: flops_per_image(k) for k in NETS}
    res["gflop_per_image"] = fl
    print(table([[k, f"{v['forward']:.3f}", f"{v['train']:.3f}", f"{v['parameters']:,}"] for k, v in fl.items()],
                ["network", "GFLOP/img forward", "GFLOP/img fwd+bwd (train)", "parameters"]))

    header = ["variant", "img/s", "GFLOP/s", "of fp32 roof*", "of bf16 roof", "vs naive", "step gain",
              "page faults/step", "kernel s/step"]
    print("\n(* against the fp32 matmul roofline measured in the same rounds; ratios are medians of "
          "per-round ratios)")
    for kind in ([] if args.only_targets else NETS):
        batch = NETS[kind]["batch"] if not q else NETS[kind]["batch"] // 2
        print(f"\n== {kind} training, batch {batch} ==", flush=True)
        rr = RoundRobin(steps, reps)
        rr.add("roofline", matmul_step(torch.float32, n), n ** 3)
        training_variants(kind, batch, max(4 * batch, 200), rr)
        rounds = rr.run(f"{kind} train")
        rows, ips = rows_for(rounds, fl[kind]["train"], roof, rr.kernel)
        roof_here = statistics.median(rounds["roofline"]) * 2 / 1e9
        print(f"fp32 roofline measured in the same rounds: {roof_here:.0f} GFLOP/s")
        print(table(rows, header))
        fit = trainer_fit(kind, (3 if q else 6) * batch, batch)
        print(f"Trainer.fit (defaults: {fit['precision']}, channels_last={fit['channels_last']}), one epoch: "
              f"{fit['images_per_s']:.1f} img/s = {fit['images_per_s'] * fl[kind]['train']:.0f} GFLOP/s")
        res[f"{kind}_train"] = {"batch": batch, "images_per_s": ips, "trainer_fit": fit,
                                "roofline_fp32_same_rounds": roof_here}

        eb = NETS[kind]["eval_batch"]
        print(f"\n== {kind} inference, batch {eb} ==", flush=True)
        rr = RoundRobin(steps * 2, reps)
        rr.add("roofline", matmul_step(torch.float32, n), n ** 3)
        inference_variants(kind, eb, 4 * eb, rr)
        rounds = rr.run(f"{kind} infer")
        rows, ips = rows_for(rounds, fl[kind]["forward"], roof, rr.kernel)
        roof_here = statistics.median(rounds["roofline"]) * 2 / 1e9
        print(f"fp32 roofline measured in the same rounds: {roof_here:.0f} GFLOP/s")
        print(table(rows, header))
        ev = evaluate_path(kind, 4 * eb, eb)
        print(f"evaluate_arrays (defaults: {ev['precision']}, channels_last): {ev['images_per_s']:.1f} img/s")
        res[f"{kind}_infer"] = {"batch": eb, "images_per_s": ips, "evaluate_arrays": ev,
                                "roofline_fp32_same_rounds": roof_here}

    if args.compile:
        res["compile"] = compile_check(NETS["wscnn"]["batch"] // (2 if q else 1))

    if not args.skip_targets:
        print("\n== inference targets ==", flush=True)
        res["field_2048"] = field_target(2048, 1 if q else 2, roof["fp32"])
        res["crops_10k"] = crops_target(2000 if q else 10_000, 1)
    res["machine_extra"]["loadavg_end"] = os.getloadavg()[0]
    save(("speed_quick" if q else "speed") + ("_cputime" if args.cpu_time else "") +
         ("_targets" if args.only_targets else ""), res)


def compile_check(batch: int) -> dict:
    """torch.compile of the WSCNN training step: compilation time and steady-state speed."""
    images, labels, _ = fake_data("wscnn", batch)
    x = torch.from_numpy(images).float().contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(labels)
    out = {}
    for amp in ([None, BF16] if cpu_supports_bf16() else [None]):
        model = build("wscnn").to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), 1e-4)
        net = torch.compile(model)

        def step():
            with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
                loss = F.cross_entropy(net(x).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        t = time.perf_counter()  # compilation runs in worker processes: wall clock
        step()
        comp = time.perf_counter() - t
        step()
        t = timing.CLOCK()
        for _ in range(2):
            step()
        ips = 2 * batch / (timing.CLOCK() - t)
        out[str(amp or "fp32")] = {"compile_s": comp, "images_per_s": ips}
        print(f"  torch.compile WSCNN train ({amp or 'fp32'}): compile {comp:.0f} s, {ips:.1f} img/s", flush=True)
    return out


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
