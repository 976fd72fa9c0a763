"""Big fields through ``rarepheno predict``: the marginal time of one 2048x2048 field.

A user runs ``rarepheno predict MODEL FOLDER --out DIR`` on a folder of fields. What a field
costs is the marginal time: run the command on 1 field and on 5 fields in one run of this
script (same machine, same load) and take (t5 - t1) / 4. That leaves out the interpreter,
torch's import and the model load, which a folder pays once.

Each setting is timed in turns (1 field, 5 fields, next setting, ..., ``--rounds`` rounds;
the median per setting): the shipped defaults (``--localisation cam``, ``--precision auto``:
forward-only class maps, bf16 where the CPU has bf16 instructions) and the paper's gradient
saliency in fp32. Everything the command writes counts: predictions.csv, saliency TIFFs,
masks, objects.csv, shift.json.

The model (``--model``) should be a trained 1-channel WSCNN, e.g. the demo's
(``make demo ARGS=--headless`` -> demo-output/model.safetensors, trained on the paper's
circles among ellipses): the fields are 8-bit noise with 60 bright discs of 30 px, saved as
TIFF, so its evidence is where the discs are. Without ``--model``, a WSCNN with random
weights and a positive bias is used: its evidence covers the whole field, which makes the
object segmentation (a watershed over every pixel above the threshold) the slowest step, as
it never is with a trained model.

Goal (issue "The plugin as a biologist meets it in 2026"): <= 2 s marginal per 2048x2048
field on 2 CPU cores with the defaults.

    .venv/bin/python benchmarks/predict_fields.py [--side 2048] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]

from common import RESULTS, machine  # noqa: E402

SETTINGS = {
    "defaults (cam, precision auto)": [],
    "gradient saliency, fp32": ["--localisation", "gradient", "--precision", "fp32"],
}


def write_fields(folder: Path, n: int, side: int, seed: int = 0) -> Path:
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    for i in range(n):
        img = rng.integers(0, 40, (side, side)).astype(np.float32)
        for cy, cx in rng.integers(40, side - 40, (60, 2)):
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < 15 ** 2] += 150
        tifffile.imwrite(folder / f"field{i}.tif", np.clip(img, 0, 255).astype(np.uint8))
    return folder


def model_file(path: Path) -> Path:
    import torch

    from napari_rarepheno.core.io.modelfile import ModelMeta, save_model
    from napari_rarepheno.core.nets.registry import config_to_dict
    from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig

    torch.manual_seed(0)
    m = WSCNN(WSCNNConfig()).eval()
    with torch.no_grad():
        m.classifier.bias[1] += 2.0
    meta = ModelMeta("wscnn", config_to_dict(m.config), ["negative", "positive"],
                     normalization={"mean": [0.1], "std": [0.1]})
    return save_model(path, m, meta)


def run(model: Path, folder: Path, out: Path, extra: list[str]) -> float:
    cmd = [str(ROOT / ".venv/bin/rarepheno") if (ROOT / ".venv/bin/rarepheno").exists() else "rarepheno",
           "predict", str(model), str(folder), "--out", str(out), "--overwrite", "--quiet", *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default=None, help="a trained 1-channel WSCNN (default: random weights)")
    ap.add_argument("--out", default=str(RESULTS / "predict_fields.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="predict-fields-") as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else model_file(tmp / "wscnn.safetensors")
        one = write_fields(tmp / "one", 1, args.side)
        five = write_fields(tmp / "five", 5, args.side)
        times: dict[str, dict[str, list[float]]] = {k: {"1": [], "5": []} for k in SETTINGS}
        run(model, one, tmp / "out1", [])  # warm-up: the first start reads torch from disk
        for r in range(args.rounds):
            for name, extra in SETTINGS.items():
                t1 = run(model, one, tmp / "out1", extra)
                t5 = run(model, five, tmp / "out5", extra)
                times[name]["1"].append(t1)
                times[name]["5"].append(t5)
                print(f"round {r + 1} {name}: 1 field {t1:.1f} s, 5 fields {t5:.1f} s, "
                      f"marginal {(t5 - t1) / 4:.2f} s/field", flush=True)
    res: dict = {"side": args.side, "rounds": args.rounds, "goal_s_per_field": 2.0, "settings": {},
                 "model": args.model or "random weights",
                 "load_average": os.getloadavg()}
    print(f"\n{args.side}x{args.side} fields through `rarepheno predict` (median of {args.rounds} rounds)")
    print(f"{'setting':36s} {'1 field':>9s} {'5 fields':>9s} {'marginal/field':>15s}")
    for name, t in times.items():
        m1, m5 = statistics.median(t["1"]), statistics.median(t["5"])
        marginal = statistics.median([(b - a) / 4 for a, b in zip(t["1"], t["5"])])
        res["settings"][name] = {"one_field_s": m1, "five_fields_s": m5, "marginal_s_per_field": marginal,
                                 "raw": t}
        print(f"{name:36s} {m1:8.1f}s {m5:8.1f}s {marginal:14.2f}s")
    names = list(times)
    ratio = res["settings"][names[1]]["marginal_s_per_field"] / res["settings"][names[0]]["marginal_s_per_field"]
    res["gradient_fp32_over_defaults"] = ratio
    print(f"gradient fp32 / defaults: {ratio:.1f}x; goal <= 2 s per field with the defaults: "
          + ("met" if res["settings"][names[0]]["marginal_s_per_field"] <= 2.0 else "NOT met"))
    res["machine"] = machine()
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
