"""Two-process gloo DDP on CPU: one rank holds an empty-label image; ranks must agree."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

torch.set_num_threads(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import dataclasses

    from damoyolo import build_model
    from damoyolo.config import TrainConfig
    from damoyolo.engine import Trainer
    from damoyolo.engine import distributed as du
    from engine_standin import RectDataset, build_loader

    torch.manual_seed(0)
    model = build_model("damoyolo-ns", class_names=["a", "b", "c"])
    model.cfg = dataclasses.replace(model.cfg, input_size=(64, 64))
    from damoyolo.engine import EpochSampler
    # 4 images, batch 2 per rank: both images rank 1 draws in epoch 0 are empty, so rank 1
    # has no positives at all in that iteration while rank 0 has some
    empty = tuple(EpochSampler(4, seed=1234, rank=1, world=2))
    ds = RectDataset(4, seed=3, empty=empty)
    cfg = TrainConfig(epochs=2, batch_size=4, nominal_batch=4, workers=0, output=out_dir,
                      eval_interval=0, tensorboard=False, warmup_epochs=0.5, no_aug_epochs=1,
                      base_lr_per_img=0.001)
    tr = Trainer(model, ds, cfg, loader_fn=build_loader, progress=False)
    tr.fit()
    # parameters (BN running statistics are per-rank under plain DDP, as usual; rank 0's are saved)
    torch.save({"model": dict(tr.model.named_parameters()),
                "ema": dict(tr.ema.model.named_parameters())},
               os.path.join(out_dir, f"rank{rank}.pt"))
    du.cleanup()


def test_two_process_gloo_training_keeps_ranks_identical(tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    for part in ("model", "ema"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), f"{part}.{k} differs between ranks"
    assert (tmp_path / "last.pt").exists()
    torch.manual_seed(0)
    from damoyolo import build_model
    start = build_model("damoyolo-ns", class_names=["a", "b", "c"]).state_dict()
    assert not torch.equal(start["head.reg_preds.0.weight"], a["model"]["head.reg_preds.0.weight"])
