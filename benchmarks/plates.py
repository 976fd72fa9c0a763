"""Screens as screens, measured: a simulated 96-well plate scored well by well, here and on Dask.

    .venv/bin/python benchmarks/plates.py           # ~5-8 min on 2 busy CPU cores
    .venv/bin/python benchmarks/plates.py --reuse   # keep the model and plates of the last run
    .venv/bin/python benchmarks/plates.py --quick   # smoke run (smaller model, fewer fields)

1. Train a WSCNN briefly on simulated fields like the plate's (64x80 px, 3-6 objects; circles
   are the rare phenotype: ``core.plates.synthetic.SMALL_FIELDS``): 128 images per class,
   8 epochs.
2. Simulate a 96-well plate, 3 fields per well, the rare phenotype in 5 known wells (every
   field of them), written twice: as well folders and as an OME-Zarr HCS plate (NGFF 0.5).
3. Score both in this process (``core.plates.wells.score_plate``; one torch thread, as a Dask
   worker has, and the zarr plate again with torch's default threads): wells.csv must rank
   exactly the 5 positive wells first (printed: the top wells, the margin between the lowest
   positive and the highest negative well); zarr and folder must give the same scores.
4. Scaling on Dask: the zarr plate on a local cluster of 1 and of 2 worker processes (one
   thread each); cluster start-up and the workers' warm-up (import torch, load the model:
   once per worker and run) apart, the wall time of the scoring (best of 3: the machine is
   shared), fields per second, and whether the rows equal the one-process rows. On a 2-core machine shared with other
   benchmarks this cannot show much; the number to carry to a cluster is fields/s per worker.

Prints the numbers and the heatmap's path, writes benchmarks/results/plates.json.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from common import DATA, save, table, timed

OUT = DATA / "plates"


def train(data: Path, model: Path, n: int, epochs: int) -> None:
    from napari_rarepheno.core.datasets.synthetic import SimConfig, simulate
    from napari_rarepheno.core.plates.synthetic import SMALL_FIELDS
    from napari_rarepheno.core.training.augment import AugmentConfig
    from napari_rarepheno.core.training.trainer import TrainConfig
    from napari_rarepheno.core.wscnn.train import WSCNNOptions, train_wscnn

    simulate(data, SimConfig(n_per_class=n, seed=5, **SMALL_FIELDS), overwrite=True)

    def cb(p):
        if p.stage == "epoch":
            m = p.metrics
            print(f"  epoch {p.epoch}/{p.n_epochs} train {m['train_loss']:.3f} val {m.get('val_loss', float('nan')):.3f}"
                  f"/{m.get('val_accuracy', float('nan')):.3f}", flush=True)
    aug = AugmentConfig(rotation_ranges=[(-20.0, 20.0), (160.0, 200.0)], translate_px=8.0)
    train_wscnn(data, model, WSCNNOptions(augment=aug), TrainConfig(epochs=epochs, seed=0, batch_size=16), callback=cb)


def texts(out: Path) -> tuple[str, str]:
    return (out / "wells.csv").read_text(), (out / "fields.csv").read_text()


def numbers(res) -> tuple[list, list]:
    """What the plate's form must not change: the wells' scores, the fields' scores in plate
    order (field names and image paths differ: s1 vs 0)."""
    return [(w["well"], w["score"]) for w in res.wells], [(f["well"], f["score"]) for f in res.fields]


def warm_up(client, model: Path, plate: Path) -> None:
    """Every worker imports torch and loads the model (once per worker thread, kept for the
    run) before the timing: what a long run pays once per worker."""
    from napari_rarepheno.core.io.modelfile import read_meta
    from napari_rarepheno.core.plates.reading import read_plate
    from napari_rarepheno.core.plates.wells import FieldSpec, _field_task

    meta = read_meta(model)
    spec = FieldSpec(meta.kind, tuple(meta.class_names), "cpu", "auto")
    field = read_plate(plate).fields[0]
    futures = [client.submit(_field_task, field, str(model.resolve()), spec, workers=[w], allow_other_workers=False,
                             pure=False) for w in client.scheduler_info()["workers"]]
    client.gather(futures)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="reuse the model and plates of an earlier run")
    ap.add_argument("--workers", default="1,2", help="Dask cluster sizes to time")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="scorings per cluster size (the best is reported)")
    args = ap.parse_args()
    omp = os.environ.get("OMP_NUM_THREADS")  # before Dask's nanny sets it for its workers

    from napari_rarepheno.core.datasets.synthetic import SimConfig
    from napari_rarepheno.core.discover.distributed import dask_client
    from napari_rarepheno.core.plates.synthetic import (
        SMALL_FIELDS,
        PlateSim,
        simulate_plate,
    )
    from napari_rarepheno.core.plates.wells import score_plate

    n, epochs = (64, 4) if args.quick else (128, 8)
    cfg = PlateSim(sim=SimConfig(seed=21, **SMALL_FIELDS), rows=8, cols=12, fields=2 if args.quick else 3)
    positive = sorted(cfg.positive_wells)
    OUT.mkdir(parents=True, exist_ok=True)
    model, times = OUT / "model.safetensors", {}
    if not (args.reuse and model.exists()):
        print(f"training a WSCNN ({n} images per class, {epochs} epochs) -> {model}", flush=True)
        with timed("train", times):
            train(OUT / "train", model, n, epochs)
    plates = {form: OUT / f"plate_{form}" for form in ("folder", "zarr")}
    for form, path in plates.items():
        if not (args.reuse and (path / "simulation.json").exists()):
            with timed(f"simulate {form} plate", times):
                simulate_plate(path, cfg, form, overwrite=True)
    n_fields = cfg.rows * cfg.cols * cfg.fields

    from napari_rarepheno.core.plates.reading import read_plate

    warm = read_plate(plates["zarr"])
    warm.fields = warm.fields[:4]
    score_plate(model, warm, None, device=args.device)  # the first prediction pays torch's warm-up
    import torch

    default_threads = torch.get_num_threads()
    results = {}
    for form, path in plates.items():  # one thread, as a Dask worker has
        torch.set_num_threads(1)
        t0 = time.perf_counter()
        res = score_plate(model, path, OUT / f"out_{form}", device=args.device, overwrite=True)
        results[form] = {"seconds": time.perf_counter() - t0, "res": res}
        print(f"[score {form} plate in this process, 1 thread: {results[form]['seconds']:.1f} s]", flush=True)
    torch.set_num_threads(default_threads)
    t0 = time.perf_counter()
    score_plate(model, plates["zarr"], None, device=args.device)
    default_seconds = time.perf_counter() - t0
    print(f"[score zarr plate in this process, {default_threads} threads: {default_seconds:.1f} s]", flush=True)
    res = results["zarr"]["res"]
    top = [w["well"] for w in res.wells[:len(positive)]]
    pos_scores = [w["score"] for w in res.wells if w["well"] in positive]
    neg_scores = [w["score"] for w in res.wells if w["well"] not in positive]
    ranking_ok = sorted(top) == positive
    same_forms = numbers(res) == numbers(results["folder"]["res"])
    print("\nwells.csv (OME-Zarr plate), top 8:")
    print(table([[str(w["rank"]), w["well"], str(w["n_fields"]), str(w["n_positive_fields"]), f"{w['score']:.4f}",
                  "yes" if w["well"] in positive else ""] for w in res.wells[:8]],
                ["rank", "well", "n_fields", "n_positive_fields", "score", "truly positive"]))
    print(f"\nranking check: the {len(positive)} positive wells {positive} are ranked first: {ranking_ok} "
          f"(lowest positive {min(pos_scores):.4f}, highest negative {max(neg_scores):.4f})")
    print(f"folder plate and OME-Zarr plate give the same scores (wells and fields): {same_forms}")
    print(f"heatmap: {res.heatmap}")

    one = texts(OUT / "out_zarr")
    scaling = []
    for k in [int(w) for w in args.workers.split(",") if w.strip()]:
        t0 = time.perf_counter()
        with dask_client(workers=k) as client:
            started = time.perf_counter() - t0
            t1 = time.perf_counter()
            warm_up(client, model, plates["zarr"])
            warmed = time.perf_counter() - t1
            runs = []
            for _ in range(args.repeats):  # best of a few: the machine is shared, the load comes and goes
                t1 = time.perf_counter()
                score_plate(model, plates["zarr"], OUT / f"out_dask{k}", device=args.device, overwrite=True,
                            client=client)
                runs.append(time.perf_counter() - t1)
                same = texts(OUT / f"out_dask{k}") == one
                if not same:
                    break
        secs = min(runs)
        scaling.append({"workers": k, "start_seconds": round(started, 2), "warm_up_seconds": round(warmed, 2),
                        "score_seconds": round(secs, 2), "runs_seconds": [round(r, 2) for r in runs],
                        "fields_per_second": round(n_fields / secs, 2), "same_rows": same})
        print(f"[Dask, {k} worker(s): cluster start {started:.1f} s, warm-up {warmed:.1f} s, scoring best of "
              f"{len(runs)} {secs:.1f} s (runs {', '.join(f'{r:.1f}' for r in runs)}; {n_fields / secs:.1f} fields/s), "
              f"same rows as one process: {same}]", flush=True)
    if len(scaling) > 1:
        base = scaling[0]["score_seconds"]
        for s in scaling:
            s["speedup"] = round(base / s["score_seconds"], 2)
    print()
    print(table([[str(s[k]) for k in ("workers", "start_seconds", "warm_up_seconds", "score_seconds",
                                      "fields_per_second")]
                 + [str(s.get("speedup", "")), str(s["same_rows"])] for s in scaling],
                ["workers", "start (s)", "warm-up (s)", "scoring (s)", "fields/s", "speedup", "same rows"]))
    save("plates", {
        "plate": {"wells": cfg.rows * cfg.cols, "fields_per_well": cfg.fields, "fields": n_fields,
                  "field_px": [cfg.sim.height, cfg.sim.width], "positive_wells": positive},
        "training": {"images_per_class": n, "epochs": epochs, "seconds": times.get("train")},
        "ranking": {"top_wells": top, "positive_first": ranking_ok, "lowest_positive_score": min(pos_scores),
                    "highest_negative_score": max(neg_scores),
                    "wells": [{k: w[k] for k in ("rank", "well", "score", "n_positive_fields")} for w in res.wells[:10]]},
        "one_process_1_thread": {form: round(r["seconds"], 2) for form, r in results.items()},
        "one_process_default_threads": {"threads": default_threads, "zarr": round(default_seconds, 2)},
        "folder_equals_zarr": same_forms,
        "heatmap": str(res.heatmap),
        "dask": scaling,
        "threads": {"dask_worker_threads": 1, "OMP_NUM_THREADS": omp,
                    "load_average": os.getloadavg()},
        "quick": args.quick,
    })
    print(json.dumps({"positive_first": ranking_ok, "dask": scaling}))


if __name__ == "__main__":
    main()
