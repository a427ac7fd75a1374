"""Distillation task in the trainer: frozen teacher, gradients, two-stage schedule, resume."""

import dataclasses

import pytest
import torch

from damoyolo import build_model, load_model, save_model
from damoyolo.checkpoint import CheckpointError, atomic_save
from damoyolo.cli import main
from damoyolo.config import DistillConfig
from damoyolo.distill import DistillTask, load_teacher
from damoyolo.engine import Trainer
from damoyolo.losses.criterion import DAMOYOLOCriterion
from engine_standin import RectDataset, build_loader, collate, tiny_cfg, tiny_model

torch.set_num_threads(1)


def _student(seed=0):
    return tiny_model(seed=seed)


def _teacher(seed=1):
    # 80 classes, wider neck (64/128/256 vs 40/80/160)
    return tiny_model("damoyolo-nm", seed=seed, class_names=None)


def _cfg(tmp_path, **kw):
    return tiny_cfg(tmp_path, **{"epochs": 3, **kw})


@pytest.mark.parametrize("method", ["cwd", "mimic"])
def test_gradients_reach_only_student_and_align(method):
    task = DistillTask(_teacher(), DistillConfig(method=method))
    model = _student()
    task.bind(model, torch.device("cpu"), total_iters=10, no_aug_iters=2)
    images, targets = collate([RectDataset(2, seed=3)[i] for i in range(2)])
    out, extra = task.forward(model, images, iteration=0)
    assert extra["loss_distill"].item() > 0
    # the distillation loss alone reaches the student's backbone and neck through the align
    # module, never the teacher (and never the head, which it does not see)
    extra["loss_distill"].backward()
    assert all(p.grad is None and not p.requires_grad for p in task.teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in task.module.parameters())
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items()
               if n.startswith("neck."))
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items()
               if n.startswith("backbone."))
    assert all(g is None for n, g in grads.items() if n.startswith("head."))
    assert not task.teacher.training


def test_distillation_run_two_stage_teacher_frozen_and_exact_resume(tmp_path):
    teacher = _teacher()
    ds = RectDataset(8, seed=1, empty=(3,))
    task = DistillTask(teacher, DistillConfig(weight=0.5, final_ratio=0.1))
    frozen = {k: v.clone() for k, v in task.teacher.state_dict().items()}
    a = Trainer(_student(), ds, _cfg(tmp_path / "a"), loader_fn=build_loader, progress=False,
                task=task)
    calls = []
    hook = task.teacher.neck.register_forward_hook(lambda *a: calls.append(1))
    assert a.iters_per_epoch == 2 and task.phase_end == 4  # epochs 1-2 distil, 3 does not
    params = {id(p) for g in a.optimizer.param_groups for p in g["params"]}
    assert {id(p) for p in task.module.parameters()} <= params  # align is optimised
    assert not params & {id(p) for p in task.teacher.parameters()}  # the teacher is not
    align0 = [p.detach().clone() for p in task.module.parameters()]
    a.fit()
    hook.remove()
    h = a.history
    assert h[0]["loss_distill"] > 0 and h[1]["loss_distill"] > 0
    assert h[2]["loss_distill"] == 0.0 and ds.strong is False  # no-aug phase: switched off
    assert len(calls) == 4  # the teacher ran in the 4 distillation iterations only
    assert not task.teacher.training
    for k, v in task.teacher.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    assert any(not torch.equal(p, q) for p, q in zip(task.module.parameters(), align0))
    # weights decay by cosine over the distillation phase, then 0
    assert [task.weight(i) for i in (0, 2, 4, 5)] == pytest.approx([0.5, 0.275, 0.0, 0.0])

    ck = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    assert set(ck["task"]) == {f"align.{i}.{w}" for i in range(3) for w in ("weight", "bias")}
    assert not any("align" in k for k in ck["model"])
    exported = load_model(tmp_path / "a" / "last.pt")  # the student alone (EMA weights)
    assert exported.cfg.name == "damoyolo-ns" and exported.num_classes == 3

    # the same run killed after its first epoch, then resumed in a fresh process state
    b1 = Trainer(_student(), RectDataset(8, seed=1, empty=(3,)), _cfg(tmp_path / "b"),
                 loader_fn=build_loader, progress=False,
                 task=DistillTask(_teacher(), DistillConfig(weight=0.5, final_ratio=0.1)))
    b1.train_one_epoch(0, b1._loader())
    atomic_save(b1.state(0), tmp_path / "b" / "last.pt")
    task2 = DistillTask(_teacher(), DistillConfig(weight=0.5, final_ratio=0.1))
    b2 = Trainer(_student(seed=5), RectDataset(8, seed=1, empty=(3,)), _cfg(tmp_path / "b"),
                 loader_fn=build_loader, progress=False, resume=tmp_path / "b" / "last.pt",
                 task=task2)
    assert b2.start_epoch == 1
    b2.fit()
    ck2 = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    for part in ("model", "ema", "task"):
        for k, v in ck[part].items():
            assert torch.equal(v, ck2[part][k]), f"{part}.{k}"

    # resuming a distillation checkpoint without the teacher is refused, and vice versa
    with pytest.raises(ValueError, match="with a training task"):
        Trainer(_student(), RectDataset(8, seed=1), _cfg(tmp_path / "c"), loader_fn=build_loader,
                progress=False, resume=tmp_path / "b" / "last.pt")


