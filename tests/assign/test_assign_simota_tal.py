"""SimOTA and TAL on small hand-computed cases, the assigner switch, and DDP + distillation
with each assigner."""

import math
import os

import pytest
import torch

from damoyolo.assign import ASSIGNERS, AlignedOTA, SimOTA, TaskAlignedAssigner, build_assigner
from damoyolo.config import ConfigError

torch.set_num_threads(1)

GT = torch.tensor([[[0.0, 0.0, 40.0, 40.0]]])  # (B=1, M=1, 4)
LAB = torch.tensor([[0]])
MASK = torch.tensor([[True]])
# priors A, B, C inside the GT box and its centre region; D far away (no candidate)
PRIORS = torch.tensor([[8.0, 8.0, 8.0, 8.0], [16.0, 16.0, 8.0, 8.0], [24.0, 24.0, 8.0, 8.0],
                       [100.0, 100.0, 8.0, 8.0]])
# predicted boxes nested in the GT: IoU = height / 40 -> 0.9, 0.85, 0.5 (D: 1.0, ignored)
IOUS = [0.9, 0.85, 0.5, 1.0]
BOXES = torch.tensor([[[0.0, 0.0, 40.0, 40.0 * u] for u in IOUS]])
P_GT = [0.05, 0.9, 0.99, 0.99]  # probability of the GT's class per prior
P_OTHER = 0.01  # the other class, everywhere


def _logits(p_gt=P_GT):
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    return torch.tensor([[[logit(p), logit(P_OTHER)] for p in p_gt]])


def _bce(p, y):
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_simota_uses_the_hard_label_cost_and_dynamic_k():
    # k = int(0.9 + 0.85 + 0.5) = 2 (D is no candidate, its IoU does not count)
    cost = {i: _bce(P_GT[i], 1) + _bce(P_OTHER, 0) + 3 * -math.log(IOUS[i] + 1e-8)
            for i in range(3)}
    expect = sorted(cost, key=cost.get)[:2]
    assert sorted(expect) == [1, 2]  # B and C: confident class, despite C's lower IoU
    asg = SimOTA(2)(_logits(), BOXES, PRIORS, GT, LAB, MASK)
    assert asg.fg[0].tolist() == [False, True, True, False]
    assert asg.ious[0, 1].item() == pytest.approx(0.85, abs=1e-5)  # soft target = IoU
    assert asg.ious[0, 2].item() == pytest.approx(0.5, abs=1e-5)
    assert asg.labels[0].tolist() == [2, 0, 0, 2]


def test_aligned_ota_differs_from_simota_on_the_same_case():
    # AlignedOTA's soft-label cost: BCE(p, IoU) * (IoU - p)^2 for the GT class
    cost = {i: _bce(P_GT[i], IOUS[i]) * (IOUS[i] - P_GT[i]) ** 2 + 3 * -math.log(IOUS[i] + 1e-7)
            for i in range(3)}
    assert sorted(sorted(cost, key=cost.get)[:2]) == [0, 1]  # A and B: the aligned ones
    asg = AlignedOTA(2)(_logits(), BOXES, PRIORS, GT, LAB, MASK)
    assert asg.fg[0].tolist() == [True, True, False, False]


def test_tal_metric_topk_and_normalised_targets():
    t = [P_GT[i] * IOUS[i] ** 6 for i in range(3)]
    tal = TaskAlignedAssigner(2, topk=2)
    asg = tal(_logits(), BOXES, PRIORS, GT, LAB, MASK)
    top2 = sorted(sorted(range(3), key=lambda i: -t[i])[:2])
    assert top2 == [0, 1]
    assert asg.fg[0].tolist() == [True, True, False, False]
    max_u, max_t = max(IOUS[0], IOUS[1]), max(t[0], t[1])
    assert asg.ious[0, 1].item() == pytest.approx(t[1] * max_u / max_t, rel=1e-5)
    assert asg.ious[0, 0].item() == pytest.approx(t[0] * max_u / max_t, rel=1e-4)
    # default top-13 takes every prior inside the box, never one outside it
    asg13 = TaskAlignedAssigner(2)(_logits(), BOXES, PRIORS, GT, LAB, MASK)
    assert asg13.fg[0].tolist() == [True, True, True, False]
    # a prior whose point is in the centre region but outside the box is no TAL candidate
    inside_ctr = torch.tensor([[44.0, 20.0, 8.0, 8.0]])
    none = TaskAlignedAssigner(2)(_logits([0.99]), BOXES[:, :1], inside_ctr, GT, LAB, MASK)
    assert not none.fg.any()


