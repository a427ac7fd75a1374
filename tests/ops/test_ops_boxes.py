"""Box ops on hand-computed cases: IoU, GIoU, format conversions, point distances."""

from __future__ import annotations

import torch

from damoyolo.ops.boxes import (box_iou, bbox_to_distance, cxcywh_to_xyxy, distance_to_bbox,
                                generalized_iou, xyxy_to_cxcywh)


def test_box_ops_hand_cases():
    a = torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 15]])
    b = torch.tensor([[0.0, 0, 10, 10], [10, 10, 20, 20], [20, 20, 30, 30]])
    iou = box_iou(a, b)
    assert torch.allclose(iou, torch.tensor([[1.0, 0, 0], [25 / 175, 25 / 175, 0]]))
    g = generalized_iou(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[20.0, 0, 30, 10]]))
    assert torch.allclose(g, torch.tensor([0 - (300 - 200) / 300]), atol=1e-5)
    boxes = torch.tensor([[2.0, 4, 12, 10]])
    assert torch.allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(boxes)), boxes)
    pts = torch.tensor([[5.0, 5]])
    d = bbox_to_distance(pts, boxes)
    assert torch.equal(d, torch.tensor([[3.0, 1, 7, 5]]))
    assert torch.equal(distance_to_bbox(pts, d), boxes)
    assert torch.allclose(bbox_to_distance(pts, boxes, max_dist=4), torch.tensor([[3.0, 1, 3.9, 3.9]]))
