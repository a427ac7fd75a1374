"""Distillation losses: CWD / mimic values, align module, dynamic temperature, schedule."""

import math

import pytest
import torch

from damoyolo.distill import FeatureDistillLoss, channel_normalize, cwd_loss, distill_weight, \
    mimic_loss

torch.set_num_threads(1)
CH = [8, 16, 32]


def _feats(seed, n=2, channels=CH, sizes=(8, 4, 2)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, s, s, generator=g) * 3 + 1 for c, s in zip(channels, sizes)]


def _identity_align(loss: FeatureDistillLoss) -> None:
    with torch.no_grad():
        for conv in loss.align:
            c = conv.weight.shape[0]
            conv.weight.copy_(torch.eye(c).view(c, c, 1, 1))
            conv.bias.zero_()


@pytest.mark.parametrize("method", ["cwd", "mimic"])
def test_zero_when_student_equals_teacher_with_identity_align(method):
    loss = FeatureDistillLoss(CH, CH, method=method)
    _identity_align(loss)
    t = _feats(0)
    assert loss([x.clone() for x in t], t).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(_feats(1), t).item() > 1e-2


def test_cwd_matches_definition():
    s, t = _feats(2, n=1, channels=[3]), _feats(3, n=1, channels=[3])
    tau = 2.0
    ref = 0.0
    for c in range(3):  # KL(p_t || p_s) of each channel's spatial distribution
        ps = torch.softmax(s[0][0, c].flatten() / tau, 0)
        pt = torch.softmax(t[0][0, c].flatten() / tau, 0)
        ref += float((pt * (pt.log() - ps.log())).sum())
    ref = ref * tau ** 2 / 3
    assert cwd_loss(s[:1], t[:1], tau).item() == pytest.approx(ref, rel=1e-5)
    # mimic = mean squared error per level, summed
    assert mimic_loss(s, t).item() == pytest.approx(float(((s[0] - t[0]) ** 2).mean()), rel=1e-6)


def test_dynamic_temperature_normalises_per_channel():
    x = _feats(4)[0] * torch.arange(1, 9).view(1, 8, 1, 1) + 7
    y = channel_normalize(x)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(8), atol=1e-5)
    assert torch.allclose(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(8), atol=1e-3)
    # with normalisation the loss ignores per-channel scale/offset of the teacher (the
    # magnitude gap between models); without it, it does not
    s, t = _feats(5), _feats(6)
    scaled = [3.0 * x + 5.0 for x in t]
    norm = FeatureDistillLoss(CH, CH)
    _identity_align(norm)
    assert norm(s, scaled).item() == pytest.approx(norm(s, t).item(), rel=1e-4)
    raw = FeatureDistillLoss(CH, CH, normalize=False)
    _identity_align(raw)
    assert abs(raw(s, scaled).item() - raw(s, t).item()) > 1e-2


def test_align_maps_channels_and_shape_errors():
    loss = FeatureDistillLoss([4, 8, 16], CH)
    assert [tuple(c.weight.shape) for c in loss.align] == [(8, 4, 1, 1), (16, 8, 1, 1),
                                                           (32, 16, 1, 1)]
    s, t = _feats(7, channels=[4, 8, 16]), _feats(8)
    out = loss(s, t)
    out.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.parameters())
    with pytest.raises(ValueError, match="level 1.*same strides"):
        loss(s, [t[0], t[1][:, :, :2, :2], t[2]])
    with pytest.raises(ValueError, match="unknown distillation method"):
        FeatureDistillLoss(CH, CH, method="kd")


def test_weight_schedule_cosine_then_off():
    w, r, end = 0.5, 0.1, 100
    assert distill_weight(0, end, w, r) == pytest.approx(0.5)
    assert distill_weight(50, end, w, r) == pytest.approx(0.5 * (0.1 + 0.9 * 0.5))
    assert distill_weight(25, end, w, r) == pytest.approx(
        0.5 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))))
    assert distill_weight(99, end, w, r) == pytest.approx(0.05, abs=2e-4)  # -> weight * ratio
    values = [distill_weight(i, end, w, r) for i in range(end)]
    assert all(a > b for a, b in zip(values, values[1:]))  # strictly decreasing
    assert distill_weight(100, end, w, r) == distill_weight(150, end, w, r) == 0.0  # no-aug
    assert distill_weight(0, 0, w, r) == 0.0
