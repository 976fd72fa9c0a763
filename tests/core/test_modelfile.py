"""Model files: safetensors + JSON, never unpickled, validated on load."""
import json
import pickle
import struct

import pytest
import torch

from napari_rarepheno.core.errors import ModelFileError
from napari_rarepheno.core.io.modelfile import (
    FORMAT_VERSION,
    ModelMeta,
    flatten_state,
    load_model,
    read_meta,
    save_model,
    unflatten_state,
    write_tensors,
)
from napari_rarepheno.core.nets.registry import config_to_dict
from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig


def _meta(cfg):
    return ModelMeta("wscnn", config_to_dict(cfg), ["negative", "positive"], [0, 1],
                     {"mean": [0.1, 0.2], "std": [1.0, 2.0]}, {"best_epoch": 3})


def test_round_trip(tmp_path):
    cfg = WSCNNConfig(in_channels=2, depth=6)
    m = WSCNN(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    path = save_model(tmp_path / "m.safetensors", m, _meta(cfg))
    lm = load_model(path)
    assert lm.meta.class_names == ["negative", "positive"]
    assert lm.meta.channels == [0, 1]
    assert lm.model.config == cfg
    for (k, a), (_, b) in zip(m.state_dict().items(), lm.model.state_dict().items()):
        assert torch.equal(a, b), k
    assert read_meta(path).training["best_epoch"] == 3


def test_pickle_is_refused_without_executing(tmp_path):
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "model.safetensors"
    bad.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(bad)
    torch.save({"w": torch.zeros(2)}, tmp_path / "t.safetensors")
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(tmp_path / "t.safetensors")
    assert not marker.exists()


def test_truncated_and_wrong_kind(tmp_path):
    cfg = WSCNNConfig()
    path = save_model(tmp_path / "m.safetensors", WSCNN(cfg), _meta(cfg))
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated|corrupt"):
        load_model(tmp_path / "cut.safetensors")
    with pytest.raises(ModelFileError, match="deepyeast model is needed"):
        load_model(path, expect_kind="deepyeast")


def test_newer_version_and_shape_mismatch(tmp_path):
    cfg = WSCNNConfig()
    meta = _meta(cfg)
    meta.format_version = FORMAT_VERSION + 1
    p = save_model(tmp_path / "new.safetensors", WSCNN(cfg), meta)
    with pytest.raises(ModelFileError, match="newer"):
        load_model(p)
    meta = _meta(WSCNNConfig(in_channels=3))  # config says 3 channels, weights have 1
    p = save_model(tmp_path / "mismatch.safetensors", WSCNN(cfg), meta)
    with pytest.raises(ModelFileError, match="shape mismatch"):
        load_model(p)


def test_plain_safetensors_without_metadata(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(3)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ModelFileError, match="not a napari-rarepheno model"):
        load_model(tmp_path / "x.safetensors")


def test_nested_state_round_trip(tmp_path):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.randn(3, 2))], lr=0.1)
    opt.param_groups[0]["params"][0].grad = torch.ones(3, 2)
    opt.step()
    tensors = {}
    skel = flatten_state(opt.state_dict(), "opt", tensors)
    write_tensors(tmp_path / "s.safetensors", tensors, {"skel": skel})
    back = unflatten_state(json.loads(json.dumps(skel)), tensors)
    a, b = opt.state_dict(), back
    assert a["param_groups"][0]["lr"] == b["param_groups"][0]["lr"]
    assert torch.equal(a["state"][0]["exp_avg"], b["state"][0]["exp_avg"])
    assert float(a["state"][0]["step"]) == float(b["state"][0]["step"])


def test_not_safetensors_header(tmp_path):
    p = tmp_path / "junk.safetensors"
    p.write_bytes(struct.pack("<Q", 10 ** 12) + b"{}")
    with pytest.raises(ModelFileError, match="bad header|truncated"):
        load_model(p)
