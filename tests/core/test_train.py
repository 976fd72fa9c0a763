"""The one trainer: learns, checkpoints best and last, resumes exactly, cancels cleanly."""
import copy
import csv
import math

import numpy as np
import pytest
import torch
from helpers import blob_set, make_trainer

from napari_rarepheno.core.errors import InputError
from napari_rarepheno.core.inputs.normalize import Normalization
from napari_rarepheno.core.io.modelfile import ModelMeta, load_model, read_tensors
from napari_rarepheno.core.nets.registry import config_to_dict
from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig
from napari_rarepheno.core.progress import CancelToken
from napari_rarepheno.core.training.augment import AugmentConfig
from napari_rarepheno.core.training.trainer import (
    TrainConfig,
    Trainer,
    _seed_for,
    checkpoint_paths,
    class_weights,
)


def test_learns_trivially_separable_set(tmp_path):
    trainer, data = make_trainer(tmp_path, epochs=6, lr=3e-3)  # a tiny set: few steps, so a larger step
    events = []
    trainer.callback = events.append
    res = trainer.fit(data, blob_set(seed=1))
    assert res.history[-1]["val_accuracy"] == 1.0
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    best, last, log = checkpoint_paths(tmp_path / "model.safetensors")
    assert best.exists() and last.exists() and log.exists()
    rows = list(csv.DictReader(open(log)))
    assert len(rows) == 6 and {"epoch", "train_loss", "val_loss", "val_accuracy", "lr"} <= set(rows[0])
    stages = {e.stage for e in events}
    assert {"batch", "epoch", "done"} <= stages
    batch = next(e for e in events if e.stage == "batch")
    assert batch.n_batches == 4 and math.isfinite(batch.loss) and 0 < batch.fraction <= 1
    lm = load_model(best)
    assert lm.meta.training["best_epoch"] == res.best_epoch


def test_resume_reproduces_uninterrupted_run(tmp_path):
    full, data = make_trainer(tmp_path / "a", epochs=4)
    ref = full.fit(data, blob_set(seed=1))
    # the same run stopped after 2 epochs, then resumed by a new trainer
    part, _ = make_trainer(tmp_path / "b", epochs=4)
    part.callback = lambda p: part.cancel.cancel() if p.stage == "epoch" and p.epoch == 2 else None
    assert part.fit(data, blob_set(seed=1)).cancelled
    resumed, _ = make_trainer(tmp_path / "b", epochs=4)
    res = resumed.fit(data, blob_set(seed=1), resume=True)
    assert resumed.start_epoch == 2
    assert len(res.history) == 4
    for a, b in zip(ref.history, res.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)


def test_cancel_keeps_best_and_last(tmp_path):
    trainer, data = make_trainer(tmp_path, epochs=50)
    token = CancelToken()
    trainer.cancel = token

    def cb(p):
        if p.stage == "epoch" and p.epoch >= 2:
            token.cancel()
    trainer.callback = cb
    res = trainer.fit(data, blob_set(seed=1))
    assert res.cancelled
    assert len(res.history) == 2
    assert res.best_path.exists() and res.last_path.exists()
    _, doc = read_tensors(res.last_path)
    assert doc["train_state"]["epoch"] == 2


def test_bad_config_messages():
    with pytest.raises(InputError, match="epochs"):
        TrainConfig(epochs=0).validate()
    with pytest.raises(InputError, match="batch size"):
        TrainConfig(batch_size=-1).validate()


def test_class_weights_count_a_rare_class_like_a_common_one(tmp_path):
    labels = np.array([0] * 30 + [1] * 6 + [2] * 0 + [3] * 12)
    assert class_weights(labels, 4, "none") is None
    w = class_weights(labels, 4, "balanced").numpy()
    counts = np.array([30, 6, 0, 12])
    assert w[2] == 1.0  # no training images: no effect
    np.testing.assert_allclose((w * counts)[[0, 1, 3]], 48 / 3, rtol=1e-6)  # each class the same total weight
    np.testing.assert_allclose(class_weights(labels, 4, "sqrt").numpy() ** 2, w, rtol=1e-6)
    with pytest.raises(InputError, match="class weights"):
        TrainConfig(class_weights="inverse").validate()
    # the loss uses them: same seeds, an imbalanced set, another first-epoch loss
    losses = {}
    for how in ("none", "balanced"):
        trainer, data = make_trainer(None, epochs=1, class_weights=how)
        keep = np.r_[np.flatnonzero(data.labels == 0), np.flatnonzero(data.labels == 1)[:4]]
        data.images, data.labels, data.paths = data.images[keep], data.labels[keep], [data.paths[i] for i in keep]
        losses[how] = trainer.fit(data).history[0]["train_loss"]
    assert math.isfinite(losses["balanced"]) and abs(losses["balanced"] - losses["none"]) > 1e-4


