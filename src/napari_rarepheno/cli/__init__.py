"""The ``rarepheno`` command: a thin layer over ``napari_rarepheno.core``.

Each sub-command lives with its topic (``wscnn.py``, ``deepyeast.py``, ...) and
registers itself through an ``add_parser(subparsers)`` function.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from .common import run_safely

_MODULES = ("wscnn", "deepyeast", "discover", "plates", "export", "demo")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rarepheno", description="Rare-phenotype discovery in microscopy screens "
                                "(WSCNN, DeepYeast) - the engine behind the napari-rarepheno plugin.")
    p.add_argument("--version", action="version", version=f"napari-rarepheno {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    train = sub.add_parser("train", help="train a network (wscnn or deepyeast)")
    train_sub = train.add_subparsers(dest="network", metavar="NETWORK")
    train_sub.required = True
    for name in _MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{name}":
                continue
            raise
        mod.add_parser(sub, train_sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_safely(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
