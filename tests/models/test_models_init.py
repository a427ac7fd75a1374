"""Initial weights follow the release's rules, per family and per layer.

Every backbone and neck convolution feeds a BatchNorm, so the scale of its initial weights
sets that layer's effective learning rate: a rule that differs from the release's trains
differently even though the first forward pass looks alike.  The release's rules:

* ResNet-like and CSP-like backbones, and the neck: torch's default convolution init
  (Kaiming-uniform with a = sqrt(5): uniform in +-1/sqrt(fan_in), std 1/sqrt(3 fan_in));
* mobile (nano) backbone: N(0, 1/weight.shape[1]) for every conv, BatchNorm bias 1e-4;
* the nano neck's depthwise-separable down-samplers: Kaiming-normal fan_out (ReLU gain);
* head: N(0, 0.01), class bias -log((1 - 0.01) / 0.01).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import damoyolo
from damoyolo.models.layers import DWSepConv


def _fans(w: torch.Tensor) -> tuple[int, int]:
    rf = w[0, 0].numel()
    return w.shape[1] * rf, w.shape[0] * rf


def _std_close(w: torch.Tensor, expected: float, name: str, tol: float = 0.12) -> None:
    got = float(w.std())
    assert abs(got / expected - 1) < tol, f"{name}: std {got:.4g}, rule gives {expected:.4g}"


def _convs(module: nn.Module, skip: set[int] = frozenset()):
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d) and id(m) not in skip and m.weight.numel() >= 2000:
            yield name, m.weight.detach()


def _dwsep_convs(module: nn.Module) -> set[int]:
    return {id(c) for m in module.modules() if isinstance(m, DWSepConv)
            for c in (m.dw.conv, m.pw.conv)}


def _check_default(module: nn.Module, prefix: str, skip: set[int] = frozenset()) -> int:
    n = 0
    for name, w in _convs(module, skip):
        fan_in, _ = _fans(w)
        bound = 1 / math.sqrt(fan_in)
        assert float(w.abs().max()) <= bound + 1e-7, f"{prefix}{name}: exceeds +-1/sqrt(fan_in)"
        _std_close(w, bound / math.sqrt(3), prefix + name)
        n += 1
    return n


@pytest.mark.parametrize("preset", ["damoyolo-t", "damoyolo-m"])
def test_res_and_csp_backbones_and_neck_use_torch_default(preset):
    model = damoyolo.build_model(preset)
    assert _check_default(model.backbone, "backbone.") > 10
    assert _check_default(model.neck, "neck.") > 10


@pytest.mark.parametrize("preset", ["damoyolo-ns", "damoyolo-n"])
def test_mobile_backbone_rule(preset):
    model = damoyolo.build_model(preset)
    n = 0
    for name, w in _convs(model.backbone):
        _std_close(w, 1.0 / w.shape[1], "backbone." + name)
        assert abs(float(w.mean())) < 0.1 / w.shape[1] + 3 / w.shape[1] / math.sqrt(w.numel())
        n += 1
    assert n > 10
    for name, m in model.backbone.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.allclose(m.bias, torch.full_like(m.bias, 1e-4))
            assert torch.all(m.running_mean == 0), name


def test_nano_neck_down_samplers_kaiming_fan_out_rest_default():
    model = damoyolo.build_model("damoyolo-nm")
    dws = _dwsep_convs(model.neck)
    assert len(dws) == 10  # five down-samplers, depthwise + pointwise each
    for m in model.neck.modules():
        if isinstance(m, DWSepConv):
            for conv in (m.dw.conv, m.pw.conv):
                _, fan_out = _fans(conv.weight)
                _std_close(conv.weight.detach(), math.sqrt(2.0 / fan_out), "neck dw-sep",
                           tol=0.15)
    assert _check_default(model.neck, "neck.", skip=dws) > 5


@pytest.mark.parametrize("preset", ["damoyolo-ns", "damoyolo-t"])
def test_head_rule(preset):
    head = damoyolo.build_model(preset).head
    prior = -math.log((1 - 0.01) / 0.01)
    for conv in list(head.cls_preds) + list(head.reg_preds):
        _std_close(conv.weight.detach(), 0.01, "head", tol=0.15)
    for conv in head.cls_preds:
        assert torch.allclose(conv.bias, torch.full_like(conv.bias, prior))
    for conv in head.reg_preds:
        assert torch.all(conv.bias == 0)