def test_teacher_sources_and_alignment_errors(tmp_path):
    from conftest import shared_path
    t = _teacher()
    save_model(t, tmp_path / "teacher.pt")
    ours = load_teacher(str(tmp_path / "teacher.pt"))
    assert ours.cfg.name == "damoyolo-nm" and not ours.training
    with pytest.warns(UserWarning, match="random weights"):
        assert load_teacher("damoyolo-ns").cfg.name == "damoyolo-ns"
    with pytest.raises(FileNotFoundError, match="nor a preset name"):
        load_teacher(str(tmp_path / "missing.pth"))

    # strides must match
    odd = _teacher()
    odd.cfg = dataclasses.replace(odd.cfg, head=dataclasses.replace(odd.cfg.head,
                                                                    strides=(16, 32, 64)))
    with pytest.raises(ValueError, match="do not align"):
        DistillTask(odd).bind(_student(), torch.device("cpu"), 10, 2)
    # a teacher built for another input size is accepted (maps align) with a warning
    with pytest.warns(UserWarning, match="sees the student's"):
        DistillTask(build_model("damoyolo-nm")).bind(_student(), torch.device("cpu"), 10, 2)

    official = shared_path("official", "ref", "damoyolo_tinynasL18_Ns_seed0.pth")
    with pytest.raises(CheckpointError, match="--teacher-model"):
        load_teacher(str(official))
    t_off = load_teacher(str(official), "damoyolo-ns")
    assert t_off.cfg.name == "damoyolo-ns" and t_off.num_classes == 80


def test_cli_distill_alias_and_teacher_errors(capsys):
    with pytest.raises(SystemExit):
        main(["distill", "--data", "nowhere"])  # --teacher is required
    assert "--teacher" in capsys.readouterr().err
    assert main(["train", "--data", "nowhere", "--teacher", "nope.pth"]) == 2
    assert "no such checkpoint file, nor a preset name" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="random weights"):
        assert main(["distill", "--data", "nowhere", "--teacher", "damoyolo-ns",
                     "--set", "distill.method=kd"]) == 2
    assert "unknown distill.method 'kd'" in capsys.readouterr().err
    assert main(["train", "--data", "nowhere", "--set", "distill.wieght=1"]) == 2
    assert "Did you mean weight" in capsys.readouterr().err


def test_balance_sets_the_gradient_ratio_at_the_neck_outputs():
    """Each level's own gradient (the head's input, the distillation loss's input)."""
    cfg = DistillConfig(weight=0.3, final_ratio=0.1, balance=True, balance_momentum=0.0)
    task = DistillTask(_teacher(), cfg)
    model = _student()
    task.bind(model, torch.device("cpu"), total_iters=100, no_aug_iters=0)
    assert "grad_norms" in task.module.state_dict()
    images, targets = collate([RectDataset(2, seed=3)[i] for i in range(2)])
    crit = DAMOYOLOCriterion(model.head)
    norms = {}

    seen = {"det": [], "kd": []}  # the tensors the head and the distillation loss receive
    model.head.register_forward_pre_hook(lambda m, args: seen["det"].extend(args[0]))
    task.module.register_forward_pre_hook(lambda m, args: seen["kd"].extend(args[0]))

    def step():  # one forward/backward on the same batch, no parameter update
        seen["det"].clear()
        seen["kd"].clear()
        out, extra = task.forward(model, images, iteration=0)
        det = crit(out, targets)["loss"]
        g_det = torch.autograd.grad(det, seen["det"], retain_graph=True)
        g_kd = torch.autograd.grad(extra["loss_distill"], seen["kd"], retain_graph=True)
        (det + extra["loss_distill"]).backward()
        norms["det"] = [g.norm() for g in g_det]
        norms["kd"] = [g.norm() for g in g_kd]
        model.zero_grad()

    step()  # first iteration: weight as in the release (no measurement yet), then measured
    step()  # second: each level scaled so that |g_distill| = weight * |g_det| there
    for lv in range(3):
        assert norms["kd"][lv] / norms["det"][lv] == pytest.approx(0.3, rel=1e-4)
    # the release's behaviour without balance: the loss scaled by the weight alone
    plain = DistillTask(_teacher(), DistillConfig(weight=0.3, final_ratio=0.1))
    plain.bind(model, torch.device("cpu"), total_iters=100, no_aug_iters=0)
    assert "grad_norms" not in plain.module.state_dict()


