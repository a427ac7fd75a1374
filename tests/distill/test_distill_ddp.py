"""Two-process gloo DDP on CPU with distillation: student and align module stay identical
across ranks through both phases (distillation, then the no-aug phase without it)."""

import os

import torch

from engine_standin import rank_env, spawn_two_ranks

torch.set_num_threads(1)


def _worker(rank, world, port, out_dir):
    rank_env(rank, world, port)
    import dataclasses

    from damoyolo import build_model
    from damoyolo.config import DistillConfig
    from damoyolo.distill import DistillTask
    from damoyolo.engine import Trainer
    from damoyolo.engine import distributed as du
    from engine_standin import RectDataset, build_loader, tiny_cfg, tiny_model

    model = tiny_model()
    teacher = build_model("damoyolo-nm")  # continues the seeded stream, as before
    teacher.cfg = dataclasses.replace(teacher.cfg, input_size=(64, 64))
    cfg = tiny_cfg(out_dir, warmup_epochs=0.5, base_lr_per_img=0.001, seed=1234)
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
    a, b = spawn_two_ranks(_worker, tmp_path)
    for part in ("model", "align"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), f"{part}.{k} differs between ranks"
    assert a["distill"][0] > 0 and a["distill"][1] == 0.0
    ck = torch.load(tmp_path / "last.pt", weights_only=False)
    for k, v in a["align"].items():
        assert torch.equal(v, ck["task"][k])
