"""COCO evaluation: hand-made ground truth and detections, and evaluate() on a tiny model."""

import json
import math

import pytest
import torch

from damoyolo.eval import Predictor, coco_metrics, evaluate, format_report
from damoyolo.postprocess import Detections
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
    model.train()
    res = evaluate(Predictor.from_model(model, conf_thresh=0.0), loader, gt,
                   category_ids=[1, 2, 3], results_path=tmp_path / "r.json")
    assert model.training  # evaluated in eval mode, training mode restored
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved and {d["category_id"] for d in saved} <= {1, 2, 3}
    assert {d["image_id"] for d in saved} <= {1, 2, 3}
    assert res.num_images == 3 and set(res.timing_ms) == {"preprocess", "inference", "nms"}
    # the metrics are those of the written results (not of some other set of detections)
    m, _ = coco_metrics(gt, saved)
    assert res.metrics["AP"] == pytest.approx(m["AP"]) and res.metrics["AP50"] == pytest.approx(m["AP50"])
    text = format_report(res)
    assert "AP50" in text and "per image" in text


class _Batches:
    """Two 64x64 input batches of one image each, originals 80x100 (h, w), ids 10 and 11."""

    def __iter__(self):
        for image_id in (10, 11):
            yield torch.zeros(1, 3, 64, 64), [{"image_id": image_id, "orig_size": (80, 100)}]


def test_evaluate_takes_any_images_to_detections_callable(tmp_path):
    """A plain callable: boxes scaled to original pixels with the results helper's rounding,
    labels mapped to the category ids; the ground-truth boxes score AP 1."""
    gt = _gt()
    seen = []

    def predict(images):  # the ground truth, in 64x64 input pixels
        i = len(seen)
        seen.append(images.shape)
        x, y, w, h = gt["annotations"][i]["bbox"]
        box = torch.tensor([[x, y, x + w, y + h]]) * torch.tensor([0.64, 0.8, 0.64, 0.8])
        return [Detections(box, torch.tensor([0.9]), torch.tensor([i]))]

    res = evaluate(predict, _Batches(), gt, results_path=tmp_path / "r.json")
    assert seen == [(1, 3, 64, 64)] * 2
    assert res.metrics["AP"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert [d["category_id"] for d in saved] == [7, 9]  # default: gt category order
    assert saved[0]["bbox"] == pytest.approx([10, 10, 30, 20], abs=0.01)
    assert all(v == round(v, 2) for d in saved for v in d["bbox"])
    assert set(res.timing_ms) == {"preprocess", "inference", "nms"}


def test_predictor_stages_are_timed_apart():
    calls = []
    pred = Predictor(lambda x: calls.append("forward") or x.shape[0],
                     lambda n: calls.append("post") or [Detections(torch.zeros(0, 4),
                                                                   torch.zeros(0),
                                                                   torch.zeros(0, dtype=torch.long))] * n,
                     category_ids=[7, 9])
    res = evaluate(pred, _Batches(), _gt())
    assert calls == ["forward", "post"] * 2 and res.num_images == 2
    assert res.metrics["AP"] == 0.0 and res.results == []
