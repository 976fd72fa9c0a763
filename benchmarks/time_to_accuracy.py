"""Time-to-accuracy: wall time from scratch until the model a user would get reaches a target.

* WSCNN on Sim Data 1 (the paper's simulation, 2000 images per class split in three):
  time until the best model (chosen on validation loss, as `rarepheno train` saves it)
  reaches >= 99.6 % accuracy on the test split. Target: <= 10 minutes on 2 CPU cores.
* DeepYeast on the real mitosis crops (split by region, as benchmarks/deepyeast_mitosis.py):
  time until the best model reaches the accuracy that benchmark recorded for the network
  (benchmarks/results/deepyeast_mitosis.json), and the paper's 87 %.

The clock counts training only: after each epoch that saved a new best model, that model
is scored on the test split with the clock paused (the score is the benchmark's, not the
trainer's: the trainer never sees test data). Training stops at the target or at
``--*-epochs``. Writes benchmarks/results/time_to_accuracy.json.

    .venv/bin/python benchmarks/time_to_accuracy.py [--skip-deepyeast] [--wscnn-epochs 16]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]

from common import DATA, MITOSIS, RESULTS, save  # noqa: E402


class Stopwatch:
    """Training wall time with test scoring excluded; stops training at the target."""

    def __init__(self, score, target: float, label: str, stop: bool = True, then=None):
        from napari_rarepheno.core.progress import CancelToken

        self.score, self.target, self.label, self.stop, self.then = score, target, label, stop, then
        self.cancel = CancelToken()
        self.t0 = time.perf_counter()
        self.paused = 0.0
        self.curve: list[dict] = []
        self.reached_s: float | None = None
        self.reached_epoch: int | None = None
        self.current = float("nan")

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0 - self.paused

    def __call__(self, p) -> None:
        if self.then is not None:
            self.then(p)
        if p.stage != "epoch":
            return
        t_train = self.elapsed()
        m = p.metrics
        if m.get("best"):
            t = time.perf_counter()
            self.current = self.score()
            self.paused += time.perf_counter() - t
        self.curve.append({"epoch": p.epoch, "train_seconds": round(t_train, 1), "val_accuracy": m.get("val_accuracy"),
                           "best_model_test_accuracy": self.current})
        print(f"  [{self.label}] epoch {p.epoch}/{p.n_epochs}: {t_train:6.0f} s training, val acc "
              f"{m.get('val_accuracy', float('nan')):.4f}, best model on test {self.current:.4f}", flush=True)
        if self.reached_s is None and self.current >= self.target:
            self.reached_s, self.reached_epoch = t_train, p.epoch
            if self.stop:
                self.cancel.cancel()


def first_time(curve: list[dict], target: float) -> float | None:
    return next((c["train_seconds"] for c in curve if c["best_model_test_accuracy"] >= target), None)


def wscnn_part(args, tmp: Path) -> dict:
    from wscnn_tables import ensure_sim

    from napari_rarepheno.core.training.trainer import TrainConfig
    from napari_rarepheno.core.wscnn.evaluate import evaluate_wscnn
    from napari_rarepheno.core.wscnn.train import WSCNNOptions, train_wscnn

    sim1 = ensure_sim("sim1", 2000, 0.1, 0)
    out = tmp / "wscnn.safetensors"
    sw = Stopwatch(lambda: evaluate_wscnn(out, sim1 / "test", localization=False)["accuracy"], args.wscnn_target,
                   "wscnn")
    cfg = TrainConfig(epochs=args.wscnn_epochs, recipe=args.recipe, seed=args.seed)
    train_wscnn(sim1, out, WSCNNOptions(), cfg, callback=sw, cancel=sw.cancel)
    r = {"data": "Sim Data 1 (2000/class, 1/3 train)", "recipe": args.recipe, "target": args.wscnn_target,
         "target_minutes": 10, "epochs_max": args.wscnn_epochs, "reached_seconds": sw.reached_s,
         "reached_epoch": sw.reached_epoch, "final_test_accuracy": sw.current, "curve": sw.curve}
    return r


def deepyeast_part(args, tmp: Path) -> dict:
    from deepyeast_mitosis import make_split

    from napari_rarepheno.core.deepyeast.data import DeepYeastOptions
    from napari_rarepheno.core.deepyeast.evaluate import evaluate_deepyeast
    from napari_rarepheno.core.deepyeast.train import train_deepyeast
    from napari_rarepheno.core.training.trainer import TrainConfig

    ref = RESULTS / "deepyeast_mitosis.json"
    bench_acc = json.loads(ref.read_text())["network"]["fast"]["accuracy"] if ref.exists() else 0.95
    make_split(MITOSIS, tmp, 0)
    out = tmp / "deepyeast.safetensors"
    opts = DeepYeastOptions(channels=[0, 1])
    sw = Stopwatch(lambda: evaluate_deepyeast(out, tmp / "test", device="cpu")["accuracy"], bench_acc, "deepyeast")
    # the settings of benchmarks/deepyeast_mitosis.py (batch 32 on this small set)
    cfg = TrainConfig(epochs=args.deepyeast_epochs, recipe=args.recipe, seed=args.seed, batch_size=32)
    train_deepyeast(tmp / "train", out, opts, cfg, val_dir=tmp / "val", callback=sw, cancel=sw.cancel)
    return {"data": "mitosis-crops, region split 60/20/20 (seed 0)", "target": bench_acc,
            "target_source": str(ref.relative_to(ROOT)) if ref.exists() else "default 0.95",
            "reached_seconds": sw.reached_s, "reached_epoch": sw.reached_epoch,
            "paper_accuracy": 0.87, "reached_paper_seconds": first_time(sw.curve, 0.87),
            "final_test_accuracy": sw.current, "epochs_max": args.deepyeast_epochs, "curve": sw.curve}


def fmt(s: float | None) -> str:
    return "not reached" if s is None else f"{s:.0f} s ({s / 60:.1f} min)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="fast", choices=["fast", "paper"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wscnn-epochs", type=int, default=16)
    ap.add_argument("--wscnn-target", type=float, default=0.996)
    ap.add_argument("--deepyeast-epochs", type=int, default=20)
    ap.add_argument("--skip-wscnn", action="store_true")
    ap.add_argument("--skip-deepyeast", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 WSCNN and 3 DeepYeast epochs")
    args = ap.parse_args(argv)
    if args.quick:
        args.wscnn_epochs, args.deepyeast_epochs = min(args.wscnn_epochs, 2), min(args.deepyeast_epochs, 3)
    res: dict = {"benchmark": "time_to_accuracy", "load_average_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(dir=DATA if DATA.exists() else None) as td:
        tmp = Path(td)
        if not args.skip_wscnn:
            res["wscnn"] = wscnn_part(args, tmp)
        if not args.skip_deepyeast:
            (tmp / "dy").mkdir()
            res["deepyeast"] = deepyeast_part(args, tmp / "dy")
    print("\ntime to accuracy (training wall time, test scoring excluded)")
    if "wscnn" in res:
        w = res["wscnn"]
        print(f"  WSCNN, Sim Data 1, test acc >= {w['target']:.1%}: {fmt(w['reached_seconds'])} "
              f"(target <= 10 min; final {w['final_test_accuracy']:.4f})")
    if "deepyeast" in res:
        d = res["deepyeast"]
        print(f"  DeepYeast, mitosis crops, test acc >= {d['target']:.1%} (our benchmark): {fmt(d['reached_seconds'])}")
        print(f"  DeepYeast, mitosis crops, test acc >= 87% (paper's accuracy): {fmt(d['reached_paper_seconds'])}")
    save("time_to_accuracy" + ("_quick" if args.quick else ""), res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
