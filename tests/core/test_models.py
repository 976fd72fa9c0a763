"""Network shapes, receptive field and the paper's architecture facts."""
import pytest
import torch

from napari_rarepheno.core.nets.deepyeast import DeepYeast, DeepYeastConfig
from napari_rarepheno.core.nets.registry import build_model, count_parameters
from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig


def test_wscnn_paper_shapes():
    m = WSCNN(WSCNNConfig(in_channels=1))
    x = torch.zeros(2, 1, 210, 280)
    maps = m.class_maps(x)
    assert maps.shape == (2, 2, 21, 30)
    assert m.class_map_size(210, 280) == (21, 30)
    assert m(x).shape == (2, 2)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == [11, 3, 5, 5]
    assert [c.out_channels for c in convs] == [50, 100, 100, 2]
    assert [c.padding[0] for c in convs] == [0, 0, 1, 1]
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    assert len(bns) == 3  # BN on all but the last conv


def test_wscnn_receptive_field_matches_gradient():
    m = WSCNN(WSCNNConfig()).eval()
    rf, stride = m.receptive_field()
    assert (rf, stride) == (70, 8)
    torch.manual_seed(0)
    support = torch.zeros(160, 160, dtype=torch.bool)
    for _ in range(8):  # max pooling routes gradients sparsely: union over random inputs
        x = torch.randn(1, 1, 160, 160, requires_grad=True)
        m.class_maps(x)[0, 1, 5, 5].backward()
        support |= x.grad[0, 0].abs() > 0
    nz = torch.nonzero(support)
    extent = int(nz[:, 0].max() - nz[:, 0].min() + 1)
    assert rf - 12 <= extent <= rf


def test_global_max_head_is_max_of_class_map():
    m = WSCNN(WSCNNConfig()).eval()
    x = torch.randn(3, 1, 120, 130)
    maps = m.class_maps(x)
    assert torch.allclose(m(x), maps.amax(dim=(2, 3)))
    avg = WSCNN(WSCNNConfig(head="avg")).eval()
    avg.load_state_dict(m.state_dict())
    assert torch.allclose(avg(x), maps.mean(dim=(2, 3)), atol=1e-6)


def test_wscnn_variants():
    deep = WSCNN(WSCNNConfig(depth=6, conv2_kernel=7, in_channels=2))
    assert deep.class_maps(torch.zeros(1, 2, 256, 256)).shape[-2:] == deep.class_map_size(256, 256)
    assert len([m for m in deep.modules() if isinstance(m, torch.nn.Conv2d)]) == 6
    fc = WSCNN(WSCNNConfig(head="fc", input_size=(210, 280)))
    assert fc(torch.zeros(2, 1, 210, 280)).shape == (2, 2)
    with pytest.raises(ValueError, match="input_size"):
        WSCNNConfig(head="fc")
    with pytest.raises(ValueError, match="depth"):
        WSCNNConfig(depth=5)


def test_min_input_size_is_tight():
    m = WSCNN(WSCNNConfig())
    s = m.min_input_size
    assert m.class_maps(torch.zeros(1, 1, s, s)).shape[-1] == 1
    with pytest.raises(RuntimeError):
        m.class_maps(torch.zeros(1, 1, s - 8, s - 8))


def test_deepyeast_architecture():
    m = DeepYeast(DeepYeastConfig(in_channels=2, n_classes=12)).eval()
    assert count_parameters(m) > 10_000_000  # the paper: "more than 10 million"
    x = torch.randn(4, 2, 64, 64)
    assert m(x).shape == (4, 12)
    assert m.embed(x, "fc1").shape == (4, 512)
    assert m.embed(x, "conv8").shape == (4, 256 * 8 * 8)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 256]
    pools = [mod for mod in m.features if isinstance(mod, torch.nn.MaxPool2d)]
    assert len(pools) == 3


def test_build_model_from_dict():
    m = build_model("wscnn", {"in_channels": 2, "depth": 6})
    assert m.config.in_channels == 2 and m.config.depth == 6


def _randomise_bn(m, positive: bool):
    g = torch.Generator().manual_seed(1)
    for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
        n = bn.num_features
        w = torch.rand(n, generator=g) + 0.5
        if not positive:
            w[::3] *= -1
        bn.weight.data, bn.bias.data = w, torch.randn(n, generator=g)
        bn.running_mean, bn.running_var = torch.randn(n, generator=g), torch.rand(n, generator=g) + 0.5


