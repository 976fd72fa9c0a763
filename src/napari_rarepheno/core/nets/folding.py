"""The network as prediction runs it: batch norm folded into the convolutions, parameters
frozen, channels_last, and a first convolution with a fast input gradient (~2x faster on
CPU than the training module, same outputs up to float rounding). Validation during
training, tiled and lazy prediction and DeepYeast classification all run this copy."""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


class _InputGradConv(torch.autograd.Function):
    """conv2d whose input gradient is one ``conv_transpose2d`` (stride 1, no weight gradient).

    oneDNN's generic convolution backward is 3-4x slower than this for the first layer of
    WSCNN (one input channel, 11x11, channels_last), which dominates saliency time."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(weight)
        ctx.padding, ctx.in_dtype = padding, x.dtype
        return torch.nn.functional.conv2d(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype),
                                          padding=padding)

    @staticmethod
    def backward(ctx, g):
        (weight,) = ctx.saved_tensors
        gx = torch.nn.functional.conv_transpose2d(g, weight.to(g.dtype), padding=ctx.padding)
        return gx.to(ctx.in_dtype), None, None, None


class _FirstConv(torch.nn.Module):
    def __init__(self, conv: torch.nn.Conv2d):
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.kernel_size, self.stride, self.padding, self.dilation = (conv.kernel_size, conv.stride, conv.padding,
                                                                     conv.dilation)

    def forward(self, x):
        w, b = self.weight, self.bias
        if torch.is_autocast_enabled(x.device.type):
            dt = torch.get_autocast_dtype(x.device.type)
            x, w, b = x.to(dt), w.to(dt), None if b is None else b.to(dt)
        return _InputGradConv.apply(x, w, b, self.padding)


class _PairMaxPool2d(nn.MaxPool2d):
    """2x2 max pooling (stride 2, no padding) as two element-wise maxima of strided views when
    no gradient is wanted: on channels_last maps this measured 1.4-1.8x faster than
    ``max_pool2d`` (bf16, 50-100 channels, 1000-2000 px: 248 -> 178 ms and 125 -> 70 ms on a
    2-core Zen 4), the same values. With a gradient (saliency) it is ``max_pool2d`` itself,
    whose gradient goes to one arg-max where ``maximum`` would split ties."""

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            return super().forward(x)
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        rows = torch.maximum(x[..., 0:h:2, :w], x[..., 1:h:2, :w])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def _pair_pool(m: nn.Module) -> nn.Module:
    """``m`` as :class:`_PairMaxPool2d` where it is a plain 2x2 max pooling, else ``m``."""
    plain = (type(m) is nn.MaxPool2d and m.kernel_size in (2, (2, 2)) and m.stride in (2, (2, 2))
             and m.padding in (0, (0, 0)) and m.dilation in (1, (1, 1)) and not m.ceil_mode and not m.return_indices)
    return _PairMaxPool2d(2) if plain else m


def _bn_scale(bn: torch.nn.BatchNorm2d) -> torch.Tensor:
    w = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    return w / torch.sqrt(bn.running_var + bn.eps)


def inference_copy(model: torch.nn.Module, channels_last: bool = True) -> torch.nn.Module:
    """An eval-mode copy of a WSCNN-like model (``features`` + ``classifier``) for prediction:
    every BatchNorm folded into the convolution before it (exact up to rounding: eval-mode
    batch norm is an affine map), parameters frozen (gradients go to the input only), the
    first convolution with a fast input gradient, 2x2 max pooling without a gradient as two
    element-wise maxima. Same class maps, same saliency, same
    tiling geometry (``saliency.unit_geometry`` and ``predict.contaminated_units`` read the
    same convolutions and poolings)."""
    m = copy.deepcopy(model).eval()
    layers = list(m.features)
    for i in range(len(layers) - 1):
        if isinstance(layers[i], nn.Conv2d) and isinstance(layers[i + 1], nn.BatchNorm2d):
            layers[i], layers[i + 1] = fuse_conv_bn_eval(layers[i], layers[i + 1]), nn.Identity()
        elif (i + 2 < len(layers) and isinstance(layers[i], nn.Conv2d) and isinstance(layers[i + 1], nn.MaxPool2d)
              and isinstance(layers[i + 2], nn.BatchNorm2d) and _bn_scale(layers[i + 2]).gt(0).all()):
            # conv -> pool -> BN (WSCNNConfig.pool_first): max pooling commutes with a per-channel
            # affine map whose scale is positive, so the BN folds into the conv there too
            layers[i], layers[i + 2] = fuse_conv_bn_eval(layers[i], layers[i + 2]), nn.Identity()
    layers = [_pair_pool(m) for m in layers]
    first = layers[0]
    if (isinstance(first, nn.Conv2d) and first.stride == (1, 1) and first.dilation == (1, 1) and first.groups == 1
            and isinstance(first.padding, tuple)):
        layers[0] = _FirstConv(first)
    m.features = nn.Sequential(*layers)
    for p in m.parameters():
        p.requires_grad_(False)
    return m.to(memory_format=torch.channels_last) if channels_last else m


def inference_model(loaded, dev: torch.device) -> nn.Module:
    """The network of ``loaded`` as prediction runs it: :func:`inference_copy`
    (batch norm folded into the convolutions, channels_last, parameters frozen: ~2x faster
    on CPU, same outputs up to float rounding), made once per model, device and weights and
    kept on the LoadedModel. Training ``loaded.model`` further (its parameters' in-place
    version counters move) makes a fresh copy."""
    model = loaded.model
    key = (id(model), str(dev), tuple(p._version for p in model.parameters()),
           tuple(b._version for b in model.buffers()))
    cached = getattr(loaded, "_inference", None)
    if cached is None or cached[0] != key:
        cached = (key, inference_copy(model).to(dev))
        object.__setattr__(loaded, "_inference", cached)
    return cached[1]