def test_arms_differ_only_in_the_teacher_term(tmp_path):
    """A distillation run whose teacher term is zero trains the student exactly as a run
    without a teacher at the same gradient clipping: same initial weights, batches,
    augmentation and updates (the align module does not draw from the student's streams)."""
    ds = RectDataset(8, seed=1)
    cfg = dict(grad_clip=30.0, epochs=2)
    a = Trainer(_student(), ds, _cfg(tmp_path / "a", **cfg), loader_fn=build_loader,
                progress=False)
    a.fit()
    b = Trainer(_student(), ds, _cfg(tmp_path / "b", **cfg), loader_fn=build_loader,
                progress=False, task=DistillTask(_teacher(), DistillConfig(weight=0.0)))
    b.fit()
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = Trainer(_student(), ds, _cfg(tmp_path / "c", **cfg), loader_fn=build_loader,
                progress=False, task=DistillTask(_teacher(), DistillConfig(weight=0.5)))
    c.fit()
    assert not all(torch.equal(sa[k], c.model.state_dict()[k]) for k in sa)


def test_align_module_init_touches_no_accelerator_generator(monkeypatch):
    """The align weights come from their own CPU stream: the same weights as a module built
    right after ``torch.manual_seed(initial_seed + 1)``, the CPU stream restored afterwards,
    and no accelerator generator reseeded (``torch.manual_seed`` would reseed them all)."""
    from damoyolo.distill.losses import FeatureDistillLoss
    task = DistillTask(_teacher(), DistillConfig())
    model = _student()
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda s: reseeded.append(("cuda", s)))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda s: reseeded.append(("cuda", s)))
    if hasattr(torch, "mps"):
        monkeypatch.setattr(torch.mps, "manual_seed", lambda s: reseeded.append(("mps", s)))
    state = torch.get_rng_state()
    task.bind(model, torch.device("cpu"), total_iters=10, no_aug_iters=2)
    assert torch.equal(torch.get_rng_state(), state) and reseeded == []
    monkeypatch.undo()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch.initial_seed() % 2**63 + 1)
        ref = FeatureDistillLoss(list(task.module.align[i].in_channels
                                      for i in range(len(task.module.align))),
                                 list(task.module.align[i].out_channels
                                      for i in range(len(task.module.align))))
    got = task.module.state_dict()
    assert all(torch.equal(v, got[k]) for k, v in ref.state_dict().items())


def test_balance_skips_a_non_finite_measurement():
    """An overflowed step leaves the running gradient norms as they were; a finite one
    updates them."""
    task = DistillTask(_teacher(), DistillConfig(balance=True, balance_momentum=0.5))
    task.bind(_student(), torch.device("cpu"), total_iters=100, no_aug_iters=0)
    task._levels = 3
    task._last_weights = torch.ones(3)
    norms = task.module.grad_norms
    norms.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))

    def measure(kd0):
        for i in range(3):
            task._tapped(("det", i), torch.tensor(4.0))
            task._tapped(("kd", i), torch.tensor(kd0 if i == 0 else 16.0))

    measure(float("inf"))
    assert torch.equal(norms, torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    measure(float("nan"))
    assert torch.equal(norms, torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    measure(16.0)  # sqrt: 2 and 4, averaged with momentum 0.5
    assert torch.equal(norms, torch.tensor([[1.5, 2.0, 2.5], [4.0, 4.5, 5.0]]))
