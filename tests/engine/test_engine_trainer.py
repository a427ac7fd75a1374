"""Trainer: schedule, EMA, optimizer groups, checkpoints, exact resume, fine-tuning, NaN stop."""

import copy
import math

import pytest
import torch

from damoyolo.engine import CosineSchedule, ModelEMA, Trainer, TrainingDiverged, build_optimizer, \
    param_groups, train_config_for
from damoyolo.workflows.train import load_for_finetune
from engine_standin import NAMES, RectDataset, build_loader, tiny_cfg, tiny_model

torch.set_num_threads(1)


def _cfg(tmp_path, **kw):
    return tiny_cfg(tmp_path, **{"eval_interval": 1, **kw})


def _model(seed=0):
    return tiny_model(seed=seed)


def test_schedule_matches_release_formula():
    s = CosineSchedule(0.04, total_iters=100, warmup_iters=10, no_aug_iters=20, min_lr_ratio=0.05)
    assert s(0) == 0.0
    assert s(5) == pytest.approx(0.04 * 0.25)
    assert s(10) == pytest.approx(0.04)
    assert s(45) == pytest.approx(0.002 + 0.5 * 0.038 * (1 + math.cos(math.pi * 35 / 70)))
    assert s(80) == s(99) == pytest.approx(0.002)


def test_recipes_and_param_groups():
    t = train_config_for("damoyolo-t")
    assert (t.optimizer, t.weight_decay, t.momentum, t.recipe) == ("sgd", 5e-4, 0.9, "auto")
    ns = train_config_for("damoyolo-ns", "release")
    assert ns.optimizer == "adamw" and ns.weight_decay == 1e-2 and ns.recipe == "release"
    assert ns.base_lr_per_img * 256 == pytest.approx(4e-3)  # the release's lr at batch 256
    m = _model()
    decay, no_decay = param_groups(m, 5e-4)
    n_bn_bias = sum(1 for n, p in m.named_parameters() if n.endswith("bias") or ".bn." in n
                    or p.ndim == 1)
    assert len(no_decay["params"]) == n_bn_bias
    scales = {id(p) for p in m.head.scales.parameters()}  # decayed, as in the release
    assert all(p.ndim > 1 or id(p) in scales for p in decay["params"])
    assert scales <= {id(p) for p in decay["params"]}


def test_ema_ramp():
    lin = torch.nn.Linear(1, 1, bias=False)
    ema = ModelEMA(lin, 0.9998, 2000)
    with torch.no_grad():
        lin.weight.fill_(2.0)
    ema.update(lin)  # first update: momentum 0 -> copy
    assert ema.model.weight.item() == 2.0
    with torch.no_grad():
        lin.weight.fill_(0.0)
    m = 0.9998 * (1 - math.exp(-1 / 2000))
    ema.update(lin)
    assert ema.model.weight.item() == pytest.approx(2.0 * m)


def _ema_reference(ema_sd, src_sd, m):
    for k, v in ema_sd.items():
        if v.dtype.is_floating_point:
            v.mul_(m).add_(src_sd[k], alpha=1 - m)
        else:
            v.copy_(src_sd[k])


