"""Trainer loop details: gradient accumulation, gradient clipping, resume with other epochs,
results.csv merge on resume, loss names, the checkpoint header, a TensorBoard that fails."""

from __future__ import annotations

import csv
import math
import sys

import pytest
import torch

from damoyolo.engine import Trainer
from damoyolo.losses.criterion import DAMOYOLOCriterion
from engine_standin import RectDataset, build_loader, tiny_cfg, tiny_model

torch.set_num_threads(1)


class _Recording:
    """A loader that keeps every batch it yields."""

    def __init__(self, loader, batches: list):
        self.loader, self.batches = loader, batches

    def __iter__(self):
        for images, targets in self.loader:
            self.batches.append((images.clone(), targets))
            yield images, targets


def _record_steps(tr: Trainer) -> list[dict]:
    """Wrap the optimizer's step: each call stores the model's gradients before stepping."""
    steps: list[dict] = []
    step = tr.optimizer.step

    def recording_step(*a, **k):
        steps.append({n: p.grad.detach().clone() for n, p in tr.model.named_parameters()
                      if p.grad is not None})
        return step(*a, **k)

    tr.optimizer.step = recording_step
    return steps


def test_gradient_accumulation_sums_the_micro_batches(tmp_path):
    batches: list = []

    def loader_fn(*a, **k):
        return _Recording(build_loader(*a, **k), batches)

    # 6 images, batch 2, nominal batch 4: accumulate 2; 3 iterations -> steps after 2 and 3
    cfg = tiny_cfg(tmp_path, epochs=1, batch_size=2, nominal_batch=4, no_aug_epochs=0,
                   warmup_epochs=0, channels_last=False, amp=False)
    tr = Trainer(tiny_model(), RectDataset(6, seed=1), cfg, loader_fn=loader_fn, progress=False)
    assert tr.accumulate == 2 and tr.iters_per_epoch == 3
    steps = _record_steps(tr)
    tr.train_one_epoch(0, tr._loader())
    assert len(steps) == 2 and tr.ema.updates == 2 and len(batches) == 3

    # the first step's gradients: the mean of the first two micro-batches' gradients
    ref = tiny_model().train()
    crit = DAMOYOLOCriterion(ref.head)
    for images, targets in batches[:2]:
        (crit(ref(images), targets)["loss"] / 2).backward()
    grads = {n: p.grad for n, p in ref.named_parameters() if p.grad is not None}
    assert set(grads) == set(steps[0])
    for n, g in grads.items():
        torch.testing.assert_close(steps[0][n], g, rtol=1e-4, atol=1e-6, msg=n)
    # not just the second micro-batch's (what a loop that zeroes every iteration would give)
    ref.zero_grad()
    images, targets = batches[1]
    (crit(ref(images), targets)["loss"] / 2).backward()
    name = "head.reg_preds.0.weight"
    assert not torch.allclose(steps[0][name], dict(ref.named_parameters())[name].grad)


def test_grad_clip_bounds_the_gradient_norm(tmp_path):
    norms = {}
    for clip in (0.0, 1e-3):
        cfg = tiny_cfg(tmp_path / str(clip), epochs=1, batch_size=2, nominal_batch=2,
                       no_aug_epochs=0, warmup_epochs=0, grad_clip=clip)
        tr = Trainer(tiny_model(), RectDataset(4, seed=1), cfg, loader_fn=build_loader,
                     progress=False)
        steps = _record_steps(tr)
        tr.train_one_epoch(0, tr._loader())
        assert len(steps) == 2
        norms[clip] = [math.sqrt(sum(float(g.double().pow(2).sum()) for g in s.values()))
                       for s in steps]
    assert min(norms[0.0]) > 1e-2  # unclipped gradients are far larger than the bound
    assert max(norms[1e-3]) <= 1e-3 * (1 + 1e-4)


def _csv_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_resume_with_more_epochs_follows_the_new_schedule(tmp_path):
    ds = RectDataset(4, seed=1)
    a = Trainer(tiny_model(), ds, tiny_cfg(tmp_path, epochs=2), loader_fn=build_loader,
                progress=False)
    a.fit()
    b = Trainer(tiny_model(seed=3), RectDataset(4, seed=1), tiny_cfg(tmp_path, epochs=3),
                loader_fn=build_loader, progress=False, resume=tmp_path / "last.pt")
    assert b.start_epoch == 2
    fresh = Trainer(tiny_model(), RectDataset(4, seed=1), tiny_cfg(tmp_path / "f", epochs=3),
                    loader_fn=build_loader, progress=False)
    assert b.schedule.state_dict() == fresh.schedule.state_dict()  # 3 epochs, not 2
    rec = b.fit()
    assert rec["epoch"] == 3
    last_it = 3 * b.iters_per_epoch - 1
    assert rec["lr"] == pytest.approx(fresh.schedule(last_it))
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["epoch"] == 2 and [h["epoch"] for h in ck["history"]] == [1, 2, 3]
    assert [r["epoch"] for r in _csv_rows(tmp_path / "results.csv")] == ["1", "2", "3"]


