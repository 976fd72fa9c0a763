"""No lost work: kill -9 then --resume reproduces the uninterrupted run; Ctrl-C stops cleanly.

Both drive the real ``rarepheno train wscnn`` in a subprocess on the tiny simulated
folder of ``conftest.wscnn_data`` (16 images per class, 96x128 px), one CPU thread each
so that runs are bit-for-bit repeatable, and wait for the first epoch to be checkpointed
by polling ``MODEL.log.csv`` (written after the best and last checkpoints of an epoch).
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from napari_rarepheno.cli import main
from napari_rarepheno.core.io.modelfile import read_tensors
from napari_rarepheno.core.training.trainer import checkpoint_paths

pytestmark = pytest.mark.slow
EPOCHS = 3


def _cmd(data: Path, out: Path, *extra: str, epochs: int = EPOCHS, batch_size: int = 4) -> list[str]:
    return [sys.executable, "-m", "napari_rarepheno.cli", "train", "wscnn", str(data), "--out", str(out),
            "--epochs", str(epochs), "--batch-size", str(batch_size), "--seed", "7", "--threads", "1",
            "--device", "cpu", "--precision", "fp32", "--quiet", *extra]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _rows(log: Path) -> list[dict]:
    try:
        with open(log, newline="") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        return []


def _wait_for_epochs(proc: subprocess.Popen, log: Path, n: int, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while len(_rows(log)) < n:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"training ended (rc {proc.returncode}) before epoch {n} was logged:\n{err[-2000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail(f"no epoch {n} in {log} after {timeout} s")
        time.sleep(0.02)


def _metrics(rows: list[dict]) -> list[dict]:
    return [{k: v if k == "val_input" else float(v) for k, v in r.items() if k != "seconds"} for r in rows]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


def test_kill_9_then_resume_reaches_the_uninterrupted_result(wscnn_data, tmp_path, capsys):
    ref_out, out = tmp_path / "ref" / "m.safetensors", tmp_path / "run" / "m.safetensors"
    best, last, log = checkpoint_paths(out)
    # the reference runs alongside the run that gets killed (each uses one thread)
    ref = subprocess.Popen(_cmd(wscnn_data, ref_out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    victim = subprocess.Popen(_cmd(wscnn_data, out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        _wait_for_epochs(victim, log, 1)
        victim.send_signal(signal.SIGKILL)  # no chance to clean up: like a power cut or the OOM killer
        victim.wait(30)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == -signal.SIGKILL
    # what survived is a complete epoch: the last checkpoint and the log agree
    _, doc = read_tensors(last)
    done = doc["train_state"]["epoch"]
    assert 1 <= done < EPOCHS, "the kill came too late to test anything"
    assert len(_rows(log)) == done and best.exists()

    # starting again without --resume or --overwrite is refused (in-process: no torch start-up)
    with pytest.raises(SystemExit) as e:
        main(_cmd(wscnn_data, out)[3:])
    assert e.value.code == 2 and "pass --resume to continue that run" in capsys.readouterr().err
    resumed = subprocess.run(_cmd(wscnn_data, out, "--resume"), env=_env(), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert ref.wait(300) == 0, ref.stderr.read()[-2000:]

    ref_rows, rows = _rows(checkpoint_paths(ref_out)[2]), _rows(log)
    assert len(rows) == len(ref_rows) == EPOCHS
    for a, b in zip(_metrics(ref_rows), _metrics(rows)):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], str):  # val_input: which presentation of the val images won
                assert b[k] == a[k], (k, a, b)
            else:
                assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-7), (k, a, b)
    # the same best model, weight for weight; and no temp file left by the kill
    ta, da = read_tensors(ref_out)
    tb, db = read_tensors(best)
    assert da["meta"]["training"]["best_epoch"] == db["meta"]["training"]["best_epoch"]
    assert da["meta"]["training"]["border_margin"] == db["meta"]["training"]["border_margin"]
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], rtol=1e-5, atol=1e-6)
    assert _leftovers(out.parent) == []


def test_ctrl_c_stops_at_the_next_batch_and_keeps_best_last_and_log(wscnn_data, tmp_path):
    out = tmp_path / "m.safetensors"
    best, last, log = checkpoint_paths(out)
    # batch size 2: 8 batches per epoch, so "the next batch" comes long before the epoch's end
    proc = subprocess.Popen(_cmd(wscnn_data, out, epochs=50, batch_size=2), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_epochs(proc, log, 1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "stopping after this batch" in stderr
    assert "stopped: best epoch" in stdout
    # epoch 2 was abandoned at a batch boundary, not finished: the files hold epoch 1
    rows = _rows(log)
    _, doc = read_tensors(last)
    assert len(rows) == doc["train_state"]["epoch"] == 1
    assert best.exists()
    assert _leftovers(tmp_path) == []
