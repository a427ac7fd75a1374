"""CUDA paths (run with ``pytest -m gpu``; skipped without a CUDA GPU): AMP training with a
stepping GradScaler, and CUDA forward passes matching the CPU."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from engine_standin import RectDataset, build_loader, tiny_cfg, tiny_model

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA GPU (torch sees none)")]


@pytest.fixture
def exact_fp32():
    """float32 convolutions and matmuls without TF32 (the CPU reference is exact fp32)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("preset", ["damoyolo-t", "damoyolo-ns"])
def test_amp_training_steps_with_a_finite_loss(tmp_path, preset):
    from damoyolo.engine import Trainer
    model = tiny_model(preset)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = tiny_cfg(tmp_path, device="cuda", amp=True, epochs=3, warmup_epochs=0.5)
    tr = Trainer(model, RectDataset(8, seed=1), cfg, loader_fn=build_loader, progress=False)
    assert tr.device.type == "cuda" and tr.amp_dtype is torch.float16
    assert tr.scaler.is_enabled()
    steps = []
    real_step = tr.optimizer.step

    def counted(*a, **k):  # GradScaler calls it only when the gradients are finite
        steps.append(1)
        return real_step(*a, **k)

    tr.optimizer.step = counted
    record = tr.fit()
    assert math.isfinite(record["loss"]), record
    assert all(math.isfinite(h["loss"]) for h in tr.history)
    iters = cfg.epochs * tr.iters_per_epoch
    assert len(steps) >= 1, f"the scaler skipped all {iters} optimizer steps (inf gradients)"
    # the scale starts at 2**16, halves at every skipped step and grows only after 2000
    assert tr.scaler.get_scale() == 2.0 ** 16 * 0.5 ** (iters - len(steps))
    moved = [k for k, v in tr.model.named_parameters() if not torch.equal(v.cpu(), start[k])]
    assert moved, "no parameter was updated"
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())
    assert next(tr.ema.model.parameters()).is_cuda
    assert (tmp_path / "last.pt").exists()


@pytest.mark.parametrize("preset", ["damoyolo-t", "damoyolo-ns"])
def test_cuda_forward_matches_cpu(preset, exact_fp32):
    import damoyolo
    torch.manual_seed(0)
    m = damoyolo.build_model(preset).eval().reparameterize()
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        s_cpu, b_cpu = m.decode(m(x))
        g = copy.deepcopy(m).cuda()
        s_gpu, b_gpu = (t.cpu() for t in g.decode(g(x.cuda())))
    assert s_gpu.shape == s_cpu.shape and b_gpu.shape == b_cpu.shape
    assert float((s_gpu - s_cpu).abs().max()) < 2e-3
    assert float((b_gpu - b_cpu).abs().max()) < 0.6


def test_torch_backend_half_on_cuda_matches_cpu(exact_fp32):
    import damoyolo
    from damoyolo.infer.backends import TorchBackend
    torch.manual_seed(0)
    m = damoyolo.build_model("damoyolo-t").eval()
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 255
    s_cpu, b_cpu = TorchBackend(m, device="cpu")(x)
    s16, b16 = TorchBackend(m, device="cuda", half=True)(x)
    assert s16.is_cuda and s16.dtype == torch.float32
    assert float((s16.cpu() - s_cpu).abs().max()) < 2e-2
    assert float((b16.cpu() - b_cpu).abs().max()) < 4.0
