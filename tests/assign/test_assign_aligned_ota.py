"""AlignedOTA: hand-computed cases and agreement with a per-image reference."""

import math

import pytest
import torch

from assign_reference import assign_one
from damoyolo.assign import AlignedOTA, pad_targets

torch.set_num_threads(1)


def _row_priors(xs, stride=8.0):
    return torch.tensor([[x, 0.0, stride, stride] for x in xs])


def test_single_gt_takes_best_prior():
    priors = _row_priors([0, 8, 16, 24])
    gt = torch.tensor([[[2.0, -2.0, 18.0, 6.0]]])
    # prior 1 predicts the GT exactly (IoU 1); prior 2 a box of IoU 0.25; the others are far off
    pred = torch.tensor([[[0, 0, 1, 1], [2, -2, 18, 6], [10, -2, 18, 2], [40, 40, 41, 41]]],
                        dtype=torch.float32)
    logits = torch.zeros(1, 4, 1)  # p = 0.5
    asg = AlignedOTA(num_classes=1)(logits, pred, priors, gt, torch.zeros(1, 1, dtype=torch.long),
                                    torch.ones(1, 1, dtype=torch.bool))
    # dynamic k = int(1 + 0.25 + 0 + 0) = 1 -> only the cheapest prior
    assert asg.fg.tolist() == [[False, True, False, False]]
    assert asg.labels.tolist() == [[1, 0, 1, 1]]  # background = num_classes
    assert asg.ious[0, 1].item() == pytest.approx(1.0)
    assert asg.boxes[0, 1].tolist() == [2.0, -2.0, 18.0, 6.0]


def test_dynamic_k_counts_top_ious():
    # 12 priors inside the GT and its centre region all predicting the GT (IoU 1): k = min(10, 12)
    xs = [float(8 * i) for i in range(12)]
    priors = torch.tensor([[x, 8.0, 8.0, 8.0] for x in xs])
    gt = torch.tensor([[[-1.0, -1.0, 100.0, 20.0]]])
    pred = gt.expand(1, 12, 4).clone()
    pred[0, :, 2] -= torch.arange(12).float()  # IoUs slightly below 1, distinct costs
    logits = torch.zeros(1, 12, 3)
    asg = AlignedOTA(num_classes=3)(logits, pred, priors, gt, torch.tensor([[2]]),
                                    torch.ones(1, 1, dtype=torch.bool))
    ious = 1 - torch.arange(12).float() / 101.0
    k = int(ious.topk(10).values.sum())
    assert k == 9
    # centre region is +-20 px around (49.5, 9.5): x in (29.5, 69.5) are in both -> priors 4..8
    in_both = [29.5 < x < 69.5 for x in xs]
    chosen = asg.fg[0].tolist()
    assert sum(chosen) == k
    assert all(chosen[i] for i in range(12) if in_both[i])  # in-both priors are always cheaper
    assert set(asg.labels[0][asg.fg[0]].tolist()) == {2}


def test_conflict_resolved_by_min_cost():
    # two identical-size GTs around one prior; the prior's prediction matches GT 1 better
    priors = _row_priors([0.0])
    gts = torch.tensor([[[-10.0, -10.0, 10.0, 10.0], [-9.0, -11.0, 11.0, 9.0]]])
    pred = torch.tensor([[[-9.0, -11.0, 11.0, 9.0]]])
    asg = AlignedOTA(num_classes=2)(torch.zeros(1, 1, 2), pred, priors, gts,
                                    torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.bool))
    assert asg.fg.tolist() == [[True]]
    assert asg.gt_index.tolist() == [[1]] and asg.labels.tolist() == [[1]]
    assert asg.ious[0, 0].item() == pytest.approx(1.0)


def test_outside_priors_and_empty_images():
    priors = _row_priors([0, 8, 500])
    gt_boxes, gt_labels, gt_mask = pad_targets([
        {"boxes": torch.tensor([[-4.0, -4.0, 12.0, 4.0]]), "labels": torch.tensor([0])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ])
    assert gt_mask.tolist() == [[True], [False]]
    pred = torch.tensor([[-4.0, -4.0, 12.0, 4.0]]).expand(2, 3, 4)
    asg = AlignedOTA(num_classes=1)(torch.zeros(2, 3, 1), pred, priors, gt_boxes, gt_labels,
                                    gt_mask)
    assert not asg.fg[1].any() and asg.labels[1].tolist() == [1, 1, 1]
    assert not asg.fg[0, 2]  # prior far outside box and centre region is never a candidate
    assert asg.fg[0].sum() >= 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_per_image_reference(seed):
    g = torch.Generator().manual_seed(seed)
    from damoyolo.models.heads.zero_head import make_priors
    priors = make_priors([(16, 16), (8, 8), (4, 4)], (8, 16, 32))
    a, c, b = priors.shape[0], 5, 4
    targets = []
    for i in range(b):
        n = [3, 0, 7, 1][i]
        xy = torch.rand(n, 2, generator=g) * 90
        wh = torch.rand(n, 2, generator=g) * 60 + 8
        targets.append({"boxes": torch.cat([xy, xy + wh], 1),
                        "labels": torch.randint(0, c, (n,), generator=g)})
    logits = torch.randn(b, a, c, generator=g) * 2
    ctr = priors[:, :2] + torch.randn(b, a, 2, generator=g) * 4
    half = torch.rand(b, a, 2, generator=g) * 40 + 2
    pred = torch.cat([ctr - half, ctr + half], -1)
    gb, gl, gm = pad_targets(targets)
    asg = AlignedOTA(num_classes=c)(logits, pred, priors, gb, gl, gm)
    for i, t in enumerate(targets):
        fg, gi, lab, iou = assign_one(logits[i].sigmoid(), pred[i], priors, t["boxes"],
                                      t["labels"], c)
        assert torch.equal(asg.fg[i], fg), f"image {i}"
        assert torch.equal(asg.gt_index[i][fg], gi[fg])
        assert torch.equal(asg.labels[i], lab)
        torch.testing.assert_close(asg.ious[i], iou)
    assert asg.num_pos > 0
