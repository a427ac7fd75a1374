"""Crash-resume check: kill -9 in the middle of an epoch, ``--resume``, compare with an
uninterrupted run of the same seed.

    python benchmarks/resume_kill.py --out runs/resume_kill [--kill-epoch 3]

1. writes a small synthetic dataset,
2. run A: ``damoyolo train`` start to finish,
3. run B: the same command; once ``last.pt`` of epoch ``--kill-epoch - 1`` exists and
   ``--kill-after`` seconds of the next epoch have passed, the process gets SIGKILL
   (no clean-up of any kind), then ``damoyolo train ... --resume B/last.pt`` finishes it,
4. prints the final metrics of A and B and the largest weight difference of their
   ``last.pt`` (model and EMA).  Identical figures mean the resume is exact.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from damoyolo.engine.api import short_run_overrides


def _cmd(args, data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "damoyolo", "train", "--model", args.model, "--data", str(data),
            "--epochs", str(args.epochs), "--batch", str(args.batch), "--imgsz", str(args.imgsz),
            "--device", "cpu", "--workers", str(args.workers), "--output", str(out),
            "--exist-ok"] + \
        [a for s in short_run_overrides(args.batch, 2e-3, warmup_epochs=1, no_aug_epochs=1,
                                        eval_interval=1, tensorboard=False)
         for a in ("--set", s)]


def _epoch_of(ckpt: Path) -> int:
    import torch
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"]) + 1
    except Exception:  # being replaced right now
        return -1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/resume_kill")
    p.add_argument("--model", default="damoyolo-ns")
    p.add_argument("--images", type=int, default=120)
    p.add_argument("--imgsz", type=int, default=192)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--kill-epoch", type=int, default=3, help="epoch (1-based) to kill in")
    p.add_argument("--kill-after", type=float, default=8.0, help="seconds into that epoch")
    args = p.parse_args(argv)

    import torch

    from damoyolo.data import synthesize

    out = Path(args.out)
    data = out / "data"
    if not (data / "annotations" / "val.json").exists():
        synthesize(data, images=args.images, seed=0, size=args.imgsz)
    env = dict(os.environ)
    a, b = out / "A", out / "B"
    for d in (a, b):
        if d.exists():
            import shutil
            shutil.rmtree(d)

    print("run A (uninterrupted)", flush=True)
    subprocess.run(_cmd(args, data, a), check=True, env=env, stdout=subprocess.DEVNULL)

    print(f"run B: kill -9 {args.kill_after:g} s into epoch {args.kill_epoch}", flush=True)
    proc = subprocess.Popen(_cmd(args, data, b), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt = b / "last.pt"
    while not (ckpt.exists() and _epoch_of(ckpt) == args.kill_epoch - 1):
        if proc.poll() is not None:
            raise SystemExit("run B ended before the kill point; lower --kill-epoch")
        time.sleep(0.2)
    time.sleep(args.kill_after)
    if proc.poll() is not None:
        raise SystemExit("run B ended before the kill point; lower --kill-after")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    print(f"killed (rc {proc.returncode}); last.pt holds epoch {_epoch_of(ckpt)}; resuming",
          flush=True)
    subprocess.run(_cmd(args, data, b) + ["--resume", str(ckpt)], check=True, env=env,
                   stdout=subprocess.DEVNULL)

    ca = torch.load(a / "last.pt", map_location="cpu", weights_only=False)
    cb = torch.load(b / "last.pt", map_location="cpu", weights_only=False)
    ha, hb = ca["history"][-1], cb["history"][-1]
    diff = {k: max((ca[k][n].float() - cb[k][n].float()).abs().max().item() for n in ca[k])
            for k in ("model", "ema")}
    keys = ["val_AP", "val_AP50", "val_AP75", "loss"]
    print("| run | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for name, h in (("A uninterrupted", ha), ("B killed + resumed", hb)):
        print(f"| {name} | " + " | ".join(f"{h[k]:.6f}" for k in keys) + " |")
    print(f"max |weight A - weight B|: model {diff['model']:.3g}, EMA {diff['ema']:.3g}; "
          f"per-epoch val_AP A {[round(h.get('val_AP', -1), 6) for h in ca['history']]} "
          f"B {[round(h.get('val_AP', -1), 6) for h in cb['history']]}")
    same = all(ha[k] == hb[k] for k in keys) and max(diff.values()) == 0
    print("identical" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
