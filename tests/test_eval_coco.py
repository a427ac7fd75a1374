"""COCO evaluation: hand-made ground truth and detections, and evaluate() on a tiny model."""

import json
import math

import pytest
import torch

from damoyolo.eval import coco_metrics, evaluate, format_report
from engine_standin import RectDataset, build_loader

torch.set_num_threads(1)


def _gt():
    return {"images": [{"id": 10, "width": 100, "height": 80}, {"id": 11, "width": 100,
                                                                 "height": 80}],
            "annotations": [
                {"id": 1, "image_id": 10, "category_id": 7, "bbox": [10, 10, 30, 20],
                 "area": 600, "iscrowd": 0},
                {"id": 2, "image_id": 11, "category_id": 9, "bbox": [50, 30, 40, 40],
                 "area": 1600, "iscrowd": 0}],
            "categories": [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}]}


def test_perfect_and_partial_detections():
    perfect = [{"image_id": 10, "category_id": 7, "bbox": [10, 10, 30, 20], "score": 0.9},
               {"image_id": 11, "category_id": 9, "bbox": [50, 30, 40, 40], "score": 0.8}]
    m, per = coco_metrics(_gt(), perfect)
    assert m["AP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0)
    assert per == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0)}
    # the dog box shifted so IoU = 0.6: counts at thresholds .50 .55 .60 only -> AP 3/10
    shifted = [perfect[0], {**perfect[1], "bbox": [60, 30, 40, 40]}]
    m, per = coco_metrics(_gt(), shifted)
    assert per["dog"] == pytest.approx(0.3, abs=1e-6)
    assert m["AP"] == pytest.approx(0.65, abs=1e-6)
    assert coco_metrics(_gt(), [])[0]["AP"] == 0.0


def test_evaluate_writes_results_with_original_ids(tmp_path):
    from damoyolo import build_model
    torch.manual_seed(0)
    model = build_model("damoyolo-ns", class_names=["a", "b", "c"])
    val = RectDataset(3, seed=2)
    loader = build_loader(val, batch_size=2, workers=0, shuffle=False, seed=0)
    gt = val.to_coco_dict()
    res = evaluate(model, loader, gt, category_ids=[1, 2, 3], conf_thresh=0.0,
                   results_path=tmp_path / "r.json")
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved and {d["category_id"] for d in saved} <= {1, 2, 3}
    assert {d["image_id"] for d in saved} <= {1, 2, 3}
    assert res.num_images == 3 and set(res.timing_ms) == {"preprocess", "inference", "nms"}
    assert 0.0 <= res.metrics["AP"] <= 1.0
    text = format_report(res)
    assert "AP50" in text and "per image" in text
