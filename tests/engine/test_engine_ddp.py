"""Two-process gloo DDP on CPU: one rank holds an empty-label image; ranks must agree."""

import os

import torch

from engine_standin import rank_env, spawn_two_ranks

torch.set_num_threads(1)


def _worker(rank, world, port, out_dir):
    rank_env(rank, world, port)
    from damoyolo.engine import Trainer
    from damoyolo.engine import distributed as du
    from engine_standin import RectDataset, build_loader, tiny_cfg, tiny_model

    model = tiny_model()
    from damoyolo.engine import EpochSampler
    # 4 images, batch 2 per rank: both images rank 1 draws in epoch 0 are empty, so rank 1
    # has no positives at all in that iteration while rank 0 has some
    empty = tuple(EpochSampler(4, seed=1234, rank=1, world=2))
    ds = RectDataset(4, seed=3, empty=empty)
    cfg = tiny_cfg(out_dir, warmup_epochs=0.5, base_lr_per_img=0.001, seed=1234)
    tr = Trainer(model, ds, cfg, loader_fn=build_loader, progress=False)
    tr.fit()
    # parameters (BN running statistics are per-rank under plain DDP, as usual; rank 0's are saved)
    torch.save({"model": dict(tr.model.named_parameters()),
                "ema": dict(tr.ema.model.named_parameters())},
               os.path.join(out_dir, f"rank{rank}.pt"))
    du.cleanup()


def test_two_process_gloo_training_keeps_ranks_identical(tmp_path):
    a, b = spawn_two_ranks(_worker, tmp_path)
    for part in ("model", "ema"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), f"{part}.{k} differs between ranks"
    assert (tmp_path / "last.pt").exists()
    torch.manual_seed(0)
    from damoyolo import build_model
    start = build_model("damoyolo-ns", class_names=["a", "b", "c"]).state_dict()
    assert not torch.equal(start["head.reg_preds.0.weight"], a["model"]["head.reg_preds.0.weight"])


def _accumulating_worker(rank, world, port, out_dir):
    rank_env(rank, world, port)
    from damoyolo.engine import Trainer
    from damoyolo.engine import distributed as du
    from engine_standin import RectDataset, build_loader, tiny_cfg, tiny_model

    # 8 images, 2 per rank and iteration, nominal batch 8: 2 iterations, one optimizer step
    cfg = tiny_cfg(out_dir, epochs=1, batch_size=4, nominal_batch=8, warmup_epochs=0,
                   no_aug_epochs=0, seed=99)
    tr = Trainer(tiny_model(), RectDataset(8, seed=5), cfg, loader_fn=build_loader,
                 progress=False)
    calls = []
    no_sync = tr.ddp_model.no_sync

    def counting_no_sync():
        calls.append(1)
        return no_sync()

    tr.ddp_model.no_sync = counting_no_sync
    tr.fit()
    torch.save({"model": dict(tr.model.named_parameters()), "no_sync": len(calls),
                "accumulate": tr.accumulate, "iters": tr.iters_per_epoch,
                "steps": tr.ema.updates}, os.path.join(out_dir, f"rank{rank}.pt"))
    du.cleanup()


def test_two_process_accumulation_skips_the_all_reduce_until_the_step(tmp_path):
    a, b = spawn_two_ranks(_accumulating_worker, tmp_path)
    for r in (a, b):
        assert (r["accumulate"], r["iters"], r["steps"]) == (2, 2, 1)
        assert r["no_sync"] == 1  # the first micro-batch only: the step's backward syncs
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), f"model.{k} differs between ranks"


def _resume_worker(rank, world, port, out_dir):
    rank_env(rank, world, port)
    import shutil

    from damoyolo.engine import Trainer
    from damoyolo.engine import distributed as du
    from engine_standin import RectDataset, build_loader, tiny_cfg, tiny_model

    def trainer(folder, resume=None):
        cfg = tiny_cfg(os.path.join(out_dir, folder), epochs=3, warmup_epochs=0.5,
                       base_lr_per_img=0.001, seed=4321)
        return Trainer(tiny_model(), RectDataset(8, seed=2), cfg, loader_fn=build_loader,
                       progress=False, resume=resume)

    full = trainer("full")
    keep = full._checkpoint_callback

    def checkpoint(epoch, record):  # the last.pt a kill -9 after epoch 1 would leave
        keep(epoch, record)
        if epoch == 0 and rank == 0:
            shutil.copy(os.path.join(out_dir, "full", "last.pt"),
                        os.path.join(out_dir, "epoch1.pt"))
    full._checkpoint_callback = checkpoint
    full.epoch_end_callbacks = lambda: [full._eval_callback, full._log_callback,
                                        full._best_callback, checkpoint]
    full.fit()
    du.barrier()
    resumed = trainer("resumed", resume=os.path.join(out_dir, "epoch1.pt"))
    rng_after_resume = torch.get_rng_state()
    resumed.fit()
    torch.save({"full": dict(full.model.named_parameters()),
                "resumed": dict(resumed.model.named_parameters()),
                "rng_after_resume": rng_after_resume},
               os.path.join(out_dir, f"rank{rank}.pt"))
    du.cleanup()


def test_two_process_run_resumes_exactly_with_per_rank_random_streams(tmp_path):
    a, b = spawn_two_ranks(_resume_worker, tmp_path)
    ck = torch.load(tmp_path / "epoch1.pt", weights_only=True)
    ranks = ck["rng_ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["torch"], ranks[1]["torch"])
    for r, res in enumerate((a, b)):  # each rank got its own streams back
        assert torch.equal(res["rng_after_resume"], ranks[r]["torch"])
        for k, v in res["full"].items():
            assert torch.equal(v, res["resumed"][k]), f"rank {r}: {k} differs after resume"


def _failing_worker(rank, world, port, out_dir):
    rank_env(rank, world, port)
    import time

    from damoyolo.engine import Trainer
    from damoyolo.errors import DamoyoloError
    from engine_standin import RectDataset, build_loader, tiny_cfg, tiny_model

    cfg = tiny_cfg(out_dir, epochs=2, warmup_epochs=0.5, base_lr_per_img=0.001,
                   ddp_timeout=1.0)
    tr = Trainer(tiny_model(), RectDataset(4, seed=3), cfg, loader_fn=build_loader,
                 progress=False)
    if rank == 1:
        def boom(epoch, loader):
            raise DamoyoloError("bad batch on rank 1")
        tr.train_one_epoch = boom
    t0 = time.monotonic()
    try:
        tr.fit()
        err = None
    except BaseException as e:  # noqa: BLE001
        err = f"{type(e).__name__}: {e}"
    torch.save({"err": err, "s": time.monotonic() - t0}, os.path.join(out_dir, f"rank{rank}.pt"))


def test_a_rank_failure_ends_every_rank_with_its_message(tmp_path):
    a, b = spawn_two_ranks(_failing_worker, tmp_path)
    assert b["err"] == "DamoyoloError: bad batch on rank 1"
    assert a["err"].startswith("RankFailed") and "rank 1: DamoyoloError: bad batch on rank 1" \
        in a["err"], a
    assert a["s"] < 20  # at once, not after the collective timeout (ddp_timeout=1 min)
