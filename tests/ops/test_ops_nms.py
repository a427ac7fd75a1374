"""Batched and multiclass NMS equal the greedy reference, with caps, blocks and empty input."""

from __future__ import annotations

import pytest
import torch

from damoyolo.ops.nms import batched_nms, greedy_nms_reference, multiclass_nms


def _random_dets(n, classes, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 200
    wh = 5 + torch.rand(n, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(n, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    return boxes, scores, labels


@pytest.mark.parametrize("n,classes,thr", [(1, 1, 0.5), (50, 1, 0.5), (400, 3, 0.65),
                                           (1500, 20, 0.7), (800, 2, 0.3)])
def test_nms_equals_greedy(n, classes, thr):
    boxes, scores, labels = _random_dets(n, classes, seed=n)
    ours = batched_nms(boxes, scores, labels, thr)
    ref = greedy_nms_reference(boxes, scores, labels, thr)
    assert ours.tolist() == ref.tolist()


@pytest.mark.parametrize("block", [1, 3, 16, 4096])
@pytest.mark.parametrize("max_det", [None, 5, 40])
def test_nms_blocks_and_early_stop_equal_greedy(block, max_det):
    """Exact for any block size (multi-round paths) and with the max_det early stop;
    clustered boxes make long suppression chains."""
    g = torch.Generator().manual_seed(block * 7 + (max_det or 0))
    centres = torch.rand(12, 2, generator=g) * 200
    pick = torch.randint(0, 12, (600,), generator=g)
    xy = centres[pick] + torch.randn(600, 2, generator=g) * 6
    wh = torch.rand(600, 2, generator=g) * 30 + 10
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(600, generator=g)
    scores[:50] = scores[50:100]  # ties
    labels = torch.randint(0, 3, (600,), generator=g)
    ref = greedy_nms_reference(boxes, scores, labels, 0.45)
    ours = batched_nms(boxes, scores, labels, 0.45, max_det=max_det, block=block)
    assert ours.tolist() == (ref if max_det is None else ref[:max_det]).tolist()


def test_nms_caps_and_empty():
    boxes, scores, labels = _random_dets(300, 4, seed=1)
    full = batched_nms(boxes, scores, labels, 0.5)
    assert batched_nms(boxes, scores, labels, 0.5, max_det=7).tolist() == full[:7].tolist()
    top = batched_nms(boxes, scores, labels, 0.5, pre_nms_topk=50)
    ref_idx = torch.argsort(scores, descending=True)[:50]
    ref = ref_idx[greedy_nms_reference(boxes[ref_idx], scores[ref_idx], labels[ref_idx], 0.5)]
    assert top.tolist() == ref.tolist()
    e = batched_nms(boxes[:0], scores[:0], labels[:0], 0.5)
    assert e.numel() == 0 and e.dtype == torch.long
    kb, ks, kl = multiclass_nms(torch.zeros(10, 3), torch.zeros(10, 4), 0.05, 0.5)
    assert kb.shape == (0, 4) and ks.shape == (0,) and kl.shape == (0,)


def test_multiclass_nms_threshold_and_classes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    scores = torch.tensor([[0.9, 0.8], [0.85, 0.04], [0.03, 0.6]])
    b, s, lab = multiclass_nms(scores, boxes, 0.05, 0.5)
    # class 0: box 1 suppressed by box 0; class 1: box 0 (0.8) and box 2 (0.6); box 1 below thr
    assert s.tolist() == pytest.approx([0.9, 0.8, 0.6])
    assert lab.tolist() == [0, 1, 1]
