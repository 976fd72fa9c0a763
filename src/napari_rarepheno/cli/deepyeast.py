"""``rarepheno simulate-yeast | train deepyeast | baseline | transfer | cells | explore``.

``evaluate`` and ``predict`` (defined with the WSCNN commands) dispatch on the model
type; this module adds the crop options DeepYeast models need to those two parsers.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.deepyeast.baseline import run_baseline, run_transfer
from ..core.deepyeast.explore import explore
from ..core.errors import InputError
from ..core.io.folders import parse_channels
from ..core.io.images import read_image, select_channels, write_tiff
from ..core.io.tables import write_csv
from ..core.progress import CancelToken
from .common import (
    TrainBar,
    add_channel_args,
    add_train_args,
    count_bar,
    ctrl_c_cancels,
    refuse_overwrite,
    tokens,
    train_config_from_args,
    train_summary,
    write_json,
)


def crop_options(args, **overrides):
    """DeepYeastOptions from the crop options of a command (missing options keep their defaults)."""
    from ..core.deepyeast.data import DeepYeastOptions  # deferred: loads torch

    g = lambda k: getattr(args, k, None)  # noqa: E731
    clip = tokens(g("clip_percentiles"))
    if clip is not None and len(clip) != 2:
        raise InputError(f"--clip-percentiles needs two numbers like 1,99.8, got {g('clip_percentiles')!r}")
    opts = DeepYeastOptions(channels=parse_channels(g("channels")), channel_files=tokens(g("channel_files")),
                            group_regex=g("group_regex"), groups_csv=g("groups_csv"), classes=tokens(g("classes")),
                            clip_percentiles=tuple(float(c) for c in clip) if clip else None,
                            channel_names=tokens(g("channel_names")))
    for k, v in overrides.items():
        setattr(opts, k, v)
    return opts


def cmd_simulate_yeast(args) -> int:
    from ..core.datasets.yeast import (  # deferred: loads scipy
        YeastConfig,
        simulate_yeast,
    )

    cfg = YeastConfig(height=args.size, width=args.size)
    res = simulate_yeast(Path(args.data), n_proteins=args.n_proteins, fields_per_protein=args.fields_per_protein,
                         seed=args.seed, cfg=cfg, overwrite=args.overwrite,
                         callback=count_bar("fields", args.quiet))
    print(f"wrote {args.data}: {res['n_fields']} field(s), {res['n_cells']} cells of {len(res['proteins'])} "
          f"protein(s) -> {args.data}/crops/<class>/, {args.data}/fields/")
    return 0


def cmd_train_deepyeast(args) -> int:
    from ..core.deepyeast.train import train_deepyeast  # deferred: loads torch
    from ..core.training.augment import AugmentConfig  # deferred: loads torch

    split = None if args.val_split == "none" else args.val_split
    opts = crop_options(args)
    opts.val_split, opts.val_fraction, opts.width = split, args.val_fraction, args.width
    opts.crop_scale = None if args.crop_scale == "none" else args.crop_scale
    opts.smooth = args.smooth
    opts.augment = AugmentConfig.none() if args.no_augment else \
        AugmentConfig.deepyeast().with_intensity(args.intensity_augment)
    cfg = train_config_from_args(args)
    with ctrl_c_cancels(CancelToken()) as token:
        res = train_deepyeast(args.train, args.out, opts, cfg, val_dir=args.val, callback=TrainBar(args.quiet),
                              cancel=token, resume=args.resume, init_from=args.init_from,
                              load_callback=count_bar("loading crops", args.quiet))
    print(train_summary(res))
    return 130 if res.cancelled else 0


def cmd_baseline(args) -> int:
    from ..core.classic.classifiers import (
        ForestConfig,  # deferred: loads scipy, skimage
    )
    from ..core.deepyeast.data import load_crops  # deferred: loads torch

    if args.json:  # before the work, not after it
        refuse_overwrite(Path(args.json), args.overwrite)
    opts = crop_options(args)
    train = load_crops(args.train, opts, count_bar("loading train", args.quiet))
    test = load_crops(args.test, opts, count_bar("loading test", args.quiet))
    forest = ForestConfig(seed=args.seed)
    if args.n_estimators:
        forest.n_estimators = tuple(int(t) for t in args.n_estimators.split(",") if t.strip())
    res = run_baseline(train, test, forest=forest, marker_channel=args.marker_channel,
                       protein_channel=args.protein_channel)
    write_json(args.json, res)
    return 0


def cmd_transfer(args) -> int:
    from ..core.deepyeast.classify import model_options  # deferred: loads torch
    from ..core.deepyeast.data import load_crops  # deferred: loads torch
    from ..core.io.modelfile import as_loaded  # deferred: loads torch

    if args.json:
        refuse_overwrite(Path(args.json), args.overwrite)
    lm = as_loaded(args.model, "deepyeast")
    opts = model_options(lm, crop_options(args))
    opts.model_classes = None  # the new classes are named by the folders / file, not by the model
    train = load_crops(args.train, opts, count_bar("loading train", args.quiet))
    test = load_crops(args.test, opts, count_bar("loading test", args.quiet))
    shots = [int(s) for s in args.shots.split(",") if s.strip()]
    res = run_transfer(lm, train, test, shots, layer=args.layer, head=args.head, repeats=args.repeats,
                       seed=args.seed, device=args.device, hand=not args.no_hand,
                       marker_channel=args.marker_channel, protein_channel=args.protein_channel)
    write_json(args.json, res)
    return 0


def cmd_cells(args) -> int:
    import numpy as np

    from ..core.cells.crops import crops_from_labels  # deferred: loads scipy
    from ..core.cells.segment import (  # deferred: loads scipy
        cells_from_labels,
        segment_field,
    )

    field = read_image(args.field, as_float=False)
    if not 0 <= args.channel < field.shape[0]:
        raise InputError(f"--channel {args.channel} is out of range: the image has {field.shape[0]} "
                         f"channel(s) (0..{field.shape[0] - 1})", args.field)
    out = Path(args.out)
    refuse_overwrite(out / "cells.csv", args.overwrite)
    if args.labels:
        labels = read_image(args.labels, as_float=False)[0].astype(np.int64)
    else:
        seg = segment_field(field[args.channel], method=args.method, min_area=args.min_area, diameter=args.diameter)
        labels = seg.labels
        print(f"cell diameter {seg.diameter:.1f} px ({'measured' if seg.estimated else 'given'}); smoothing "
              f"{seg.smooth_sigma:.1f} px, seeds {seg.min_distance} px apart, smallest cell {seg.min_area} px",
              file=sys.stderr)
    crops, ids, _ = crops_from_labels(select_channels(field, parse_channels(args.channels), args.field), labels,
                                      size=args.size)
    table = cells_from_labels(labels)
    write_tiff(out / "labels.tif", labels.astype(np.uint16 if labels.max() < 65536 else np.uint32), axes="YX",
               overwrite=True)
    rows = [{"id": int(i), "centroid_y": round(float(y), 3), "centroid_x": round(float(x), 3), "area": int(a),
             "crop": f"crops/{Path(args.field).stem}_{int(i):04d}.tif"}
            for i, y, x, a in zip(table["id"], table["centroid_y"], table["centroid_x"], table["area"])]
    (out / "crops").mkdir(parents=True, exist_ok=True)
    for row, crop in zip(rows, crops):
        write_tiff(out / row["crop"], np.ascontiguousarray(crop), axes="CYX", overwrite=True)
    write_csv(out / "cells.csv", rows, what="the cell table")
    print(f"{len(rows)} cell(s) -> {out}/labels.tif, {out}/cells.csv, {out}/crops/")
    return 0


def cmd_explore(args) -> int:
    from ..core.deepyeast.classify import model_options  # deferred: loads torch
    from ..core.deepyeast.data import align_labels, load_crops  # deferred: loads torch
    from ..core.io.modelfile import as_loaded  # deferred: loads torch

    refuse_overwrite(Path(args.out) / "summary.json", args.overwrite)
    lm = as_loaded(args.model, "deepyeast")
    data = align_labels(load_crops(args.test, model_options(lm, crop_options(args)),
                                   count_bar("loading", args.quiet)), lm.meta.class_names)
    res = explore(lm, data, args.out, layers=[s.strip() for s in args.layers.split(",") if s.strip()],
                  max_points=args.max_points, seed=args.seed, device=args.device)
    print(f"wrote {', '.join(Path(p).name for p in res['files'].values())} to {args.out}", file=sys.stderr)
    print(f"accuracy {res['accuracy']:.4f} on {res['n']} crops")
    return 0


def add_crop_args(p, channels: bool = True) -> None:
    """How crops are read: every command that reads crops takes these (``channels=False``:
    the channel options are there already, from :func:`add_train_args`)."""
    if channels:
        add_channel_args(p)
    p.add_argument("--group-regex", default=None, help="regex whose first group is a file's group (protein); "
                   "default: the file-name prefix before the first '_'")
    p.add_argument("--groups-csv", default=None, help="CSV with columns file,group")
    p.add_argument("--classes", default=None, help="class names for an HDF5 file that stores none (a,b,c)")


def _add_to_existing(sub, name: str, extra) -> None:
    p = sub.choices.get(name)
    if p is None:
        return
    have = {s for a in p._actions for s in a.option_strings}
    for flags, kw in extra:
        if not have & set(flags):
            p.add_argument(*flags, **kw)


def add_parser(sub, train_sub) -> None:
    p = sub.add_parser("simulate-yeast", help="synthetic two-channel yeast fields and crops (12 classes)")
    p.add_argument("data")
    p.add_argument("--n-proteins", type=int, default=24, help="one field set per protein; class = protein %% 12")
    p.add_argument("--fields-per-protein", type=int, default=1)
    p.add_argument("--size", type=int, default=512, help="field side in px")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_simulate_yeast)

    p = train_sub.add_parser("deepyeast", help="per-cell localization classifier on class folders of crops")
    p.add_argument("train", help="TRAIN/<class>/<crop files> or a DeepLoc .h5 file")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--val", default=None, help="validation crops (same layout as TRAIN)")
    g.add_argument("--val-split", choices=["position", "random", "none"], default="position",
                   help="without --val: hold out whole positions/regions/groups (default), random cells, or none")
    p.add_argument("--val-fraction", type=float, default=0.15)
    add_train_args(p, default_epochs=40)
    add_crop_args(p, channels=False)
    p.add_argument("--clip-percentiles", default=None, help="per-channel clipping before normalisation, "
                   "e.g. 1,99.8 (as DeepLoc)")
    p.add_argument("--crop-scale", choices=["none", "percentile"], default="percentile",
                   help="percentile (default): each crop's channels scaled by their own 1st..99.8th percentile "
                   "before the stored statistics, so brightness and exposure of other plates do not count; "
                   "none: the paper (intensities as read)")
    p.add_argument("--intensity-augment", action=argparse.BooleanOptionalAction, default=True,
                   help="vary gain, offset, gamma, saturation, blur and noise while training (default: yes), "
                   "for crops from other plates, microscopes and raw fields")
    p.add_argument("--smooth", type=float, default=1.0, help="Gaussian smoothing (px) of every crop before "
                   "scaling, stored in the model: evens out camera noise, which curated crops and raw fields "
                   "differ by (default 1; 0 with --crop-scale none for the paper)")
    p.add_argument("--width", type=float, default=1.0, help="scale every layer's width (1 = the paper)")
    p.add_argument("--no-augment", action="store_true")
    p.set_defaults(func=cmd_train_deepyeast)

    for name, helptext in (("baseline", "random forest on hand-made features (the paper's baseline), JSON"),
                           ("transfer", "few-shot curve: network features vs hand-made features, JSON")):
        p = sub.add_parser(name, help=helptext)
        if name == "transfer":
            p.add_argument("model")
        p.add_argument("train")
        p.add_argument("test")
        p.add_argument("--json", default=None, help="also write the JSON here")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
        p.add_argument("--marker-channel", type=int, default=0, help="cell/nucleus marker (cell mask)")
        p.add_argument("--protein-channel", type=int, default=None, help="default: 1 (or 0 for one channel)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--quiet", action="store_true")
        add_crop_args(p)
        if name == "baseline":
            p.add_argument("--n-estimators", default=None, help="tree counts to try, e.g. 100,300 (the default)")
        if name == "transfer":
            p.add_argument("--shots", default="1,3,5,10,25,50")
            p.add_argument("--layer", default="fc1", help="conv1..conv8, fc1, fc2 or logits")
            p.add_argument("--head", choices=["forest", "logreg"], default="forest")
            p.add_argument("--repeats", type=int, default=3)
            p.add_argument("--no-hand", action="store_true", help="skip the hand-made-feature curve")
            p.add_argument("--device", default="auto")
        p.set_defaults(func=cmd_baseline if name == "baseline" else cmd_transfer)

    p = sub.add_parser("cells", help="segment a field and cut one centred crop per cell")
    p.add_argument("field")
    p.add_argument("--channel", type=int, required=True, help="channel to segment (cells or nuclei)")
    p.add_argument("--out", required=True)
    p.add_argument("--labels", default=None, help="use this labels image instead of segmenting")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--diameter", type=float, default=None, help="typical cell (nucleus) diameter in px; "
                   "smoothing, seeds and the smallest cell follow from it (default: measured from the image)")
    p.add_argument("--min-area", type=int, default=None, help="smallest cell in px (default: 15%% of a cell)")
    p.add_argument("--method", choices=["otsu", "li"], default="otsu")
    p.add_argument("--overwrite", action="store_true")
    add_channel_args(p)
    p.set_defaults(func=cmd_cells)

    p = sub.add_parser("explore", help="t-SNE of layer outputs, confusion matrix, per-class precision/recall")
    p.add_argument("model")
    p.add_argument("test")
    p.add_argument("--out", required=True)
    p.add_argument("--layers", default="fc1", help="comma-separated: conv1..conv8, fc1, fc2, logits")
    p.add_argument("--max-points", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --out")
    p.add_argument("--quiet", action="store_true")
    add_crop_args(p)
    p.set_defaults(func=cmd_explore)

    crop_opts = [(("--group-regex",), dict(default=None, help="DeepYeast: regex for a file's group (protein)")),
                 (("--groups-csv",), dict(default=None, help="DeepYeast: CSV file,group")),
                 (("--classes",), dict(default=None, help="DeepYeast: class names for an HDF5 without them"))]
    _add_to_existing(sub, "evaluate", crop_opts)
    _add_to_existing(sub, "predict", crop_opts + [
        (("--segment-channel",), dict(type=int, default=0, help="DeepYeast fields: channel to segment")),
        (("--diameter",), dict(type=float, default=None, help="DeepYeast fields: typical cell diameter in px "
                               "(default: measured from each field)")),
        (("--as",), dict(dest="as_", choices=["auto", "crops", "fields"], default="auto",
                         help="DeepYeast: treat loose images as crops or fields (auto: by size)"))])