def test_cuda_requested_without_cuda_is_clear(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the message is for machines without")
    with pytest.raises(InputError, match="cuda.*no CUDA"):
        make_trainer(None, device="cuda")


def test_bf16_matches_fp32_on_tiny_task(tmp_path):
    """The bf16 autocast path (native with AVX-512/AMX, emulated by PyTorch elsewhere) trains
    as well as fp32 on a tiny task."""
    import warnings

    accs = {}
    for prec in ("fp32", "bf16"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "emulated" on CPUs without bf16 instructions
            trainer, data = make_trainer(None, epochs=5, precision=prec)
            res = trainer.fit(data, blob_set(seed=1))
        assert trainer.amp_dtype == (torch.bfloat16 if prec == "bf16" else None)
        accs[prec] = res.history[-1]["val_accuracy"]
    assert accs["bf16"] >= accs["fp32"] - 0.07


def test_bf16_without_cpu_support_warns(monkeypatch):
    from napari_rarepheno.core import device

    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="emulates it"):
        assert device.resolve_precision("bf16", torch.device("cpu")) is torch.bfloat16
    monkeypatch.setattr(device, "cpu_native_bf16", lambda: False)
    assert device.resolve_precision("auto", torch.device("cpu")) is None  # auto never picks emulated bf16


def test_precise_bn_recomputes_statistics_on_unaugmented_images(tmp_path):
    """With the paper's geometric augmentation the running statistics are recomputed after
    each epoch on plain training images (eval-mode outputs then match real images)."""
    data = blob_set(n=24)
    cfg = WSCNNConfig(in_channels=1, widths=(8, 8, 8))
    meta = ModelMeta("wscnn", config_to_dict(cfg), ["negative", "positive"])
    norm = Normalization.fit(data.images)
    torch.manual_seed(0)
    tr = Trainer(WSCNN(cfg), meta, TrainConfig(epochs=1, batch_size=8, seed=0, precision="fp32"),
                 AugmentConfig.wscnn_paper(), norm)
    assert tr.precise_bn_images() == 512
    tr.fit(data)
    bns = [m for m in tr.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    got = [(m.running_mean.clone(), m.running_var.clone()) for m in bns]
    # the same numbers by hand: a cumulative average over the plain images in batches of 8
    ref = copy.deepcopy(tr.model)
    rbns = [m for m in ref.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in rbns:
        m.reset_running_stats()
        m.momentum = None
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(_seed_for(0, 0) + 2))
    x = norm.apply_torch(torch.from_numpy(data.images)[idx]).contiguous(memory_format=torch.channels_last)
    ref.train()
    with torch.no_grad():
        for s in range(0, len(x), 8):
            ref(x[s:s + 8])
    for (mean, var), m in zip(got, rbns):
        torch.testing.assert_close(mean, m.running_mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(var, m.running_var, rtol=1e-4, atol=1e-5)
    assert all(m.momentum == 0.1 for m in bns)  # restored for the next epoch
    # flips only: statistics unchanged by augmentation, nothing recomputed; 0 switches it off
    assert Trainer(WSCNN(cfg), meta, TrainConfig(epochs=1), AugmentConfig(), norm).precise_bn_images() == 0
    assert Trainer(WSCNN(cfg), meta, TrainConfig(epochs=1, precise_bn=0), AugmentConfig.wscnn_paper(),
                   norm).precise_bn_images() == 0


def test_new_wscnn_models_pool_first_except_under_the_paper_recipe(wscnn_data, wscnn_model, tmp_path):
    from napari_rarepheno.core.io.modelfile import read_meta
    from napari_rarepheno.core.wscnn.train import WSCNNOptions, train_wscnn

    assert read_meta(wscnn_model).config["pool_first"] is True  # the default (fast) recipe
    res = train_wscnn(wscnn_data, tmp_path / "paper.safetensors", WSCNNOptions(),
                      TrainConfig(epochs=1, device="cpu", seed=0, batch_size=8, recipe="paper"))
    assert res.model.config.pool_first is False
    assert read_meta(tmp_path / "paper.safetensors").config["pool_first"] is False
    # continuing a model keeps its order whatever the recipe
    res = train_wscnn(wscnn_data, tmp_path / "more.safetensors", WSCNNOptions(),
                      TrainConfig(epochs=1, device="cpu", seed=0, batch_size=8), init_from=tmp_path / "paper.safetensors")
    assert res.model.config.pool_first is False
