"""Two-process gloo DDP on CPU with distillation: student and align module stay identical
across ranks through both phases (distillation, then the no-aug phase without it)."""

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
    from damoyolo.config import DistillConfig, TrainConfig
    from damoyolo.distill import DistillTask
    from damoyolo.engine import Trainer
    from damoyolo.engine import distributed as du
    from engine_standin import RectDataset, build_loader

    torch.manual_seed(0)
    model = build_model("damoyolo-ns", class_names=["a", "b", "c"])
    model.cfg = dataclasses.replace(model.cfg, input_size=(64, 64))
    teacher = build_model("damoyolo-nm")
    teacher.cfg = dataclasses.replace(teacher.cfg, input_size=(64, 64))
    cfg = TrainConfig(epochs=2, batch_size=4, nominal_batch=4, workers=0, output=out_dir,
                      eval_interval=0, tensorboard=False, warmup_epochs=0.5, no_aug_epochs=1,
                      base_lr_per_img=0.001)
    task = DistillTask(teacher, DistillConfig())
    tr = Trainer(model, RectDataset(4, seed=3), cfg, loader_fn=build_loader, progress=False,
                 task=task)
    rec = tr.fit()
    torch.save({"model": dict(tr.model.named_parameters()),
                "align": dict(task.module.named_parameters()),
                "distill": [h["loss_distill"] for h in tr.history], "last": rec},
               os.path.join(out_dir, f"rank{rank}.pt"))
    du.cleanup()


def test_two_process_distillation_keeps_ranks_identical(tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=False)
    b = torch.load(tmp_path / "rank1.pt", weights_only=False)
    for part in ("model", "align"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), f"{part}.{k} differs between ranks"
    assert a["distill"][0] > 0 and a["distill"][1] == 0.0
    ck = torch.load(tmp_path / "last.pt", weights_only=False)
    for k, v in a["align"].items():
        assert torch.equal(v, ck["task"][k])
