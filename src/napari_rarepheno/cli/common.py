"""Shared CLI plumbing: one-line errors, Ctrl-C as a cancel token, tqdm progress."""
from __future__ import annotations

import json
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import (
    Cancelled,
    InputError,
    OutputError,
    RarephenoError,
    ensure_writable_dir,
    os_error_message,
)
from ..core.inference.segment import (
    CAM_DEFAULTS,
    THRESHOLD_MODES,
    SaliencyConfig,
    default_saliency_config,
)
from ..core.io.atomic import remove_stale_temps, write_text
from ..core.progress import CancelToken, Progress


def fail(message: str, code: int = 2) -> None:
    print(f"rarepheno: error: {message}", file=sys.stderr)
    raise SystemExit(code)


@contextmanager
def ctrl_c_cancels(token: CancelToken):
    """First Ctrl-C asks the engine to stop at the next batch (keeping best and last
    checkpoints); a second one aborts at once."""
    def handler(signum, frame):
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        print("\nrarepheno: stopping after this batch (Ctrl-C again to abort)...", file=sys.stderr)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield token
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


class TrainBar:
    """Progress callback printing a tqdm bar over all batches plus one line per epoch."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar = None

    def __call__(self, p: Progress) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if p.stage == "batch":
            if self.bar is None:
                self.bar = tqdm(total=p.n_epochs * p.n_batches, unit="batch", dynamic_ncols=True,
                                initial=p.epoch * p.n_batches, file=sys.stderr)
            self.bar.update(1)
            self.bar.set_postfix(epoch=p.epoch + 1, loss=f"{p.loss:.4f}")
        elif p.stage == "epoch":
            m = p.metrics
            line = f"epoch {p.epoch}/{p.n_epochs}  train loss {m['train_loss']:.4f} acc {m['train_accuracy']:.3f}"
            if "val_loss" in m:
                line += f"  val loss {m['val_loss']:.4f} acc {m['val_accuracy']:.4f}"
                if m.get("val_input") == "border":
                    line += " (with border margin)"
            line += "  *best*" if m.get("best") else ""
            (self.bar.write if self.bar else print)(line)
        elif p.stage in ("done", "cancelled"):
            if self.bar is not None:
                self.bar.close()
            print(p.message, file=sys.stderr)


def train_summary(res) -> str:
    """The line a ``train`` command ends with: the best epoch's validation numbers, the
    border margin decision (WSCNN) and where the model went."""
    best = next((r for r in res.history if r["epoch"] == res.best_epoch), {})
    val = {k: round(v, 4) if isinstance(v, float) else v for k, v in best.items() if k.startswith("val")}
    line = f"{'stopped' if res.cancelled else 'trained'}: best epoch {res.best_epoch} {val}"
    if "border_margin" in res.meta.training:
        line += f"; border margin at prediction: {res.meta.training['border_margin']} px"
    return line + f" -> {res.best_path}"


def count_bar(desc: str, quiet: bool = False):
    """A :data:`~..core.progress.ProgressCallback` for item reports, drawn as a tqdm bar."""
    state = {}

    def progress(p) -> None:
        if quiet or p.stage != "item":
            return
        done, total = p.batch, p.n_batches
        from tqdm import tqdm

        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, file=sys.stderr)
        bar = state["bar"]
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
    return progress


def write_json(path: str | Path | None, data: dict) -> None:
    """Print ``data`` as JSON and, with ``path``, write it atomically (temp file + rename).
    Callers check ``--overwrite`` before the work (see :func:`refuse_overwrite`)."""

    text = json.dumps(data, indent=2, default=float)
    if path:
        path = Path(path)
        ensure_writable_dir(path.parent)
        write_text(path, text, "the JSON file")
    print(text)


def run_safely(func, args) -> int:
    """Run a sub-command: engine errors and OS errors become one line and exit code 2;
    Ctrl-C (when the command does not turn it into a clean stop itself) exits 130."""

    try:
        return int(func(args) or 0)
    except Cancelled:
        print("rarepheno: stopped", file=sys.stderr)
        return 130
    except RarephenoError as e:
        fail(str(e))
    except FileNotFoundError as e:
        fail(f"{e.filename}: not found")
    except OSError as e:  # permission, read-only disk, disk full, a file where a folder should be...
        fail(f"{e.filename}: {os_error_message(e)}" if e.filename else os_error_message(e))
    except FloatingPointError as e:  # training diverged: the message says what to do
        fail(str(e))
    except MemoryError:
        fail("not enough memory; use smaller or fewer images, a smaller --batch-size, or --tile for big fields")
    except KeyboardInterrupt:
        print("rarepheno: aborted", file=sys.stderr)
        return 130
    return 0


def add_train_args(p, default_epochs: int) -> None:
    """Options every ``train`` sub-command shares (one trainer serves both networks)."""
    p.add_argument("--out", required=True, help="model file to write (.safetensors); beside it go "
                   "MODEL.last.safetensors (resume state) and MODEL.log.csv")
    p.add_argument("--epochs", type=int, default=default_epochs)
    p.add_argument("--recipe", choices=["fast", "paper"], default="fast",
                   help="'paper' reproduces the paper's optimiser and schedule (SGD; for WSCNN much slower: "
                   "at chance for 12 epochs on the paper's simulation); 'fast' (AdamW; WSCNN: peak rate "
                   "held, then decayed; DeepYeast: one-cycle) is the default")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--precision", default="auto", help="auto | fp32 | bf16 | fp16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    p.add_argument("--resume", action="store_true", help="continue from MODEL.last.safetensors")
    p.add_argument("--overwrite", action="store_true", help="replace an existing MODEL and its run files "
                   "(without it, an existing --out is refused unless --resume is given)")
    p.add_argument("--init-from", default=None, help="start from the weights of this model file (fine-tune)")
    p.add_argument("--early-stop", type=int, default=None, help="stop after N epochs without improvement")
    p.add_argument("--quiet", action="store_true")
    add_channel_args(p, names=True)


def tokens(text) -> list[str] | None:
    """A comma-separated option as a list (None when empty)."""
    if text is None or text == "" or isinstance(text, (list, tuple)):
        return list(text) if text else None
    return [t.strip() for t in str(text).split(",") if t.strip()]


def add_channel_args(p, names: bool = False) -> None:
    """--channels and --channel-files (and, for commands that make a model, --channel-names)."""
    p.add_argument("--channels", default=None, help="channels of the files to use, in order, e.g. 0,1 (default: "
                   "the model's; when training, every channel that holds signal)")
    p.add_argument("--channel-files", default=None, help="images stored one file per channel: substrings or "
                   "regexes naming each channel's file, in channel order, e.g. _Crfp,_Cgfp pairs "
                   "X_Crfp_s1.tif with X_Cgfp_s1.tif (default: the model's, if it was trained so)")
    if names:
        p.add_argument("--channel-names", default=None, help="what the channels are, in order, e.g. H2B,tubulin "
                       "(kept in the model; the docks map layers to these names)")


_SEGMENTATION_ARGS = ("sigma", "threshold", "threshold_mode", "min_distance", "min_area", "peak_fraction")


def add_segmentation_args(p) -> None:
    """Saliency -> objects settings (``core.inference.segment.SaliencyConfig``), the same knobs as the
    WSCNN dock's sliders, so objects tuned there can be reproduced in batch."""

    d, c = SaliencyConfig(), CAM_DEFAULTS
    g = p.add_argument_group("object segmentation, WSCNN models (the same settings as the dock's sliders; "
                             "the defaults depend on --localisation)")
    g.add_argument("--sigma", type=float, default=None,
                   help=f"saliency smoothing in px (default {d.sigma:g}; class maps {c['sigma']:g})")
    g.add_argument("--threshold", type=float, default=None,
                   help="object threshold: with the relative mode a fraction of the image's maximum saliency "
                   f"(default {d.threshold:g}; class maps {c['threshold']:g}), with the absolute mode a saliency value")
    g.add_argument("--threshold-mode", choices=THRESHOLD_MODES, default=None,
                   help=f"how --threshold is read (default {d.threshold_mode})")
    g.add_argument("--min-distance", type=int, default=None,
                   help=f"px between object centres (default {d.min_distance})")
    g.add_argument("--min-area", type=int, default=None, help=f"smaller objects are dropped, px (default {d.min_area})")
    g.add_argument("--peak-fraction", type=float, default=None,
                   help="each object keeps the pixels at least this fraction of its own peak; 0: the "
                   f"threshold alone (default {d.peak_fraction:g}; class maps {c['peak_fraction']:g})")


