"""``rarepheno export MODEL --bioimageio OUT.zip``: a model for other tools (``core.export``)."""
from __future__ import annotations

import sys

from .common import refuse_overwrite, tokens


def cmd_export(args) -> int:
    from ..core.export.bioimageio import export_bioimageio  # deferred: loads torch

    refuse_overwrite(args.bioimageio, args.overwrite)
    res = export_bioimageio(args.model, args.bioimageio, sample=args.sample, name=args.name,
                            authors=tokens(args.authors), license=args.license,
                            class_maps=not args.no_class_maps, overwrite=args.overwrite, check=not args.no_check)
    if not args.quiet:
        print(f"{res.kind} model, bioimage.io format {res.format_version}: outputs {', '.join(res.outputs)}; "
              f"test input {res.test_input_shape}", file=sys.stderr)
        for note in res.notes:
            print(f"note: {note}", file=sys.stderr)
    checked = "not tested (--no-check)" if res.check is None else "bioimageio test: passed"
    print(f"wrote {res.path} ({len(res.files)} files; {checked})")
    return 0


def add_parser(sub, train_sub) -> None:
    p = sub.add_parser("export", help="package a model for other tools (bioimage.io model format)",
                       description="Write a WSCNN or DeepYeast model as a bioimage.io model package (a .zip in the "
                       "current bioimage.io model format: rdf.yaml, PyTorch weights, the network's source, the "
                       "model's normalisation as preprocessing, a test input with napari-rarepheno's own outputs "
                       "for it, a cover image and a README). Before the file is written, bioimage.io's own test "
                       "(bioimageio.core, the same as `bioimageio test OUT.zip`) runs on it offline; a package "
                       "that fails it is not written.")
    p.add_argument("model", help="model file (.safetensors): WSCNN or DeepYeast")
    p.add_argument("--bioimageio", required=True, metavar="OUT.zip", help="the bioimage.io package to write")
    p.add_argument("--sample", default=None, metavar="IMAGE",
                   help="an image to use as the test input (WSCNN: one image; DeepYeast: one single-cell crop; "
                   "read like any input, the model's channels selected); default: a small synthetic one")
    p.add_argument("--name", default=None, help="the model's name on bioimage.io (default: from the file name)")
    p.add_argument("--authors", default=None, help="who to contact about the model, comma-separated "
                   "(default: this computer's user name)")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX licence of the weights (default CC-BY-4.0)")
    p.add_argument("--no-class-maps", action="store_true",
                   help="WSCNN: output the class probabilities only (default: also the class maps)")
    p.add_argument("--no-check", action="store_true", help="skip bioimage.io's test of the package")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT.zip")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_export)
