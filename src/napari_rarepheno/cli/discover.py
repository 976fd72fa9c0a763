"""``rarepheno rank | mislabels | apply-decisions | undo-decisions | gallery | name-cluster | retrain |
similar | suggest``."""
from __future__ import annotations

import sys
from pathlib import Path

from ..core.discover.decisions import apply_decisions, plan_rows, undo
from ..core.discover.retraining import retrain
from ..core.discover.similar import FEATURES, more_like_this
from ..core.discover.suggest import suggest_labels
from ..core.inference.segment import SaliencyConfig
from ..core.io.folders import parse_channels
from ..core.progress import CancelToken
from .common import TrainBar, count_bar, ctrl_c_cancels, fail, print_rows, refuse_overwrite, tokens


def cmd_rank(args) -> int:
    from ..core.discover.rank import rank_images  # deferred: loads torch

    with ctrl_c_cancels(CancelToken()) as token:
        rows = rank_images(args.model, args.inputs, args.out, score=args.score, target=args.target,
                           batch_size=args.batch_size, device=args.device, tta=args.tta, resume=args.resume,
                           overwrite=args.overwrite, callback=count_bar("scoring", args.quiet), cancel=token,
                           channel_files=tokens(args.channel_files), workers=args.workers,
                           scheduler=args.scheduler)
    if not args.quiet:
        cols = ["rank", "image", "label", "predicted", "score"]
        print_rows(rows, cols, args.show)
    print(f"wrote {args.out} ({len(rows)} image(s){', stopped early' if token.cancelled else ''})", file=sys.stderr)
    return 130 if token.cancelled else 0


def cmd_mislabels(args) -> int:
    from ..core.discover.rank import find_mislabels  # deferred: loads torch

    with ctrl_c_cancels(CancelToken()) as token:
        rows = find_mislabels(args.model, args.labeled, args.out, top=args.top, batch_size=args.batch_size,
                              device=args.device, tta=args.tta, resume=args.resume, overwrite=args.overwrite,
                              callback=count_bar("scoring", args.quiet), cancel=token,
                              channel_files=tokens(args.channel_files))
    if not args.quiet:
        print_rows(rows, ["rank", "image", "label", "suggested", "suspicion"], args.show)
    print(f"wrote {args.out}: {len(rows)} suspected mislabel(s); review them in the Discover dock or write a "
          "decisions CSV (image,current_label,suggested_label,decision,timestamp) for apply-decisions",
          file=sys.stderr)
    return 130 if token.cancelled else 0


def _print_plan(plan) -> None:
    rows = [dict(r, src=Path(r["src"]).name, dst="/".join(Path(r["dst"]).parts[-2:])) for r in plan_rows(plan)]
    print_rows(rows, ["status", "src", "dst", "reason"], 10_000)


def cmd_apply(args) -> int:
    plan = apply_decisions(args.data, args.decisions, dry_run=not args.apply, undo_file=args.undo_file)
    _print_plan(plan)
    print(plan.summary(), file=sys.stderr)
    if not args.apply:
        print("preview only: nothing was moved; add --apply to move the files", file=sys.stderr)
        return 1 if plan.errors else 0
    print(f"to undo: rarepheno undo-decisions {plan.undo_file}", file=sys.stderr)
    return 0


def cmd_undo(args) -> int:
    plan = undo(args.undo_file, dry_run=args.dry_run)
    _print_plan(plan)
    print(plan.summary().replace("moved", "moved back"), file=sys.stderr)
    return 0


def cmd_gallery(args) -> int:
    from ..core.discover.gallery import (  # deferred: loads torch
        GalleryConfig,
        build_gallery,
    )
    from ..core.discover.gallery_files import save_gallery  # deferred: loads torch

    out = Path(args.out)
    if (out / "gallery.csv").exists() and not args.overwrite:
        fail(f"{out}: holds a gallery already; use --overwrite to replace it")
    cfg = GalleryConfig(crop_size=args.crop_size, max_per_image=args.per_image, max_crops=args.max_crops,
                        min_probability=args.min_probability, target=args.target, n_clusters=args.clusters,
                        method=args.method, seed=args.seed,
                        saliency=SaliencyConfig(threshold=args.threshold, sigma=args.sigma))
    with ctrl_c_cancels(CancelToken()) as token:
        g = build_gallery(args.model, args.inputs, cfg, device=args.device,
                          callback=count_bar("gallery", args.quiet), cancel=token)
    files = save_gallery(g, out, overwrite=True)
    sizes = {int(k): int((g.clusters == k).sum()) for k in sorted(set(g.clusters.tolist()))}
    print(f"{len(g)} crop(s) from {g.info['n_images']} image(s); cluster sizes {sizes}")
    print(f"wrote {', '.join(p.name for p in files.values())} to {out}", file=sys.stderr)
    return 130 if token.cancelled else 0