@pytest.mark.parametrize("depth", [4, 6])
def test_pool_first_is_the_paper_network_where_bn_scales_are_positive(depth):
    """conv -> pool -> BN -> ReLU computes what conv -> BN -> ReLU -> pool computes (eval mode)
    when every BN scale is positive: same geometry, same parameters, same class maps; with a
    negative scale it is a different function (max before a decreasing map picks the wrong value)."""
    paper, fast = WSCNN(WSCNNConfig(depth=depth)), WSCNN(WSCNNConfig(depth=depth, pool_first=True))
    assert fast.receptive_field() == paper.receptive_field() and fast.min_input_size == paper.min_input_size
    assert count_parameters(fast) == count_parameters(paper)
    x = torch.randn(2, 1, 120, 150)
    for positive in (True, False):
        _randomise_bn(paper, positive)
        kinds = (torch.nn.Conv2d, torch.nn.BatchNorm2d)
        for a, b in zip([m for m in paper.modules() if isinstance(m, kinds)],
                        [m for m in fast.modules() if isinstance(m, kinds)]):
            b.load_state_dict(a.state_dict())
        with torch.no_grad():
            same = torch.allclose(paper.eval().class_maps(x), fast.eval().class_maps(x), atol=1e-4)
        assert same == positive


def test_model_files_without_pool_first_build_the_paper_order():
    cfg = {k: v for k, v in WSCNNConfig().__dict__.items() if k != "pool_first"}
    layers = [type(m) for m in build_model("wscnn", cfg).features]
    assert layers[:4] == [torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU, torch.nn.MaxPool2d]
    fast = [type(m) for m in build_model("wscnn", dict(cfg, pool_first=True)).features]
    assert fast[:4] == [torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.BatchNorm2d, torch.nn.ReLU]


@pytest.mark.parametrize("pool_first", [False, True])
@pytest.mark.parametrize("positive", [True, False])
def test_inference_copy_folds_bn_only_where_exact(pool_first, positive):
    """Prediction's copy (core.nets.folding.inference_copy) folds BN into the conv before it; after a
    pooling only when every scale is positive. Class maps and input gradients stay the model's."""
    from napari_rarepheno.core.nets.folding import inference_copy

    m = WSCNN(WSCNNConfig(pool_first=pool_first))
    _randomise_bn(m, positive)
    m.eval()
    fast = inference_copy(m, channels_last=False)
    n_bn = sum(isinstance(mod, torch.nn.BatchNorm2d) for mod in fast.modules())
    assert n_bn == (3 if pool_first and not positive else 0)
    x = torch.randn(2, 1, 100, 120, requires_grad=True)
    ref = m.class_maps(x)
    (g_ref,) = torch.autograd.grad(ref[:, 1].sum(), x)
    out = fast.class_maps(x)
    (g,) = torch.autograd.grad(out[:, 1].sum(), x)
    assert torch.allclose(out, ref, atol=1e-4)
    assert torch.allclose(g, g_ref, atol=1e-4)


def test_fc_head_learns_when_every_class_map_value_is_negative():
    """The fc ablation reads the raw class maps (the paper's last conv has no ReLU). With a
    ReLU in front (model files written before ``fc_relu``) negative maps give the FC layer
    zeros and no gradient reaches the network: the session-11 fc run sat at exactly ln 2."""
    for fc_relu, learns in ((False, True), (True, False)):
        torch.manual_seed(0)
        m = WSCNN(WSCNNConfig(head="fc", input_size=(96, 96), fc_relu=fc_relu))
        m.classifier.bias.data.fill_(-50.0)  # every class-map value below zero
        loss = torch.nn.functional.cross_entropy(m(torch.randn(4, 1, 96, 96)), torch.tensor([0, 1, 0, 1]))
        loss.backward()
        assert (m.classifier.weight.grad.abs().sum() > 0) == learns
    old = {k: v for k, v in WSCNNConfig(head="fc", input_size=(96, 96)).__dict__.items() if k != "fc_relu"}
    assert build_model("wscnn", old).config.fc_relu is True
