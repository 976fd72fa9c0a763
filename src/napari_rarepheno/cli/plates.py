"""``rarepheno plate`` (score a plate: wells.csv, fields.csv, plate.png; here or on Dask) and
``rarepheno simulate-plate`` (a 96-well plate with the rare phenotype in known wells)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..core.datasets.synthetic import SimConfig
from ..core.plates.layout import canonical_well
from ..core.plates.synthetic import FORMS, SMALL_FIELDS, PlateSim, simulate_plate
from ..core.progress import CancelToken
from .common import count_bar, ctrl_c_cancels, print_rows, tokens


def cmd_plate(args) -> int:
    from ..core.plates.wells import score_plate  # deferred: loads torch

    with ctrl_c_cancels(CancelToken()) as token:
        res = score_plate(args.model, args.plate, args.out, target=args.target, well_score=args.well_score,
                          threshold=args.threshold, device=args.device, precision=args.precision,
                          segment_channel=args.segment_channel, diameter=args.diameter, regex=args.regex,
                          channel_files=tokens(args.channel_files), level=args.level, z=args.z,
                          workers=args.workers, scheduler=args.scheduler, resume=args.resume,
                          overwrite=args.overwrite, heatmap=not args.no_heatmap,
                          callback=count_bar("fields", args.quiet), cancel=token)
    if not args.quiet:
        cols = ["rank", "well", "n_fields", "n_positive_fields", "score"]
        cols += ["class"] if res.wells and "class" in res.wells[0] else ["top_field"]
        print_rows(res.wells, cols, args.show)
    state = "" if res.complete else f", stopped early: {len(res.fields)} field(s) done, --resume continues"
    print(f"wrote {Path(args.out) / 'wells.csv'} ({len(res.wells)} well(s), {len(res.fields)} field(s), "
          f"{res.n_scored} scored now{state})" + (f"; heatmap {res.heatmap}" if res.heatmap else ""), file=sys.stderr)
    return 0 if res.complete else 130


def cmd_simulate_plate(args) -> int:
    positive = tuple(canonical_well(w) for w in tokens(args.positive) or ())
    sim = dict(SMALL_FIELDS, **({} if args.rare_fraction is None else {"rare_fraction": args.rare_fraction}))
    cfg = PlateSim(sim=SimConfig(seed=args.seed, **sim), rows=args.rows, cols=args.cols, fields=args.fields,
                   positive_wells=positive)
    with ctrl_c_cancels(CancelToken()) as token:
        out = simulate_plate(args.out, cfg, args.form, ngff=args.ngff, overwrite=args.overwrite,
                             callback=count_bar("fields", args.quiet), cancel=token)
    print(f"wrote {out}: {cfg.rows}x{cfg.cols} wells, {cfg.fields} field(s) each, rare phenotype in "
          f"{', '.join(positive) or 'no well'}", file=sys.stderr)
    return 0


def add_parser(sub, train_sub) -> None:
    p = sub.add_parser("plate", help="score a plate (folder or OME-Zarr HCS): per-well scores, fields, heatmap",
                       description="Score every field of a plate with a WSCNN or DeepYeast model and write "
                       "OUT/wells.csv (one row per well, highest score first), OUT/fields.csv, OUT/plate.png "
                       "(DeepYeast: also OUT/cells.csv) and OUT/plate.json (which plate, read how: the Plate "
                       "dock opens OUT without scoring again). Rows are streamed to OUT/*.partial.csv as fields finish "
                       "(--resume continues a stopped run). --workers/--scheduler score on Dask.")
    p.add_argument("model", help="model file (.safetensors): WSCNN or DeepYeast")
    p.add_argument("plate", help="plate: an OME-Zarr HCS plate (folder or URL), or a folder of images "
                   "(PLATE/<well>/..., or well and field in the file names: --regex)")
    p.add_argument("--out", required=True, help="folder for wells.csv, fields.csv, plate.png")
    p.add_argument("--regex", default=None, help="folder plates: a regex with the named groups well (and field) "
                   r"matched in the file names, e.g. '_(?P<well>[A-P]\d{2})_s(?P<field>\d+)' (the default when "
                   "the images are not in well folders)")
    p.add_argument("--channel-files", default=None,
                   help="folder plates stored one file per channel: substrings/regexes naming each channel's file, "
                   "in the model's channel order, e.g. _w1,_w2 (default: the model's)")
    p.add_argument("--level", type=int, default=0, help="OME-Zarr: resolution level (0: full, -1: the coarsest)")
    p.add_argument("--z", type=int, default=0, help="OME-Zarr: the plane of z-stacks")
    p.add_argument("--target", default=None, help="class to score (WSCNN default: positive; DeepYeast default: "
                   "each well's own class)")
    p.add_argument("--well-score", default="max", help="a well's score from its fields (WSCNN): max (default), "
                   "mean, or a quantile like q75")
    p.add_argument("--threshold", type=float, default=0.5, help="a field counts as positive at this score")
    p.add_argument("--segment-channel", type=int, default=0, help="DeepYeast: the channel cells are segmented on")
    p.add_argument("--diameter", type=float, default=None, help="DeepYeast: cell diameter in px (default: measured)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", help="auto (bf16 where the hardware computes it), fp32 or bf16")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None,
                       help="start a local Dask cluster of N worker processes (one thread each)")
    where.add_argument("--scheduler", default=None,
                       help="join a running Dask cluster, e.g. tcp://10.0.0.5:8786 (the workers must see the model "
                       "and the plate at the same paths)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="keep the fields a stopped run finished")
    again.add_argument("--overwrite", action="store_true", help="replace the results in --out")
    p.add_argument("--no-heatmap", action="store_true", help="skip plate.png")
    p.add_argument("--show", type=int, default=10, help="wells to print (default 10)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_plate)

    p = sub.add_parser("simulate-plate", help="a simulated plate (WSCNN paper's fields) with the rare phenotype in "
                       "known wells, as well folders, flat files or OME-Zarr",
                       description="A simulated plate of small fields (64x80 px: circles, the rare phenotype, "
                       "among elongated ellipses); train a WSCNN for it on 'rarepheno simulate' data of the same "
                       "fields (benchmarks/plates.py shows how).")
    p.add_argument("out")
    p.add_argument("--form", choices=FORMS, default="folder")
    p.add_argument("--positive", default="B03,C08,E05,F11,G02", help="wells with the rare phenotype")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=12)
    p.add_argument("--fields", type=int, default=3, help="fields per well")
    p.add_argument("--rare-fraction", type=float, default=None,
                   help="fraction of a positive field's objects that are circles (default 0.5)")
    p.add_argument("--ngff", choices=["0.4", "0.5"], default="0.5", help="OME-Zarr version (0.4: zarr v2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_simulate_plate)