def cmd_name_cluster(args) -> int:
    from ..core.discover.gallery_files import (  # deferred: loads torch
        load_gallery,
        name_cluster,
    )

    written = name_cluster(load_gallery(args.gallery), args.cluster, args.name, args.out)
    print(f"wrote {len(written)} crop(s) to {Path(args.out) / args.name}", file=sys.stderr)
    return 0


def cmd_retrain(args) -> int:
    from ..core.training.trainer import TrainConfig  # deferred: loads torch

    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device, seed=args.seed)
    with ctrl_c_cancels(CancelToken()) as token:
        res = retrain(args.model, args.data, args.out, cfg, fine_tune=not args.from_scratch,
                      callback=TrainBar(args.quiet), cancel=token)
    print(f"{'stopped' if res.cancelled else 'retrained'}: best epoch {res.best_epoch} -> {res.best_path}",
          file=sys.stderr)
    return 130 if res.cancelled else 0


def _model_arg(model: str):
    """MODEL as the engine takes it: 'features' (no network yet: hand-made features) or a file."""
    return None if model == FEATURES else model


def cmd_similar(args) -> int:
    refuse_overwrite(Path(args.out), args.overwrite)
    with ctrl_c_cancels(CancelToken()) as token:
        rows = more_like_this(_model_arg(args.model), args.query, args.folder, top=args.top, out=args.out,
                              channel_files=tokens(args.channel_files), channels=parse_channels(args.channels),
                              cache_dir=args.cache, batch_size=args.batch_size, device=args.device,
                              callback=count_bar("embedding", args.quiet), cancel=token)
    if not args.quiet:
        print_rows(rows, ["rank", "image", "label", "distance"], args.show)
    print(f"wrote {args.out} ({len(rows)} nearest cell(s) of {args.folder})", file=sys.stderr)
    return 0


def cmd_suggest(args) -> int:
    refuse_overwrite(Path(args.out), args.overwrite)
    with ctrl_c_cancels(CancelToken()) as token:
        rows = suggest_labels(_model_arg(args.model), args.folder, args.n, labeled=args.labeled, out=args.out,
                              how=args.uncertainty, diversity=args.diversity,
                              channel_files=tokens(args.channel_files), channels=parse_channels(args.channels),
                              cache_dir=args.cache, batch_size=args.batch_size, device=args.device,
                              callback=count_bar("embedding", args.quiet), cancel=token)
    if not args.quiet:
        print_rows(rows, ["rank", "image", "predicted", "uncertainty", "novelty"], args.show)
    print(f"wrote {args.out}: {len(rows)} image(s) to label next", file=sys.stderr)
    return 0


def _pool_args(p) -> None:
    p.add_argument("--channels", default=None, help="channels of the files (default: the model's; with MODEL "
                   "'features': every channel), e.g. 0,1")
    p.add_argument("--channel-files", default=None, help="images stored one file per channel: substrings or "
                   "regexes naming each channel's file, e.g. _Crfp,_Cgfp (default: one file per image)")
    p.add_argument("--cache", default=None, help="index cache folder (default: $RAREPHENO_CACHE/similar or "
                   "~/.cache/napari-rarepheno/similar)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--show", type=int, default=10, help="rows to print")


def _tta(p) -> None:
    p.add_argument("--tta", action="store_true", help="average over flips and quarter turns (8x slower, steadier)")


def _common(p, batch: int | None = 16, batch_help: str = "images scored at once (memory)") -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--batch-size", type=int, default=batch, help=batch_help)
    p.add_argument("--quiet", action="store_true")


