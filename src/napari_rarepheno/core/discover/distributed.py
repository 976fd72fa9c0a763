"""Scoring beyond one process: items spread over a Dask cluster, results streamed back.

A screen of 100,000 fields is more than one workstation. :func:`dask_client` gives a
``dask.distributed`` client: ``workers=N`` starts a local cluster of N worker processes
(one thread each; Dask's nanny gives each worker one OpenMP/MKL thread, so N workers use N
cores), ``scheduler='tcp://host:8786'`` joins a cluster already running (``dask scheduler``
+ ``dask worker`` on other machines, dask-jobqueue on an HPC batch system, dask-kubernetes).
Neither gives ``None``: the caller runs in its own process.

:func:`stream` sends one small task per item (a field's *source*, not its pixels: the worker
reads the image itself from the shared disk or object store) and yields ``(index, result)``
as tasks finish, keeping only a few tasks per worker thread in flight; the caller writes
each result as it comes, so a lost worker loses nothing finished (Dask re-runs the tasks it
held on the other workers). :func:`cached_model` is how a task gets its model: loaded once
per worker thread, kept for every later task (keyed by the file's path, size and mtime).
"""
from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, RarephenoError
from ..progress import CancelToken, report_items

if TYPE_CHECKING:
    from ..io.modelfile import LoadedModel

_MODELS: dict[tuple, object] = {}
_LOCK = threading.Lock()


def model_file(model) -> str:
    """A model file path every worker can load: the path given, or a loaded model's file."""
    from ..io.modelfile import LoadedModel  # deferred: loads torch

    if isinstance(model, LoadedModel):
        if model.path is None:
            raise InputError("scoring on Dask workers needs the model as a file (the workers load it); save it first")
        return str(Path(model.path).resolve())
    p = Path(model)
    if not p.is_file():
        raise InputError("model file not found", p)
    return str(p.resolve())


def cached_model(path: str, kind: str | None = None) -> LoadedModel:
    """The model at ``path``, loaded once per process thread (a worker thread keeps its own
    copy: no two threads share a network) and reused while the file is unchanged."""
    from ..io.modelfile import load_model  # deferred: loads torch

    p = Path(path)
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns, kind, threading.get_ident())
    with _LOCK:
        lm = _MODELS.get(key)
    if lm is None:
        lm = load_model(p, expect_kind=kind)
        with _LOCK:
            for k in [k for k in _MODELS if k[0] == key[0] and k[4] == key[4]]:  # an older version of the file
                del _MODELS[k]
            _MODELS[key] = lm
    return lm


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, *, processes: bool = True,
                threads_per_worker: int = 1) -> Iterator[Any]:
    """A ``distributed.Client``: a local cluster of ``workers`` processes (``processes=False``:
    threads of this process, for tests), or the cluster at ``scheduler``; ``None`` when
    neither is asked for (run here)."""
    if workers is not None and scheduler is not None:
        raise InputError("choose one: --workers N (start a local Dask cluster) or --scheduler ADDRESS (join one)")
    if workers is None and scheduler is None:
        yield None
        return
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    from distributed import Client, LocalCluster  # deferred: loads distributed

    logging.getLogger("distributed").setLevel(logging.ERROR)
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as e:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler} ({type(e).__name__}: {e})") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=processes,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def worker_threads(client) -> int:
    """Worker threads of the cluster now (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def stream(client, func: Callable, items: Sequence, *args, name: str = "task", in_flight: int | None = None,
           cancel: CancelToken | None = None) -> Iterator[tuple[int, Any]]:
    """``func(item, *args)`` for every item on the cluster; yields ``(index, result)`` in the
    order tasks finish. At most ``in_flight`` tasks are submitted at a time (default: 2 per
    worker thread), so results arrive steadily and a huge plate never floods the scheduler.
    ``cancel`` stops submitting and cancels what is pending (what finished was yielded)."""
    from distributed import as_completed  # deferred: loads distributed
    from distributed.client import FutureCancelledError  # deferred: loads distributed

    if not items:
        return
    limit = max(1, in_flight or 2 * worker_threads(client))
    run = uuid.uuid4().hex[:8]
    live: dict[str, tuple[int, Any]] = {}
    todo = iter(range(len(items)))

    def submit(i: int):
        fut = client.submit(func, items[i], *args, key=f"{name}-{run}-{i}", pure=False, retries=2)
        live[fut.key] = (i, fut)
        return fut

    pending = as_completed([submit(i) for _, i in zip(range(limit), todo)])
    try:
        for fut in pending:
            if cancel is not None and cancel.cancelled:
                break
            i, _ = live.pop(fut.key)
            try:
                result = fut.result()
            except FutureCancelledError:
                continue
            except RarephenoError:
                raise
            except Exception as e:  # a worker died too often on this item, or the task failed
                raise RarephenoError(f"{name} {i} failed on the Dask cluster ({type(e).__name__}: {e})") from e
            fut.release()
            nxt = next(todo, None)
            if nxt is not None:
                pending.add(submit(nxt))
            yield i, result
    finally:
        if live:
            client.cancel([f for _, f in live.values()])


# ------------------------------------------------------------------ image files (rank)
def _score_chunk(files: list, model_path: str, batch_size: int, device: str, tta: bool) -> list:
    """What a worker runs for :func:`score_files`: the probabilities of a chunk of files."""
    from .scoring import score_stream  # deferred: loads torch

    lm = cached_model(model_path)
    return [p for _, p in score_stream(lm, files, batch_size=batch_size, device=device, tta=tta)]


def score_files(model, files: Sequence, *, batch_size: int = 16, device: str = "auto", tta: bool = False,
                workers: int | None = None, scheduler: str | None = None, processes: bool = True,
                callback=None, cancel: CancelToken | None = None) -> Iterator[tuple[Any, Any]]:
    """:func:`.scoring.score_stream` on a Dask cluster: ``(file, probabilities)`` for every
    file, in input order. Each task scores ``batch_size`` consecutive files (one batch, as
    one process would batch same-sized images, so the numbers are the same bit for bit);
    results that finish early wait for the ones before them (a few chunks at most)."""
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    path = model_file(model)
    chunks = [list(files[i:i + batch_size]) for i in range(0, len(files), batch_size)]
    waiting: dict[int, list] = {}
    nxt, done = 0, 0
    with dask_client(workers, scheduler, processes=processes) as client:
        if client is None:
            raise InputError("score_files runs on Dask: give workers=N or a scheduler address")
        for i, probs in stream(client, _score_chunk, chunks, path, batch_size, device, tta, name="files",
                               cancel=cancel):
            waiting[i] = probs
            while nxt in waiting:
                yield from zip(chunks[nxt], waiting.pop(nxt))
                done += len(chunks[nxt])
                nxt += 1
                report_items(callback, done, len(files))
