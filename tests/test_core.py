"""Structures, config overrides, box ops, NMS, checkpoints, preprocessing helpers, CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import damoyolo
from damoyolo.checkpoint import CheckpointError
from damoyolo.config import ConfigError, ModelConfig, apply_overrides, from_dict, to_dict
from damoyolo.models.backbones.structure import (StructureError, dump_structure,
                                                 dump_structure_official, load_structure,
                                                 packaged_structures, parse_structure)
from damoyolo.ops.boxes import (box_iou, bbox_to_distance, cxcywh_to_xyxy, distance_to_bbox,
                                generalized_iou, xyxy_to_cxcywh)
from damoyolo.ops.nms import batched_nms, greedy_nms_reference, multiclass_nms
from damoyolo.preprocess import ImageReadError, read_image, to_rgb_uint8

from conftest import shared_path

# ------------------------------------------------------------------ structures


def test_packaged_structures_equal_official_files():
    names = packaged_structures()
    assert len(names) == 8
    for name in names:
        official = parse_structure(shared_path("official", "structures", f"{name}.txt").read_text())
        assert load_structure(name) == official


def test_structure_formats_round_trip_and_v2_names(tmp_path):
    blocks = load_structure("tinynas_L25_k1kx")
    assert parse_structure(dump_structure(blocks)) == blocks
    assert parse_structure(dump_structure_official(blocks)) == blocks
    v2 = dump_structure_official(blocks).replace("SuperResConvK1KX", "SuperResK1KX")
    assert parse_structure(v2) == blocks
    p = tmp_path / "s.txt"
    p.write_text(v2)
    assert load_structure(str(p)) == blocks


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("[{'class': 'Nope', 'in': 3, 'out': 8}]", "unknown class"),
    ("[{'class': 'ConvKXBNRELU', 'in': 3, 'out': 8, 'k': 3, 's': 1},"
     " {'class': 'SuperResConvK1KX', 'in': 9, 'out': 16, 'k': 3, 's': 2, 'btn': 8, 'L': 1}]",
     "takes 9 channels but block 0 gives 8"),
    ("[{'class': 'ConvKXBNRELU', 'in': 3, 'k': 3, 's': 1}]", "lacks field 'out'"),
    ("__import__('os')", "not a structure literal"),
])
def test_structure_errors(text, match):
    with pytest.raises(StructureError, match=match):
        parse_structure(text, source="x.txt")


def test_unknown_structure_name():
    with pytest.raises(StructureError, match="neither a packaged structure"):
        load_structure("tinynas_nope")

# ------------------------------------------------------------------ config


def test_overrides_typed_and_strict():
    cfg = damoyolo.get_preset("damoyolo-s").model
    new = apply_overrides(cfg, ["head.num_classes=3", "backbone.act=silu", "input_size=(320, 480)",
                                "neck.out_channels=[64, 128, 256]"])
    assert new.head.num_classes == 3 and new.backbone.act == "silu"
    assert new.input_size == (320, 480) and new.neck.out_channels == (64, 128, 256)
    assert cfg.head.num_classes == 80  # frozen original untouched
    with pytest.raises(ConfigError, match="Did you mean head.num_classes|Did you mean num_classes"):
        apply_overrides(cfg, ["head.num_clases=3"])
    with pytest.raises(ConfigError, match="expected an integer"):
        apply_overrides(cfg, ["head.num_classes=2.5"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(cfg, ["head.num_classes"])
    assert from_dict(ModelConfig, json.loads(json.dumps(to_dict(new)))) == new
    with pytest.raises(ConfigError, match="unknown config key 'bogus'"):
        from_dict(ModelConfig, {"bogus": 1})

# ------------------------------------------------------------------ boxes


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

# ------------------------------------------------------------------ NMS


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

# ------------------------------------------------------------------ checkpoints & images


def test_save_load_roundtrip_atomic(tmp_path):
    m = damoyolo.build_model("damoyolo-ns", class_names=["cat", "dog"])
    path = tmp_path / "sub" / "m.pth"
    damoyolo.save_model(m, path, category_ids=[3, 7])
    assert sorted(os.listdir(path.parent)) == ["m.pth"]  # no temporary left behind
    r = damoyolo.load_model(path)
    assert r.class_names == ["cat", "dog"] and r.category_ids == [3, 7] and not r.training
    for (ka, va), (kb, vb) in zip(m.state_dict().items(), r.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    with pytest.raises(CheckpointError, match="holds damoyolo-ns, not damoyolo-t"):
        damoyolo.load_model(path, model="damoyolo-t")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        damoyolo.load_model(tmp_path / "absent.pth")


def test_image_normalisation(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_rgb_uint8(gray).shape == (3, 4, 3)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    assert to_rgb_uint8(rgba)[0, 0].tolist() == [200, 0, 0]
    deep = np.full((2, 2, 3), 65535, np.uint16)
    assert to_rgb_uint8(deep).max() == 255
    bgr = np.zeros((1, 1, 3), np.uint8)
    bgr[..., 0] = 9
    assert to_rgb_uint8(bgr, channel_order="bgr")[0, 0].tolist() == [0, 0, 9]
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.jpg: empty file"):
        read_image(tmp_path / "empty.jpg")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ImageReadError, match="bad.png: not a readable image"):
        read_image(tmp_path / "bad.png")

# ------------------------------------------------------------------ CLI


def test_cli_models_and_demo(tmp_path, capsys):
    from damoyolo.cli import main
    assert main(["models", "damoyolo-ns", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "damoyolo-ns" and abs(rows[0]["params_m"] - 1.406) < 0.01
    assert abs(rows[0]["gflops_bn_half"] - 1.56) < 0.0156
    assert main(["models", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["demo", "--smoke", "--out", str(tmp_path / "demo")]) == 0
    out = tmp_path / "demo"
    assert (out / "prediction.jpg").stat().st_size > 1000
    assert len(json.loads((out / "prediction.json").read_text())) == 10


def test_cli_demo_full_pipeline(tmp_path, capsys):
    """The README's main job at toy scale: synth -> train -> val (mAP printed) -> predict."""
    from damoyolo.cli import main
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--images", "20", "--epochs", "1", "--imgsz", "96",
                 "--batch", "4", "--conf", "0.0"]) == 0
    text = capsys.readouterr().out
    assert "mAP@[.5:.95]" in text and "4/4 predict" in text
    assert (out / "train" / "last.pt").exists() and (out / "train" / "results.png").exists()
    drawn = list((out / "predict").glob("*.jpg"))
    assert len(drawn) == 1 and drawn[0].stat().st_size > 1000
    results = json.loads((out / "val_results.json").read_text())  # COCO results written
    assert isinstance(results, list)  # (one toy epoch may leave every score under 0.03)
    assert all(set(r) >= {"image_id", "category_id", "bbox", "score"} for r in results)