def segmentation_args_given(args) -> list[str]:
    return ["--" + k.replace("_", "-") for k in _SEGMENTATION_ARGS if getattr(args, k, None) is not None]


def saliency_config_from_args(args):
    """The SaliencyConfig the segmentation options ask for, checked before any work starts."""

    mode = "cam" if getattr(args, "localisation", None) == "cam" else "map"
    cfg = default_saliency_config(mode, **{k: getattr(args, k, None) for k in _SEGMENTATION_ARGS})
    cfg.validate()
    return cfg


def train_config_from_args(args):
    """The validated :class:`TrainConfig` of a ``train`` command.

    Everything that can be checked before reading the data is checked here, for both
    networks: the numbers (epochs, batch size...), the device and precision, and the
    output (writable; an existing model or run is never replaced without --overwrite,
    and --resume is the way to continue one)."""
    from ..core.device import resolve_device, resolve_precision  # deferred: loads torch
    from ..core.training.trainer import TrainConfig  # deferred: loads torch

    cfg = TrainConfig(epochs=args.epochs, recipe=args.recipe, batch_size=args.batch_size, lr=args.lr,
                      device=args.device, precision=args.precision, seed=args.seed, threads=args.threads,
                      early_stop=args.early_stop)
    cfg.validate()
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be a positive whole number, got {args.threads}")
    resolve_precision(cfg.precision, resolve_device(cfg.device))
    check_train_out(args)
    return cfg


