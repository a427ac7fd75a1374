"""Every preset: build, forward/backward, re-parameterisation equivalence, published sizes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import damoyolo
from damoyolo.models.layers import RepConv
from damoyolo.models.reparam import is_reparameterized

PRESETS = damoyolo.preset_names()


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Random BN affine and running statistics so that folding is really exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=g)
            m.bias.data = 0.2 * torch.randn(c, generator=g)
            m.running_mean = 0.2 * torch.randn(c, generator=g)
            m.running_var = 0.5 + torch.rand(c, generator=g)


@pytest.mark.parametrize("name", PRESETS)
def test_forward_backward_small_input(name):
    model = damoyolo.build_model(name, num_classes=5).train()
    x = torch.rand(2, 3, 64, 96) * 255  # non-square, multiples of 32
    out = model(x)
    assert len(out.cls) == len(out.reg) == 3
    for c, r, s in zip(out.cls, out.reg, (8, 16, 32)):
        assert c.shape == (2, 5, 64 // s, 96 // s)
        assert r.shape == (2, 4 * (model.cfg.head.reg_max + 1), 64 // s, 96 // s)
    loss = sum(c.float().sigmoid().mean() for c in out.cls) + sum(r.mean() for r in out.reg)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        scores, boxes = model.decode(model(x))
    a = sum((64 // s) * (96 // s) for s in (8, 16, 32))
    assert scores.shape == (2, a, 5) and boxes.shape == (2, a, 4)
    assert torch.isfinite(scores).all() and torch.isfinite(boxes).all()
    assert (boxes[..., 2:] >= boxes[..., :2]).all()


@pytest.mark.parametrize("name", PRESETS)
def test_reparameterize_keeps_outputs(name):
    model = damoyolo.build_model(name).eval()
    _randomise_bn(model)
    x = torch.rand(1, 3, 96, 64) * 255
    def flat(out):
        return torch.cat([t.flatten() for t in out.cls + out.reg])

    with torch.no_grad():
        o0 = flat(model(x))
        s0, b0 = model.decode(model(x))
        ref = copy.deepcopy(model)
        damoyolo.reparameterize(model)
        o1 = flat(model(x))
        s1, b1 = model.decode(model(x))
    assert is_reparameterized(model)
    assert not is_reparameterized(ref)
    has_rep = any(isinstance(m, RepConv) for m in ref.modules())
    assert has_rep == (name in ("damoyolo-t", "damoyolo-s", "damoyolo-m", "damoyolo-l"))
    # raw head outputs agree to a tolerance relative to their scale
    scale = o0.abs().max().item()
    assert scale > 0
    assert (o1 - o0).abs().max().item() <= 1e-4 * scale
    assert (b1 - b0).abs().max().item() <= 1e-3 * max(1.0, b0.abs().max().item())
    # idempotent
    damoyolo.reparameterize(model)
    with torch.no_grad():
        s2, _ = model.decode(model(x))
    assert torch.equal(s1, s2)


def test_repconv_count_matches_release():
    counts = {n: sum(isinstance(m, RepConv) for m in damoyolo.build_model(n).modules())
              for n in ("damoyolo-t", "damoyolo-s", "damoyolo-m", "damoyolo-l", "damoyolo-ns")}
    assert counts == {"damoyolo-t": 24, "damoyolo-s": 27, "damoyolo-m": 33, "damoyolo-l": 48,
                      "damoyolo-ns": 0}


@pytest.mark.parametrize("name", ["damoyolo-t", "damoyolo-ns"])
def test_published_complexity(name):
    from damoyolo.models.complexity import model_complexity
    p = damoyolo.get_preset(name)
    model = damoyolo.build_model(name)
    params, gflops = model_complexity(model, p.model.input_size)
    _, gflops_half = model_complexity(model, p.model.input_size, bn_rule="half")
    assert abs(params / p.published_params_m - 1) < 0.01
    best = min(abs(gflops / p.published_gflops - 1), abs(gflops_half / p.published_gflops - 1))
    assert best < 0.01


def test_reset_classes_only_touches_class_projection():
    model = damoyolo.build_model("damoyolo-ns")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_classes(["a", "b", "c"])
    after = model.state_dict()
    changed = {k for k in after if k not in before or after[k].shape != before[k].shape
               or not torch.equal(after[k], before[k])}
    assert changed == {f"head.cls_preds.{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    assert model.num_classes == 3 and model.cfg.head.num_classes == 3


def test_unknown_preset_suggests():
    with pytest.raises(KeyError, match="damoyolo-t"):
        damoyolo.get_preset("damoyolo-tt")
    assert damoyolo.get_preset("T").model.name == "damoyolo-t"
    assert damoyolo.get_preset("damoyolo_tinynasL25_S").model.name == "damoyolo-s"


def test_spp_pools_in_channels_last_on_cpu_match_nchw_pooling():
    from damoyolo.models.layers import SPPBottleneck
    torch.manual_seed(0)
    spp = SPPBottleneck(16, 16, act="relu").train()
    x = torch.randn(2, 16, 12, 12)
    h = spp.conv1(x).detach()
    pooled = spp._pooled(h)
    for p, k in zip(pooled, (5, 9, 13)):  # same values, NCHW out
        assert torch.equal(p, torch.nn.functional.max_pool2d(h, k, 1, k // 2))
        assert p.is_contiguous()
    # gradients as with NCHW pooling (up to the order of the additions)
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    ref = copy.deepcopy(spp)
    ref._pooled = lambda t: [p(t) for p in ref.pools]
    g = torch.randn(2, 16, 12, 12)
    (spp(a) * g).sum().backward()
    (ref(b) * g).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)
    for pa, pb in zip(spp.parameters(), ref.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("preset", ["damoyolo-t", "damoyolo-m"])
def test_channels_last_stem_matches_nchw(preset):
    """Backbone stem and first stage in channels_last (CPU training speed): the same
    features (NCHW out) and gradients as all-NCHW, up to the kernels' rounding."""
    torch.manual_seed(0)
    net = damoyolo.build_model(preset).train()
    ref = copy.deepcopy(net)
    net.backbone.channels_last_stages = 2
    x = torch.randn(2, 3, 64, 64)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    # relative (norm) errors: train-mode BatchNorm (batch 2) amplifies the kernels' rounding
    # in single elements; both formats are ~1e-5 off a float64 reference
    def rel(u, v):
        return float((u - v).detach().norm() / v.detach().norm())
    fa, fb = net.backbone(a), ref.backbone(b)
    for p, q in zip(fa, fb):
        assert p.is_contiguous() and rel(p, q) < 5e-4
    gs = [torch.randn_like(p) for p in fa]
    sum((p * g).sum() for p, g in zip(fa, gs)).backward()
    sum((q * g).sum() for q, g in zip(fb, gs)).backward()
    assert rel(a.grad, b.grad) < 1e-3
    for (name, pa), pb in zip(net.backbone.named_parameters(), ref.backbone.parameters()):
        assert pa.grad.is_contiguous(), name  # the parameter's own (NCHW) layout
        assert rel(pa.grad, pb.grad) < 1e-3, name
    # the stem did run in channels_last: its first convolution saw a channels_last input
    seen = []
    net.backbone.stages[0].conv.conv.register_forward_pre_hook(
        lambda m, i: seen.append(i[0].is_contiguous(memory_format=torch.channels_last)))
    net.backbone(x)
    assert seen == [True]


def test_channels_last_stem_stays_out_of_a_traced_graph():
    net = damoyolo.build_model("damoyolo-t").eval()
    net.backbone.channels_last_stages = 2
    traced = torch.jit.trace(net.backbone, torch.randn(1, 3, 64, 64))
    kinds = [n.kind() for n in traced.inlined_graph.nodes()]
    assert "aten::contiguous" not in kinds


def test_spp_traced_graph_has_no_layout_copies():
    from damoyolo.models.layers import SPPBottleneck
    spp = SPPBottleneck(8, 8).eval()
    traced = torch.jit.trace(spp, torch.randn(1, 8, 8, 8))
    kinds = [n.kind() for n in traced.inlined_graph.nodes()]
    assert kinds.count("aten::max_pool2d") == 3
    assert "aten::contiguous" not in kinds
