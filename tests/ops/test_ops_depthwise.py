"""The depthwise convolution with the numba weight gradient (damoyolo.ops.depthwise)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import damoyolo.ops.depthwise as dw
from damoyolo.models.layers import ConvBNAct
from damoyolo.ops.depthwise import DepthwiseConv2d, depthwise_weight_grad

pytest.importorskip("numba")

# (channels, size, kernel, stride, padding): the nano presets' cases and odd edges
CASES = [(8, 17, 5, 2, 2), (16, 12, 5, 1, 2), (5, 9, 7, 2, 3), (3, 8, 7, 1, 3),
         (4, 7, 5, 2, 0), (6, 6, 5, 1, 1)]


def _reference(x, w, b, stride, padding, g):
    x = x.detach().clone().requires_grad_()
    w = w.detach().clone().requires_grad_()
    b = None if b is None else b.detach().clone().requires_grad_()
    y = F.conv2d(x, w, b, stride, padding, 1, w.shape[0])
    y.backward(g)
    return y, x.grad, w.grad, None if b is None else b.grad


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("case", CASES)
def test_gradients_match_torch(case, channels_last):
    c, size, k, s, p = case
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, c, size, size + 1).contiguous(memory_format=fmt)
    conv = DepthwiseConv2d(c, k, s, p, bias=True).train()
    assert conv._fast_path(x)
    y_ref, gx_ref, gw_ref, gb_ref = _reference(x, conv.weight, conv.bias, s, p,
                                               g := torch.randn_like(F.conv2d(
                                                   x, conv.weight, None, s, p, 1, c)))
    xi = x.clone().requires_grad_()
    y = conv(xi)
    y.backward(g)
    assert torch.equal(y, y_ref)
    torch.testing.assert_close(xi.grad, gx_ref, rtol=0, atol=0)  # torch's own input gradient
    torch.testing.assert_close(conv.weight.grad, gw_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.bias.grad, gb_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", [(128, 32, 5, 1, 2), (96, 65, 5, 2, 2)])
def test_weight_grad_split_over_threads_is_the_same(case):
    # large enough (>= 8M multiply-adds) to be split between two threads
    c, size, k, s, p = case
    x = torch.randn(4, c, size, size).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, 1, k, k)
    g = torch.randn_like(F.conv2d(x, w, None, s, p, 1, c))
    one = depthwise_weight_grad(x, g, k, s, p, threads=1)
    two = depthwise_weight_grad(x, g, k, s, p, threads=2)
    exact = _reference(x.double(), w.double(), None, s, p, g.double())[2]
    torch_err = (_reference(x, w, None, s, p, g)[2].double() - exact).abs().max()
    for got in (one, two):  # sums of ~10^4 products: float32 rounding, no worse than torch's
        err = (got.double() - exact).abs().max()
        assert err <= 2 * torch_err + 1e-6 * exact.abs().max(), (err, torch_err)
    assert not torch.equal(one, two)  # really split: the sums are added in another order
    assert torch.equal(two, depthwise_weight_grad(x, g, k, s, p, threads=2))  # deterministic


def test_fast_path_only_where_it_applies():
    conv = DepthwiseConv2d(4, 5, 1, 2)
    x = torch.randn(1, 4, 6, 6)
    assert conv.train()._fast_path(x)
    assert not DepthwiseConv2d(4, 3, 1, 1).train()._fast_path(x)  # 3x3: oneDNN's kernel
    assert not conv.eval()._fast_path(x)
    conv.train()
    with torch.no_grad():
        assert not conv._fast_path(x)
    assert not conv._fast_path(x.double())
    conv.weight.requires_grad_(False)
    assert not conv._fast_path(x)


def test_module_is_a_conv2d_with_the_same_state():
    block = ConvBNAct(8, 8, 5, 2, groups=8, act="silu")
    assert type(block.conv) is DepthwiseConv2d and isinstance(block.conv, nn.Conv2d)
    ref = nn.Conv2d(8, 8, 5, 2, 2, groups=8, bias=False)
    assert block.conv.state_dict().keys() == ref.state_dict().keys()
    ref.load_state_dict(block.conv.state_dict())
    x = torch.randn(2, 8, 9, 9)
    assert torch.equal(block.conv.eval()(x), ref(x))
    assert type(ConvBNAct(8, 16, 3, groups=8).conv) is nn.Conv2d  # grouped, not depthwise


def test_without_numba_falls_back_to_torch(monkeypatch):
    monkeypatch.setattr(dw, "_kernel", None)
    monkeypatch.setenv("DAMOYOLO_NO_NUMBA", "1")
    conv = DepthwiseConv2d(4, 5, 2, 2).train()
    x = torch.randn(2, 4, 7, 7)
    assert not conv._fast_path(x)
    conv(x).square().sum().backward()
    ref = _reference(x, conv.weight, None, 2, 2, 2 * F.conv2d(x, conv.weight, None, 2, 2, 1, 4))
    torch.testing.assert_close(conv.weight.grad, ref[2])
    with pytest.raises(RuntimeError, match="numba"):
        depthwise_weight_grad(x, torch.randn(2, 4, 4, 4), 5, 2, 2)
    monkeypatch.setattr(dw, "_kernel", None)  # compiled again for the tests after this one


def test_float32_under_cpu_autocast_in_training():
    conv = DepthwiseConv2d(4, 5, 2, 2).train()
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
        y_eval = conv.eval()(x.detach())
    assert y.dtype == torch.float32 and y_eval.dtype == torch.bfloat16
    g = torch.randn_like(y)
    y.backward(g)
    ref = _reference(x, conv.weight, None, 2, 2, g)
    torch.testing.assert_close(y, ref[0], rtol=0, atol=0)
    torch.testing.assert_close(conv.weight.grad, ref[2], rtol=1e-5, atol=1e-5)