def check_train_out(args) -> None:
    """Refuse to clobber a previous model or run; say what --resume will do."""
    from ..core.io.modelfile import check_model_output  # deferred: loads torch
    from ..core.training.trainer import checkpoint_paths  # deferred: loads torch

    if getattr(args, "overwrite", False) and getattr(args, "resume", False):
        raise InputError("choose one: --resume (continue the run) or --overwrite (start again)")
    best, last, log = checkpoint_paths(Path(args.out))
    check_model_output(best)
    if getattr(args, "resume", False):
        remove_stale_temps(best, last, log)  # a killed run may leave them; the real files are intact
        if not last.exists():
            print(f"rarepheno: note: nothing to resume ({last} does not exist); starting at epoch 1",
                  file=sys.stderr)
            if best.exists() and not getattr(args, "overwrite", False):
                raise InputError("exists already but has no training state to resume from; pass --overwrite to "
                                 "train a new model in its place, or choose another --out", best)
        return
    if getattr(args, "overwrite", False):
        return
    existing = [p for p in (best, last, log) if p.exists()]
    if existing:
        raise InputError("exists already (a previous model or run); pass --resume to continue that run or "
                         "--overwrite to replace it", existing[0])


def refuse_overwrite(path: Path, overwrite: bool) -> None:
    """Before the work: refuse an existing output without --overwrite, and an unwritable one."""

    path = Path(path)
    if path.is_dir():
        raise OutputError("is a folder; give a file name", path)
    if path.exists() and not overwrite:
        raise OutputError("exists already; pass --overwrite to replace it", path)
    ensure_writable_dir(path.parent, create=False)


def print_rows(rows: list[dict], columns: list[str], n: int) -> None:
    """The first ``n`` rows as an aligned text table (floats to 4 decimals, an ``image`` column
    as its last 60 characters), and how many more there are."""
    def fmt(row: dict, c: str) -> str:
        v = row.get(c, "")
        if c == "image":
            return Path(str(v)).as_posix()[-60:]
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    shown = [[fmt(r, c) for c in columns] for r in rows[:n]]
    if not shown:
        return
    widths = [max(len(c), *(len(s[i]) for s in shown)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for s in shown:
        print("  ".join(v.ljust(w) for v, w in zip(s, widths)))
    if len(rows) > n:
        print(f"... {len(rows) - n} more")
