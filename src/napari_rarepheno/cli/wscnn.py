"""``rarepheno simulate | mosaic | train wscnn | evaluate | predict | info``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.datasets.mosaic import MosaicConfig, build_mosaics
from ..core.datasets.synthetic import SimConfig, simulate
from ..core.errors import InputError
from ..core.io.folders import parse_channels
from ..core.progress import CancelToken
from ..core.wscnn.predict_files import predict_wscnn_files
from .common import (
    TrainBar,
    add_channel_args,
    add_segmentation_args,
    add_train_args,
    count_bar,
    ctrl_c_cancels,
    refuse_overwrite,
    saliency_config_from_args,
    segmentation_args_given,
    tokens,
    train_config_from_args,
    train_summary,
    write_json,
)
from .deepyeast import crop_options


def _range(text: str) -> tuple[int, int]:
    a, _, b = text.partition("-")
    return int(a), int(b or a)


def _mode(localisation: str) -> str:
    return "cam" if localisation == "cam" else "map"


def cmd_simulate(args) -> int:
    cfg = SimConfig(n_per_class=args.n_per_class, rare_fraction=args.rare_fraction, seed=args.seed)
    summary = simulate(Path(args.data), cfg, overwrite=args.overwrite)
    print(f"wrote {args.data}: {summary}")
    return 0


def cmd_mosaic(args) -> int:
    gh, _, gw = args.grid.partition("x")
    cfg = MosaicConfig(rare=tuple(args.rare.split(",")), common=tuple(args.common.split(",")),
                       grid=(int(gh), int(gw or gh)), rare_per_positive=_range(args.rare_per_positive),
                       n_per_class=args.n_per_class, seed=args.seed,
                       channel_names=tuple(tokens(args.channel_names)) if args.channel_names else None)
    summary = build_mosaics(Path(args.crops), Path(args.data), cfg, overwrite=args.overwrite)
    print(f"wrote {args.data}: {summary}")
    return 0


def cmd_train_wscnn(args) -> int:
    from ..core.wscnn.train import WSCNNOptions, train_wscnn  # deferred: loads torch

    opts = WSCNNOptions(depth=args.depth, head=args.head, conv2_kernel=args.conv2_kernel,
                        channels=parse_channels(args.channels), pool_first=args.pool_first,
                        channel_files=tokens(args.channel_files), channel_names=tokens(args.channel_names))
    opts.scale = None if args.scale == "none" else args.scale
    if args.no_augment:
        from ..core.training.augment import AugmentConfig  # deferred: loads torch
        opts.augment = AugmentConfig.none()
    elif args.intensity_augment:
        opts.augment = opts.augment.with_intensity()
    cfg = train_config_from_args(args)
    with ctrl_c_cancels(CancelToken()) as token:
        res = train_wscnn(args.data, args.out, opts, cfg, callback=TrainBar(args.quiet), cancel=token,
                          resume=args.resume, init_from=args.init_from,
                          load_callback=count_bar("loading images", args.quiet))
    print(train_summary(res))
    return 130 if res.cancelled else 0


def _no_segmentation_args(args, command: str) -> None:
    given = segmentation_args_given(args)
    if given:
        raise InputError(f"{', '.join(given)}: object segmentation applies to WSCNN models; "
                         f"{args.model} is a DeepYeast model ({command} classifies its cells)")


def cmd_evaluate(args) -> int:
    from ..core.io.modelfile import read_meta  # deferred: loads torch

    meta = read_meta(args.model)
    if args.json:  # before the work, not after it
        refuse_overwrite(Path(args.json), args.overwrite)
    if meta.kind == "wscnn":
        from ..core.wscnn.evaluate import evaluate_wscnn  # deferred: loads torch

        res = evaluate_wscnn(args.model, args.test, device=args.device, callback=count_bar("evaluating", args.quiet),
                             channels=parse_channels(args.channels), saliency_config=saliency_config_from_args(args),
                             channel_files=tokens(args.channel_files), saliency_mode=_mode(args.localisation))
        if not args.per_image:
            for k in ("probabilities", "images", "labels"):
                res.pop(k, None)
    else:
        from ..core.deepyeast.evaluate import (
            evaluate_deepyeast,  # deferred: loads scipy, torch
        )

        _no_segmentation_args(args, "evaluate")
        res = evaluate_deepyeast(args.model, args.test, device=args.device, opts=crop_options(args))
    write_json(args.json, res)
    return 0


def cmd_predict(args) -> int:
    from ..core.io.modelfile import read_meta  # deferred: loads torch

    meta = read_meta(args.model)
    if meta.kind == "wscnn":
        predict_wscnn_files(args.model, [Path(p) for p in args.inputs], Path(args.out), device=args.device,
                            tile=args.tile, overwrite=args.overwrite, resume=args.resume,
                            saliency_config=saliency_config_from_args(args),
                            channels=parse_channels(args.channels), channel_files=tokens(args.channel_files),
                            saliency_mode=_mode(args.localisation), precision=args.precision,
                            callback=count_bar("predicting", args.quiet))
    else:
        from ..core.deepyeast.predict_files import (
            predict_deepyeast_files,  # deferred: loads scipy, torch
        )

        _no_segmentation_args(args, "predict")
        predict_deepyeast_files(args.model, args.inputs, args.out, opts=crop_options(args), device=args.device,
                                treat_as=args.as_, segment_channel=args.segment_channel,
                                diameter=args.diameter,
                                overwrite=args.overwrite)
    print(f"wrote {args.out}/predictions.csv", file=sys.stderr)
    return 0


def cmd_info(args) -> int:
    from ..core.io.modelfile import read_meta  # deferred: loads torch

    write_json(None, read_meta(args.model).__dict__)
    return 0


def add_parser(sub, train_sub) -> None:
    p = sub.add_parser("simulate", help="the WSCNN paper's simulated data (ellipses with rare circles)")
    p.add_argument("data")
    p.add_argument("--n-per-class", type=int, default=2000, help="images per class over all three splits")
    p.add_argument("--rare-fraction", type=float, default=0.1, help="0.1 = Sim Data 1, 0.2 = Sim Data 2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("mosaic", help="weakly labeled fields tiled from per-cell crop folders")
    p.add_argument("crops")
    p.add_argument("data")
    p.add_argument("--rare", required=True, help="comma-separated rare classes, e.g. meta,pro")
    p.add_argument("--common", required=True, help="comma-separated common classes, e.g. inter")
    p.add_argument("--grid", default="4x4")
    p.add_argument("--rare-per-positive", default="1-3")
    p.add_argument("--n-per-class", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channel-names", default=None, help="what the crops' channels are, e.g. H2B,tubulin (kept "
                   "in mosaic.json and by the models trained on the mosaics)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_mosaic)

    p = train_sub.add_parser("wscnn", help="weakly supervised CNN from image-level labels")
    p.add_argument("data", help="DATA/{train,val,test}/{negative,positive}/")
    add_train_args(p, default_epochs=20)
    p.add_argument("--depth", type=int, choices=[4, 6], default=4)
    p.add_argument("--head", choices=["max", "avg", "fc"], default="max")
    p.add_argument("--conv2-kernel", type=int, choices=[3, 5, 7], default=3, help="7 for cell images")
    p.add_argument("--pool-first", action=argparse.BooleanOptionalAction, default=None,
                   help="max-pool right after each pooled convolution, then BN + ReLU (~24%% faster CPU "
                   "training, the same function where BN scales are positive); default: yes, except "
                   "with --recipe paper (conv -> BN -> ReLU -> pool)")
    p.add_argument("--scale", choices=["none", "percentile"], default="none",
                   help="percentile: each image's channels scaled by their own 1st..99.8th percentile before the "
                   "stored statistics (brightness of other plates does not count); none (default): the paper")
    p.add_argument("--intensity-augment", action=argparse.BooleanOptionalAction, default=False,
                   help="vary gain, offset, gamma, saturation, blur and noise while training")
    p.add_argument("--no-augment", action="store_true")
    p.set_defaults(func=cmd_train_wscnn)

    p = sub.add_parser("evaluate", help="metrics of a model on a test folder (JSON)")
    p.add_argument("model")
    p.add_argument("test")
    p.add_argument("--json", default=None, help="also write the JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--device", default="auto")
    p.add_argument("--per-image", action="store_true", help="include per-image probabilities")
    p.add_argument("--localisation", choices=["gradient", "cam"], default="gradient",
                   help="WSCNN: gradient saliency (the paper's, default) or the class maps' positive evidence "
                   "(forward only)")
    p.add_argument("--quiet", action="store_true")
    add_channel_args(p)
    add_segmentation_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict images/folders; writes predictions.csv, saliency and masks")
    p.add_argument("model")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--tile", type=int, default=None, help="tile size for big fields (px)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--resume", action="store_true", help="skip images already in predictions.csv")
    p.add_argument("--localisation", choices=["gradient", "cam"], default="cam",
                   help="WSCNN: the class maps' positive evidence, upsampled (default: forward only, ~half the "
                   "work) or gradient saliency (the paper's)")
    p.add_argument("--precision", default="auto", help="auto (bf16 where the CPU or GPU computes it in hardware), "
                   "fp32 or bf16")
    p.add_argument("--quiet", action="store_true")
    add_channel_args(p)
    add_segmentation_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("info", help="print a model file's metadata")
    p.add_argument("model")
    p.set_defaults(func=cmd_info)
