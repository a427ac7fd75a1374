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
