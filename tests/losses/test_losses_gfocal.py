"""QFL / DFL / GIoU against hand-computed values, and the criterion's normalisation."""

import math

import pytest
import torch
import torch.nn.functional as F

from damoyolo.losses import DAMOYOLOCriterion, distribution_focal_loss, giou_loss, \
    quality_focal_loss

torch.set_num_threads(1)


def test_qfl_hand_computed():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # p = [.5, .75], [.5, .5]
    labels = torch.tensor([1, 2])  # row 0 positive of class 1 with IoU 0.6; row 1 background
    scores = torch.tensor([0.6, 0.0])
    out = quality_focal_loss(logits, labels, scores)
    neg = -math.log(0.5) * 0.25  # BCE(0.5, 0) * 0.5^2
    pos = -(0.6 * math.log(0.75) + 0.4 * math.log(0.25)) * (0.75 - 0.6) ** 2
    assert out.tolist() == pytest.approx([neg + pos, 2 * neg], rel=1e-5)


def test_qfl_matches_probability_form():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 4, generator=g) * 3
    labels = torch.randint(0, 5, (50,), generator=g)
    scores = torch.rand(50, generator=g)
    p = logits.sigmoid()
    tgt = torch.zeros(50, 4)
    pos = labels < 4
    tgt[pos, labels[pos]] = scores[pos]
    ref = (F.binary_cross_entropy(p, tgt, reduction="none") * (tgt - p).abs() ** 2).sum(1)
    torch.testing.assert_close(quality_focal_loss(logits, labels, scores), ref, rtol=1e-4,
                               atol=1e-6)


def test_dfl_hand_computed():
    logits = torch.zeros(1, 5)  # uniform over 5 bins: CE = log 5 for any bin
    assert distribution_focal_loss(logits, torch.tensor([2.3])).item() == pytest.approx(
        math.log(5))
    logits = torch.tensor([[0.0, 10.0, 0.0, 0.0]])
    lo = F.cross_entropy(logits, torch.tensor([1])).item()
    hi = F.cross_entropy(logits, torch.tensor([2])).item()
    assert distribution_focal_loss(logits, torch.tensor([1.25])).item() == pytest.approx(
        0.75 * lo + 0.25 * hi, rel=1e-5)


def test_giou_hand_computed():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 2.0, 2.0], [2.0, 0.0, 3.0, 1.0]])
    # identical -> 0; disjoint unit squares 1 apart: IoU 0, enclosure 3, union 2 -> GIoU -1/3
    assert giou_loss(a, b).tolist() == pytest.approx([0.0, 1 + 1 / 3], abs=1e-5)


def _model():
    from damoyolo import build_model
    return build_model("damoyolo-ns", num_classes=3)


def test_criterion_runs_and_backprops_with_and_without_gt():
    torch.manual_seed(0)
    model = _model().train()
    crit = DAMOYOLOCriterion(model.head)
    imgs = torch.rand(2, 3, 64, 64) * 255
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 48.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    out = crit(model(imgs), targets)
    assert set(out) == {"loss", "loss_qfl", "loss_giou", "loss_dfl", "num_pos"}
    assert out["num_pos"].item() >= 1 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.head.reg_preds[0].weight.grad is not None
    model.zero_grad()
    empty = [targets[1], targets[1]]
    out = crit(model(imgs), empty)
    assert out["num_pos"].item() == 0 and out["loss_giou"].item() == 0.0
    out["loss"].backward()  # box branch still in the graph (zero gradients)
    assert model.head.reg_preds[0].weight.grad is not None
    assert model.head.reg_preds[0].weight.grad.abs().sum() == 0


def test_criterion_normalisation():
    """Hand-assembled: QFL sum / num_pos; box terms weighted by max prob / sum of weights."""
    from damoyolo.assign import AlignedOTA, pad_targets
    torch.manual_seed(1)
    model = _model().train()
    crit = DAMOYOLOCriterion(model.head)
    imgs = torch.rand(1, 3, 64, 64) * 255
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0], [30.0, 20.0, 60.0, 60.0]]),
                "labels": torch.tensor([0, 2])}]
    with torch.no_grad():
        out = model(imgs)
        res = crit(out, targets)
        cls, reg, priors = model.head.flatten(out)
        boxes = model.head.decode_distances(reg, priors)
        asg = AlignedOTA(3)(cls, boxes, priors, *pad_targets(targets))
        fg = asg.fg[0]
        n = fg.sum().float()
        qfl = quality_focal_loss(cls[0], asg.labels[0], asg.ious[0]).sum() / n
        w = cls[0][fg].sigmoid().max(1).values
        giou = 2.0 * (giou_loss(boxes[0][fg], asg.boxes[0][fg]) * w).sum() / w.sum().clamp(min=1)
    assert res["num_pos"].item() == n.item()
    assert res["loss_qfl"].item() == pytest.approx(qfl.item(), rel=1e-5)
    assert res["loss_giou"].item() == pytest.approx(giou.item(), rel=1e-5)