def test_resume_merges_results_csv(tmp_path):
    """A run killed after writing epoch 2's row but before its checkpoint: the resumed run
    rewrites epoch 2's row, keeps epoch 1's, and the header covers both epochs' columns."""
    val = RectDataset(2, seed=2)
    cfg = tiny_cfg(tmp_path, epochs=2, eval_interval=2)
    a = Trainer(tiny_model(), RectDataset(4, seed=1), cfg, val_set=val,
                val_gt=val.to_coco_dict(), loader_fn=build_loader, progress=False)
    tr_loader = a._loader()
    a.out_dir.mkdir(parents=True, exist_ok=True)
    record = {"epoch": 1, **a.train_one_epoch(0, tr_loader), "time_s": 1.0}
    a.history.append(record)
    for callback in a.epoch_end_callbacks():
        callback(0, record)
    first = _csv_rows(tmp_path / "results.csv")
    assert [r["epoch"] for r in first] == ["1"] and "val_AP" not in first[0]
    with open(tmp_path / "results.csv", "a") as f:  # the killed run's row of epoch 2
        f.write("2," + ",".join("999" for _ in range(len(first[0]) - 1)) + "\n")

    b = Trainer(tiny_model(seed=3), RectDataset(4, seed=1), cfg, val_set=val,
                val_gt=val.to_coco_dict(), loader_fn=build_loader, progress=False,
                resume=tmp_path / "last.pt")
    rec = b.fit()
    rows = _csv_rows(tmp_path / "results.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0] == {**first[0], **{k: "" for k in rows[0] if k not in first[0]}}
    assert float(rows[1]["loss"]) == pytest.approx(rec["loss"]) and rows[1]["loss"] != "999"
    assert "val_AP" in rows[1] and rows[1]["val_AP"] != "" and rows[0]["val_AP"] == ""


def test_loss_names_come_from_the_criterion_and_the_task(tmp_path):
    tr = Trainer(tiny_model(), RectDataset(2, seed=1), tiny_cfg(tmp_path),
                 loader_fn=build_loader, progress=False)
    images, targets = next(iter(build_loader(RectDataset(2, seed=1), 2, 0, False, 0)))
    losses = tr.criterion(tr.model(images), targets)
    assert set(tr.loss_names) == set(losses) - {"num_pos"}
    assert tr.loss_names[0] == "loss"

    class Task:
        loss_names = ("loss_extra",)
        module = torch.nn.Identity()

        def bind(self, *a):
            pass

    tr = Trainer(tiny_model(), RectDataset(2, seed=1), tiny_cfg(tmp_path), task=Task(),
                 loader_fn=build_loader, progress=False)
    assert tr.loss_names == DAMOYOLOCriterion.loss_names + ("loss_extra",)


def test_training_and_model_checkpoints_share_one_header(tmp_path):
    from damoyolo import save_model
    from damoyolo.checkpoint import checkpoint_header
    tr = Trainer(tiny_model(), RectDataset(2, seed=1), tiny_cfg(tmp_path),
                 category_ids=[4, 5, 6], loader_fn=build_loader, progress=False)
    save_model(tr.model, tmp_path / "m.pt", category_ids=[4, 5, 6])
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    header = checkpoint_header(tr.model, [4, 5, 6])
    state = tr.state(0)
    for key in header:
        if key == "model":
            for k, v in header["model"].items():
                assert torch.equal(state["model"][k], v) and torch.equal(saved["model"][k], v)
        else:
            assert state[key] == saved[key] == header[key], key
    assert set(saved) == set(header) and set(header) < set(state)


def test_a_tensorboard_that_fails_to_start_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    tr = Trainer(tiny_model(), RectDataset(2, seed=1), tiny_cfg(tmp_path, tensorboard=True),
                 loader_fn=build_loader, progress=False)
    assert tr._tensorboard() is None
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("warning: train.tensorboard is set but "
                                               "TensorBoard did not start")
    tr = Trainer(tiny_model(), RectDataset(2, seed=1), tiny_cfg(tmp_path, tensorboard=False),
                 loader_fn=build_loader, progress=False)
    assert tr._tensorboard() is None and capsys.readouterr().out == ""