def add_parser(sub, train_sub) -> None:
    p = sub.add_parser("rank", help="score every image of a folder and sort (probability or entropy)")
    p.add_argument("model")
    p.add_argument("inputs", nargs="+", help="image files or folders (recursive)")
    p.add_argument("--out", required=True, help="ranking CSV to write")
    p.add_argument("--score", choices=["probability", "entropy"], default="probability",
                   help="probability of --target (default WSCNN positive / DeepYeast top class) or uncertainty")
    p.add_argument("--target", default=None, help="class whose probability is the score")
    p.add_argument("--resume", action="store_true", help="continue a stopped run (OUT.partial.csv)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--show", type=int, default=10, help="rows to print")
    p.add_argument("--channel-files", default=None, help="images stored one file per channel: substrings or "
                   "regexes naming each channel's file, e.g. _Crfp,_Cgfp (default: the model's)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, help="score on a local Dask cluster of N processes")
    where.add_argument("--scheduler", default=None, help="score on the Dask cluster at this address")
    _tta(p)
    _common(p)
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("mislabels", help="images the model places in another class than their folder")
    p.add_argument("model")
    p.add_argument("labeled", help="DATA/train (class folders) or DATA (all splits)")
    p.add_argument("--out", required=True, help="suspects CSV to write")
    p.add_argument("--channel-files", default=None, help="images stored one file per channel (as for rank)")
    p.add_argument("--top", type=int, default=None, help="keep the K most suspicious (default: every image "
                   "the model assigns to another class)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--show", type=int, default=10)
    _tta(p)
    _common(p)
    p.set_defaults(func=cmd_mislabels)

    p = sub.add_parser("apply-decisions", help="preview (default) or apply confirmed relabels: move files")
    p.add_argument("data", help="the data folder the decisions refer to")
    p.add_argument("decisions", help="decisions CSV: image,current_label,suggested_label,decision,timestamp")
    p.add_argument("--apply", action="store_true", help="really move the files (writes an undo file first)")
    p.add_argument("--undo-file", default=None, help="where to write the undo file")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("undo-decisions", help="move files back as recorded in an undo file")
    p.add_argument("undo_file")
    p.add_argument("--dry-run", action="store_true", help="only show what would move back")
    p.set_defaults(func=cmd_undo)

    p = sub.add_parser("gallery", help="crops of salient cells across images, embedded and clustered")
    p.add_argument("model")
    p.add_argument("inputs", nargs="+", help="image files or folders (recursive)")
    p.add_argument("--out", required=True, help="folder for gallery.csv/png, scatter.png, crops.npy")
    p.add_argument("--clusters", type=int, default=5, help="k-means clusters")
    p.add_argument("--method", choices=["kmeans", "hdbscan"], default="kmeans")
    p.add_argument("--crop-size", type=int, default=64)
    p.add_argument("--per-image", type=int, default=3, help="salient cells per image, at most")
    p.add_argument("--max-crops", type=int, default=2000)
    p.add_argument("--min-probability", type=float, default=0.5, help="only images scored at least this")
    p.add_argument("--target", default=None, help="class to explain (default: positive)")
    p.add_argument("--threshold", type=float, default=0.25, help="saliency threshold (fraction of the maximum)")
    p.add_argument("--sigma", type=float, default=2.0, help="saliency smoothing (px)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    _common(p, batch=8)
    p.set_defaults(func=cmd_gallery)

    p = sub.add_parser("name-cluster", help="write a gallery cluster's crops as a new class folder")
    p.add_argument("gallery", help="a folder written by rarepheno gallery")
    p.add_argument("--cluster", type=int, required=True)
    p.add_argument("--name", required=True, help="the new class (folder) name")
    p.add_argument("--out", required=True, help="crops root: crops go to OUT/NAME/")
    p.set_defaults(func=cmd_name_cluster)

    p = sub.add_parser("retrain", help="fine-tune a model on corrected labels or new class folders")
    p.add_argument("model")
    p.add_argument("data", help="WSCNN: DATA with train/ (val/); DeepYeast: class folders of crops")
    p.add_argument("--out", required=True, help="the new model file")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--from-scratch", action="store_true", help="do not start from the model's weights")
    _common(p, batch=None, batch_help="training batch size (default: the recipe's)")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("similar", help="more like this: the cells of a folder nearest to one query cell")
    p.add_argument("model", help="DeepYeast or WSCNN model file, or 'features' (hand-made features, no network)")
    p.add_argument("query", help="the query crop (an image file; with --channel-files one of its channel files)")
    p.add_argument("folder", help="the pool: crops below it, recursively (class subfolders are one pool)")
    p.add_argument("--top", type=int, default=20, help="how many nearest cells (the query itself, if in the "
                   "folder, is the first)")
    p.add_argument("--out", required=True, help="CSV to write: rank, image, distance (cosine), nearest first")
    _pool_args(p)
    _common(p, batch=64, batch_help="crops embedded at once (memory)")
    p.set_defaults(func=cmd_similar)

    p = sub.add_parser("suggest", help="what to label next: uncertain cells, spread over the embedding")
    p.add_argument("model", help="DeepYeast or WSCNN model file, or 'features' (no network: diversity alone)")
    p.add_argument("folder", help="the unlabeled pool: crops below it, recursively")
    p.add_argument("--n", type=int, default=20, help="how many to suggest")
    p.add_argument("--out", required=True, help="CSV to write: rank, image, predicted, uncertainty, margin, "
                   "entropy, novelty")
    p.add_argument("--labeled", default=None, help="class folders of the cells labeled so far (suggestions "
                   "keep away from them)")
    p.add_argument("--uncertainty", choices=["margin", "entropy"], default="margin")
    p.add_argument("--diversity", choices=["kcenter", "none"], default="kcenter",
                   help="kcenter: spread the picks over the embedding; none: most uncertain first")
    _pool_args(p)
    _common(p, batch=64, batch_help="crops embedded at once (memory)")
    p.set_defaults(func=cmd_suggest)