def test_conflicts_simota_min_cost_tal_max_iou():
    # two GTs, one prior inside both; prior 0 predicts a box matching GT 1 better
    gts = torch.tensor([[[0.0, 0.0, 40.0, 40.0], [10.0, 10.0, 50.0, 50.0]]])
    labs, mask = torch.tensor([[0, 1]]), torch.tensor([[True, True]])
    priors = torch.tensor([[20.0, 20.0, 8.0, 8.0]])
    boxes = torch.tensor([[[9.0, 9.0, 50.0, 50.0]]])
    logits = _logits([0.5])  # p(class 0) 0.5, p(class 1) 0.01
    s = SimOTA(2)(logits, boxes, priors, gts, labs, mask)
    t = TaskAlignedAssigner(2)(logits, boxes, priors, gts, labs, mask)
    assert s.fg.all() and t.fg.all()
    # SimOTA: cost GT0 = BCE(.5,1)+BCE(.01,0) + 3(-log IoU0) vs GT1 = BCE(.5,0)+BCE(.01,1) + ...
    from damoyolo.ops.boxes import box_iou
    iou = box_iou(boxes, gts)[0, 0]
    c0 = _bce(0.5, 1) + _bce(0.01, 0) - 3 * math.log(iou[0])
    c1 = _bce(0.5, 0) + _bce(0.01, 1) - 3 * math.log(iou[1])
    assert s.gt_index.item() == (0 if c0 < c1 else 1)
    assert t.gt_index.item() == int(iou.argmax())  # TAL: largest IoU
    assert s.gt_index.item() != t.gt_index.item()  # the case tells them apart


@pytest.mark.parametrize("name", list(ASSIGNERS))
def test_no_gt_and_padding(name):
    a = build_assigner(name, 2)
    gts = torch.zeros(2, 2, 4)
    gts[0, 0] = GT[0, 0]
    mask = torch.tensor([[True, False], [False, False]])
    logits = _logits().expand(2, 4, 2).contiguous()
    asg = a(logits, BOXES.expand(2, 4, 4), PRIORS, gts, torch.zeros(2, 2, dtype=torch.long), mask)
    assert asg.fg[0].any() and not asg.fg[1].any()
    assert (asg.labels[1] == 2).all() and (asg.ious[1] == 0).all()
    assert (asg.gt_index[0][asg.fg[0]] == 0).all()  # never the padded slot


def test_unknown_assigner_is_a_config_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown assigner 'otaa'.*aligned_ota, simota, tal"):
        build_assigner("otaa", 3)
    # training checks the name with the same validator, before the data is read
    import damoyolo.data as data_pkg
    import damoyolo.workflows.train as api

    def no_reading(*a, **k):
        raise AssertionError("the data was read before the assigner name was checked")
    monkeypatch.setattr(data_pkg, "load_dataset", no_reading)
    with pytest.raises(ConfigError) as e:
        api.train("damoyolo-ns", data=str(tmp_path / "no-data"), output=tmp_path / "run",
                  overrides=["train.assigner='otaa'", "train.eval_interval=0"], progress=False)
    assert str(e.value) == ("unknown assigner 'otaa' (train.assigner); valid: aligned_ota, "
                            "simota, tal")


@pytest.mark.parametrize("name", ["simota", "tal"])
def test_training_records_the_assigner(tmp_path, name):
    from damoyolo.engine import Trainer
    from engine_standin import RectDataset, build_loader, tiny_cfg, tiny_model

    cfg = tiny_cfg(tmp_path, epochs=1, no_aug_epochs=0, assigner=name)
    tr = Trainer(tiny_model(), RectDataset(4, seed=3), cfg, loader_fn=build_loader,
                 progress=False)
    assert isinstance(tr.criterion.assigner, ASSIGNERS[name])
    rec = tr.fit()
    assert math.isfinite(rec["loss"]) and rec["loss_giou"] > 0
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["train_config"]["assigner"] == name


def _ddp_worker(rank, world, port, out_dir):
    from engine_standin import rank_env
    rank_env(rank, world, port)
    import dataclasses

    from damoyolo import build_model
    from damoyolo.config import DistillConfig
    from damoyolo.distill import DistillTask
    from damoyolo.engine import Trainer
    from damoyolo.engine import distributed as du
    from engine_standin import RectDataset, build_loader, tiny_cfg, tiny_model

    assigner = os.path.basename(out_dir)
    model = tiny_model()
    teacher = build_model("damoyolo-ns")
    teacher.cfg = dataclasses.replace(teacher.cfg, input_size=(64, 64))
    cfg = tiny_cfg(out_dir, warmup_epochs=0.5, base_lr_per_img=0.001, assigner=assigner)
    task = DistillTask(teacher, DistillConfig())
    tr = Trainer(model, RectDataset(4, seed=3), cfg, loader_fn=build_loader, progress=False,
                 task=task)
    rec = tr.fit()
    torch.save({"model": dict(tr.model.named_parameters()), "last": rec,
                "distill": [h["loss_distill"] for h in tr.history]},
               os.path.join(out_dir, f"rank{rank}.pt"))
    du.cleanup()


@pytest.mark.parametrize("name", ["simota", "tal"])
def test_two_process_ddp_with_distillation(tmp_path, name):
    from engine_standin import spawn_two_ranks
    out = tmp_path / name
    out.mkdir()
    a, b = spawn_two_ranks(_ddp_worker, out)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), f"{k} differs between ranks"
    assert a["distill"][0] > 0 and math.isfinite(a["last"]["loss"])
    assert torch.load(out / "last.pt", weights_only=True)["train_config"]["assigner"] == name
