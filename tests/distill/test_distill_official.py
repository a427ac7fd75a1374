"""Distillation loss and gradient against the official code's.

``data/official_cwd.npz`` was produced by running the official ``FeatureLoss`` (CWD, align
module, affine-free BatchNorm in training mode as the channel-wise dynamic temperature) with
the official trainer's weight schedule on seeded features: three levels of non-square maps,
student and teacher with different channel counts.  Only its numbers are stored.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from damoyolo.distill import FeatureDistillLoss, distill_weight

torch.set_num_threads(1)
REF = np.load(Path(__file__).parent / "data" / "official_cwd.npz")


def _ours():
    s = [torch.tensor(REF[f"s{i}"], requires_grad=True) for i in range(3)]
    t = [torch.tensor(REF[f"t{i}"]) for i in range(3)]
    loss = FeatureDistillLoss([x.shape[1] for x in s], [x.shape[1] for x in t], method="cwd")
    with torch.no_grad():
        for i, conv in enumerate(loss.align):
            conv.weight.copy_(torch.tensor(REF[f"align_w{i}"]))
            conv.bias.copy_(torch.tensor(REF[f"align_b{i}"]))
    return loss, s, t


def test_weight_schedule_equals_official():
    total = int(REF["total_iters"])
    for it, w in zip(REF["schedule_iters"], REF["schedule_weights"]):
        if it >= total:
            continue  # the official loop never reaches iteration == total
        assert distill_weight(int(it), total, 1.0, 0.1) == pytest.approx(float(w), abs=1e-12)


def test_loss_and_gradients_equal_official():
    loss_mod, s, t = _ours()
    w = distill_weight(int(REF["iteration"]), int(REF["total_iters"]), 1.0, 0.1)
    assert w == pytest.approx(float(REF["weight"]), abs=1e-12)
    unweighted = loss_mod(s, t)
    assert unweighted.item() == pytest.approx(float(REF["loss_unweighted"]), abs=1e-5, rel=1e-6)
    loss = w * unweighted
    assert loss.item() == pytest.approx(float(REF["loss"]), abs=1e-5, rel=1e-6)
    loss.backward()
    for i in range(3):
        np.testing.assert_allclose(s[i].grad.numpy(), REF[f"grad_s{i}"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(loss_mod.align[i].weight.grad.numpy(), REF[f"grad_align_w{i}"],
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(loss_mod.align[i].bias.grad.numpy(), REF[f"grad_align_b{i}"],
                                   rtol=1e-4, atol=1e-5)
