"""Precise BN: the evaluated model's BatchNorm statistics recomputed for its final weights."""

import torch
from torch import nn

from damoyolo.engine.bn import recompute_bn_stats


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=0.03),
                         nn.ReLU(), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2, momentum=0.03))


def test_stats_are_the_average_over_the_batches_and_nothing_else_changes():
    net = _net().eval()
    bn = net[1]
    bn.running_var.fill_(1e4)  # what a short run leaves: the first steps' huge activations
    bn.running_mean.fill_(50.0)
    params = {k: v.clone() for k, v in net.named_parameters()}
    batches = [torch.randn(3, 3, 8, 8) * 2 + 1, torch.randn(3, 3, 8, 8) * 2 + 1]
    loader = [(b, None) for b in batches]
    assert recompute_bn_stats(net, loader, max_images=100) == 6
    with torch.no_grad():
        acts = [net[0](b) for b in batches]
    mean = torch.stack([a.mean((0, 2, 3)) for a in acts]).mean(0)
    var = torch.stack([a.var((0, 2, 3), unbiased=True) for a in acts]).mean(0)
    assert torch.allclose(bn.running_mean, mean, atol=1e-5)
    assert torch.allclose(bn.running_var, var, atol=1e-4)
    assert bn.momentum == 0.03 and not net.training
    assert all(torch.equal(v, params[k]) for k, v in net.named_parameters())


def test_max_images_and_empty_loader():
    net = _net()
    batches = [(torch.randn(4, 3, 8, 8), None) for _ in range(3)]
    assert recompute_bn_stats(net, batches, max_images=6) == 6
    before = net[1].running_var.clone()
    assert recompute_bn_stats(net, [], max_images=6) == 0
    assert torch.equal(net[1].running_var, before) and net.training


def test_a_collapsed_model_recovers():
    """Scores of a model whose statistics are stale differ from its batch-statistics output;
    after recomputation eval mode matches training mode on the same data."""
    net = _net()
    x = torch.randn(16, 3, 8, 8)
    net[1].running_var.fill_(1e3)
    net.eval()
    stale = net(x)
    net.train()
    with torch.no_grad():
        batch_mode = net(x)
    recompute_bn_stats(net, [(x, None)], max_images=16)
    net.eval()
    with torch.no_grad():
        fixed = net(x)
    assert (stale - batch_mode).abs().max() > 0.5
    assert (fixed - batch_mode).abs().max() < 1e-2  # running var is the unbiased one