def test_ema_update_bit_identical_and_follows_replaced_tensors():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    ema = ModelEMA(net, 0.9998, 20)
    ref = {k: v.clone() for k, v in ema.model.state_dict().items()}
    for step in range(6):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
            net[1].num_batches_tracked += 1
            if step == 3:  # what .to() does: buffers replaced, parameters' data swapped
                net[1].running_mean = net[1].running_mean + 1.0
                net[0].weight.data = net[0].weight.data * 2.0
        m = ema.decay()
        ema.update(net)
        _ema_reference(ref, net.state_dict(), m)
        for k, v in ema.model.state_dict().items():
            assert torch.equal(v, ref[k]), (step, k)
    assert ema.model[1].num_batches_tracked.item() == 6


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_fused_optimizer_matches_per_tensor(name):
    torch.manual_seed(0)
    # no bias before the BatchNorm: its gradient is rounding noise, which Adam's
    # normalisation turns into full steps of either sign
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8),
                              torch.nn.Conv2d(8, 2, 1))
    twin = copy.deepcopy(net)
    fused = build_optimizer(net, name, 0.01)
    plain = build_optimizer(twin, name, 0.01, fused=False)
    assert fused.param_groups[0].get("fused") is True
    assert not plain.param_groups[0].get("fused")
    assert [g["weight_decay"] for g in fused.param_groups] == \
        [g["weight_decay"] for g in plain.param_groups]
    x = torch.randn(2, 3, 8, 8)
    for _ in range(4):
        for model, opt in ((net, fused), (twin, plain)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _final_weights(path):
    return torch.load(path, weights_only=False)


def test_train_checkpoint_and_exact_resume(tmp_path):
    ds, val = RectDataset(8, seed=1, empty=(3,)), RectDataset(4, seed=2)
    gt = val.to_coco_dict()
    a = Trainer(_model(), ds, _cfg(tmp_path / "a"), val_set=val, val_gt=gt,
                category_ids=[1, 2, 3], loader_fn=build_loader, progress=False)
    rec = a.fit()
    assert ds.strong is False  # last no_aug epoch switched strong augmentation off
    assert {"loss", "loss_qfl", "val_AP", "val_AP50"} <= set(rec)
    ck = _final_weights(tmp_path / "a" / "last.pt")
    for key in ("model_config", "class_names", "category_ids", "model", "ema", "optimizer",
                "scheduler", "scaler", "rng", "epoch", "iteration"):
        assert key in ck, key
    assert ck["epoch"] == 1 and ck["class_names"] == NAMES
    assert (tmp_path / "a" / "results.csv").read_text().count("\n") == 3
    assert (tmp_path / "a" / "best.pt").exists()

    # same run stopped after epoch 1 then resumed
    ds2 = RectDataset(8, seed=1, empty=(3,))
    b1 = Trainer(_model(), ds2, _cfg(tmp_path / "b", epochs=2), val_set=val, val_gt=gt,
                 loader_fn=build_loader, progress=False)
    # run only the first epoch, as if killed during the second
    b1.train_one_epoch(0, b1._loader())
    import damoyolo.checkpoint as C
    C.atomic_save(b1.state(0), tmp_path / "b" / "last.pt")
    b2 = Trainer(_model(seed=5), RectDataset(8, seed=1, empty=(3,)), _cfg(tmp_path / "b"),
                 val_set=val, val_gt=gt, loader_fn=build_loader, progress=False,
                 resume=tmp_path / "b" / "last.pt")
    assert b2.start_epoch == 1
    b2.fit()
    ck2 = _final_weights(tmp_path / "b" / "last.pt")
    for k, v in ck["model"].items():
        assert torch.equal(v, ck2["model"][k]), k
    for k, v in ck["ema"].items():
        assert torch.equal(v, ck2["ema"][k]), k


def test_nan_loss_stops_and_keeps_checkpoint(tmp_path):
    ds = RectDataset(4, seed=1)
    tr = Trainer(_model(), ds, _cfg(tmp_path, epochs=3, eval_interval=0), loader_fn=build_loader,
                 progress=False)
    orig = tr.train_one_epoch
    calls = []

    def boom(epoch, loader):
        calls.append(epoch)
        if epoch == 1:
            with torch.no_grad():
                tr.model.head.cls_preds[0].bias.fill_(float("nan"))
        return orig(epoch, loader)

    tr.train_one_epoch = boom
    with pytest.raises(TrainingDiverged, match="non-finite loss at epoch 2"):
        tr.fit()
    ck = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ck["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_finetune_resets_only_class_projection(tmp_path):
    from damoyolo import save_model
    src = _model()
    save_model(src, tmp_path / "src.pt")
    net = load_for_finetune(tmp_path / "src.pt", None, ["x", "y"])
    assert net.num_classes == 2 and net.class_names == ["x", "y"]
    sd_src, sd = src.state_dict(), net.state_dict()
    for k, v in sd.items():
        if k.startswith("head.cls_preds"):
            assert v.shape[0] == 2
        else:
            assert torch.equal(v, sd_src[k]), k


def test_finetune_with_new_names_drops_the_old_category_ids(tmp_path):
    """Same class count, new names: the weights stay, the old dataset's ids go, so a model
    saved from the fine-tune does not carry them."""
    from damoyolo import load_model, save_model
    src = _model()
    save_model(src, tmp_path / "src.pt", category_ids=[11, 22, 33][:src.num_classes])
    assert load_model(tmp_path / "src.pt").category_ids is not None
    names = [f"new{i}" for i in range(src.num_classes)]
    net = load_for_finetune(tmp_path / "src.pt", None, names)
    assert net.class_names == names and net.category_ids is None
    save_model(net, tmp_path / "ft.pt")
    back = load_model(tmp_path / "ft.pt")
    assert back.class_names == names and back.category_ids is None
    net.rename_classes(names, category_ids=list(range(5, 5 + src.num_classes)))
    save_model(net, tmp_path / "ft2.pt")
    assert load_model(tmp_path / "ft2.pt").category_ids == list(range(5, 5 + src.num_classes))
    with pytest.raises(ValueError, match="class names for"):
        net.rename_classes(names + ["extra"])


def test_same_seed_same_run_through_the_api(tmp_path):
    """Two `damoyolo.train` calls with one seed: identical initial and final weights
    (the initial weights are seeded too, not only the loop)."""
    import damoyolo
    from damoyolo.data.synthetic import synthesize
    synthesize(tmp_path / "d", images=10, seed=0, size=96, workers=1)
    sets = ["train.nominal_batch=4", "train.warmup_epochs=0", "train.no_aug_epochs=0",
            "train.eval_interval=0", "train.tensorboard=False", "train.seed=7"]
    finals = []
    for run in ("a", "b"):
        damoyolo.train(model="damoyolo-ns", data=tmp_path / "d", epochs=1, batch=4, imgsz=64,
                       device="cpu", workers=0, overrides=sets, output=tmp_path / run,
                       progress=False)
        finals.append(torch.load(tmp_path / run / "last.pt", map_location="cpu",
                                 weights_only=False))
    for key in ("model", "ema"):
        for name, v in finals[0][key].items():
            assert torch.equal(v, finals[1][key][name]), (key, name)


def test_finetune_from_an_official_release_checkpoint():
    """An official checkpoint (read as data) is a fine-tuning start for a new class set."""
    from conftest import shared_path
    import damoyolo
    path = shared_path("official", "ref", "damoyolo_tinynasL18_Ns_seed0.pth")
    ref = damoyolo.load_model(path, model="damoyolo-ns")
    net = load_for_finetune(path, "damoyolo-ns", ["a", "b", "c"])
    assert net.num_classes == 3 and net.training
    for k, v in net.state_dict().items():
        if not k.startswith("head.cls_preds"):
            assert torch.equal(v, ref.state_dict()[k]), k


def test_plots_are_written_atomically(tmp_path, monkeypatch):
    """A plot goes to a unique temporary renamed over its name: a save that fails half-way
    leaves the previous plot as it was and no temporary behind."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from damoyolo.engine.plots import plot_history, plot_pr_curves
    history = [{"epoch": 0, "loss": 2.0, "lr": 0.01}, {"epoch": 1, "loss": 1.5, "lr": 0.005,
                                                        "val_AP": 0.1}]
    gt = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}
    real = Figure.savefig

    def half_then_fail(self, fname, *a, **k):
        real(self, fname, *a, **k)
        with open(fname, "r+b") as f:
            f.truncate(10)
        raise OSError("disk full")

    for name, draw in (("results.png", lambda p: plot_history(history, p)),
                       ("pr_curves.png", lambda p: plot_pr_curves(gt, [], ["a"], p))):
        out = tmp_path / name
        assert draw(out) == out and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        before = out.read_bytes()
        monkeypatch.setattr(Figure, "savefig", half_then_fail)
        with pytest.raises(OSError, match="disk full"):
            draw(out)
        monkeypatch.setattr(Figure, "savefig", real)
        assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pr_curves.png", "results.png"]


def test_memory_format_policy(tmp_path):
    import damoyolo
    from damoyolo.engine.trainer import use_channels_last
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    t, ns = tiny_model("damoyolo-t"), damoyolo.build_model("damoyolo-ns")
    # auto: on a CPU channels_last only with depthwise convolutions (nano); CUDA always
    assert use_channels_last(None, cpu, t) is False
    assert use_channels_last(None, cpu, ns) is True
    assert use_channels_last(None, cuda, t) is True
    # an explicit setting wins
    assert use_channels_last(True, cpu, t) is True
    assert use_channels_last(False, cpu, ns) is False
    # the trainer applies it to the model
    for model, want in ((t, False), (tiny_model("damoyolo-ns"), True)):
        tr = Trainer(model, RectDataset(4, seed=1), tiny_cfg(tmp_path / str(want), device="cpu"),
                     loader_fn=build_loader, progress=False)
        w = next(p for p in tr.model.parameters() if p.dim() == 4 and p.shape[-1] == 3)
        assert tr.channels_last is want
        assert w.is_contiguous(memory_format=torch.channels_last if want else
                               torch.contiguous_format) and (want or w.is_contiguous())
        # NCHW training runs the backbone's stem and first stage in channels_last (auto, CPU)
        assert tr.channels_last_stem is (not want)
        assert tr.model.backbone.channels_last_stages == (0 if want else 2)
        assert tr.ema.model.backbone.channels_last_stages == (0 if want else 2)


def test_channels_last_stem_policy():
    from damoyolo.engine.trainer import use_channels_last_stem
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    t = tiny_model("damoyolo-t")
    assert use_channels_last_stem(None, cpu, t, channels_last=False) is True
    assert use_channels_last_stem(None, cuda, t, channels_last=False) is False
    assert use_channels_last_stem(True, cuda, t, channels_last=False) is True
    assert use_channels_last_stem(False, cpu, t, channels_last=False) is False
    # a nano preset forced to NCHW stays all NCHW under auto (the stem was measured on T)
    ns = tiny_model("damoyolo-ns")
    assert use_channels_last_stem(None, cpu, ns, channels_last=False) is False
    assert use_channels_last_stem(True, cpu, ns, channels_last=False) is True
    # nothing to do when the whole model is channels_last, or without a TinyNAS backbone
    assert use_channels_last_stem(True, cpu, t, channels_last=True) is False
    assert use_channels_last_stem(None, cpu, torch.nn.Conv2d(3, 3, 1), channels_last=False) \
        is False


def test_optimizer_state_takes_the_parameter_layout():
    from damoyolo.engine.trainer import _match_state_layout
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8))
    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 8, 8)
    target = torch.randn(2, 8, 6, 6)  # a loss whose gradient is not BatchNorm's rounding noise
    opt_cl = build_optimizer(cl, "sgd", 0.01)
    (cl(x.contiguous(memory_format=torch.channels_last)) * target).mean().backward()
    opt_cl.step()
    # the state saved by a channels_last run, loaded for an NCHW model of the same weights
    plain = copy.deepcopy(net)
    plain.load_state_dict(cl.state_dict())
    opt = build_optimizer(plain, "sgd", 0.01)
    opt.load_state_dict(copy.deepcopy(opt_cl.state_dict()))  # as read from a file
    w = plain[0].weight
    assert opt.state[w]["momentum_buffer"].stride() != w.stride()
    before = opt.state[w]["momentum_buffer"].clone()
    _match_state_layout(opt)
    buf = opt.state[w]["momentum_buffer"]
    assert buf.stride() == w.stride() and torch.equal(buf, before)
    # and the next steps match the channels_last run's
    for model, o, inp in ((cl, opt_cl, x.contiguous(memory_format=torch.channels_last)),
                          (plain, opt, x)):
        for _ in range(2):
            o.zero_grad()
            (model(inp) * target).mean().backward()
            o.step()
    for a, b in zip(cl.parameters(), plain.parameters()):
        torch.testing.assert_close(a.contiguous(), b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("features,want_dense", [
    ((), None), (("avx2", "avx512"), None), (("avx512_bf16",), torch.bfloat16),
    (("amx_tile",), torch.bfloat16)])
def test_precision_policy(monkeypatch, features, want_dense):
    import damoyolo.engine.policy as tr_mod
    from damoyolo.engine.policy import autocast_dtype
    monkeypatch.setattr(tr_mod, "torch_cpu_has", lambda *fs: any(f in features for f in fs))
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    t, ns = tiny_model("damoyolo-t"), tiny_model("damoyolo-ns")
    # bfloat16 autocast only on a CPU with bfloat16 dot products (AMX or AVX512-BF16)
    assert autocast_dtype(True, cpu, t) is want_dense
    assert autocast_dtype(False, cpu, t) is None
    assert autocast_dtype(True, cuda, t) is torch.float16
    # nano: only where its depthwise convolutions can stay float32 with the fast weight gradient
    for fast in (True, False):
        monkeypatch.setattr(tr_mod, "fast_weight_grad_available", lambda: fast)
        assert autocast_dtype(True, cpu, ns) is (want_dense if fast else None)
