"""Distillation on the synthetic dataset: teacher, then a student with and without it.

    PYTHONPATH=src python benchmarks/distill_synth.py --out runs/distill_synth

1. writes a synthetic COCO dataset (``damoyolo.data.synthesize``),
2. trains the teacher (default ``damoyolo-t``),
3. trains the student (default ``damoyolo-ns``) twice under the same budget (epochs, batch,
   seed, schedule): plain, and distilled from the teacher's ``last.pt``
   (``--methods cwd mimic`` adds the mimicking baseline),
4. prints a markdown table of the COCO mAP of each run (EMA weights, val split) and
   writes it to ``OUT/results.md``.

Everything runs on the CPU by default; the defaults fit a few minutes per run on two
cores, far from convergence, so differences between students are small and noisy.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _run(label: str, out: Path, model: str, data: Path, args, teacher: Path | None = None,
         method: str = "cwd", epochs: int = 1) -> dict:
    import damoyolo
    opt = "sgd" if model in ("damoyolo-t", "damoyolo-s", "damoyolo-m", "damoyolo-l") else "adamw"
    lr = args.lr_sgd if opt == "sgd" else args.lr_adamw
    from damoyolo.engine.api import short_run_overrides
    overrides = short_run_overrides(args.batch, lr, no_aug_epochs=args.no_aug,
                                    warmup_epochs=args.warmup,
                                    eval_interval=epochs,  # eval once, at the end
                                    tensorboard=False, seed=args.seed, ema_ramp=args.ema_ramp)
    if teacher is not None:
        overrides += [f"distill.method={method}", f"distill.weight={args.weight}"]
    t0 = time.time()
    rec = damoyolo.train(model=model, data=data, epochs=epochs, batch=args.batch,
                         imgsz=args.imgsz, device=args.device, workers=args.workers,
                         overrides=overrides, output=out, progress=False, exist_ok=True,
                         teacher=None if teacher is None else str(teacher))
    # time_s: the whole run (the trainer's record holds the last epoch's time under that key)
    rec = {**rec, "label": label, "model": model, "epochs": epochs, "time_s": time.time() - t0}
    print(f"{label}: mAP {rec.get('val_AP', float('nan')):.4f}  AP50 "
          f"{rec.get('val_AP50', float('nan')):.4f}  ({rec['time_s']:.0f} s)", flush=True)
    return rec


def _finished(label: str, ckpt: Path) -> dict:
    """The record of a finished run from its ``last.pt`` (last epoch's metrics)."""
    import torch
    ck = torch.load(ckpt, map_location="cpu", weights_only=False)
    last = ck["history"][-1]
    print(f"{label}: reusing {ckpt} (epoch {ck['epoch'] + 1})", flush=True)
    return {**last, "label": label, "model": ck["model_config"]["name"],
            "epochs": ck["epoch"] + 1,
            "time_s": sum(h.get("time_s", 0.0) + (h.get("eval_s") or 0.0) for h in ck["history"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/distill_synth")
    p.add_argument("--images", type=int, default=200, help="synthetic images (train + val)")
    p.add_argument("--size", type=int, default=320, help="synthetic image long side")
    p.add_argument("--imgsz", type=int, default=192, help="training input size")
    p.add_argument("--teacher", default="damoyolo-t")
    p.add_argument("--student", default="damoyolo-ns")
    p.add_argument("--teacher-epochs", type=int, default=12)
    p.add_argument("--epochs", type=int, default=8, help="student epochs (both students)")
    p.add_argument("--no-aug", type=int, default=2, help="no-aug epochs (no distillation)")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr-sgd", type=float, default=0.02, help="learning rate at --batch (SGD)")
    p.add_argument("--lr-adamw", type=float, default=2e-3, help="learning rate (AdamW, nano)")
    p.add_argument("--ema-ramp", type=float, default=2000.0,
                   help="EMA ramp in updates (the release's 2000 keeps the EMA close to the "
                        "weights during short runs)")
    p.add_argument("--weight", type=float, default=0.5, help="distill.weight")
    p.add_argument("--methods", nargs="+", default=["cwd"], choices=["cwd", "mimic"])
    p.add_argument("--reuse-teacher", action="store_true",
                   help="use OUT/teacher/last.pt of an earlier run instead of training it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=0)
    args = p.parse_args(argv)

    from damoyolo.data import synthesize

    out = Path(args.out)
    data = out / "data"
    if not (data / "annotations" / "val.json").exists():
        synthesize(data, images=args.images, seed=args.seed, size=args.size)
    teacher_ckpt = out / "teacher" / "last.pt"
    if args.reuse_teacher and teacher_ckpt.exists():
        rows = [_finished("teacher", teacher_ckpt)]
    else:
        rows = [_run("teacher", out / "teacher", args.teacher, data, args,
                     epochs=args.teacher_epochs)]
    rows.append(_run("student", out / "student", args.student, data, args, epochs=args.epochs))
    for m in args.methods:
        rows.append(_run(f"student + {m}", out / f"student_{m}", args.student, data, args,
                         teacher=teacher_ckpt, method=m, epochs=args.epochs))

    lines = ["| run | model | epochs | mAP@[.5:.95] | AP50 | time (s) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['model']} | {r['epochs']} | "
                     f"{r.get('val_AP', float('nan')):.4f} | {r.get('val_AP50', float('nan')):.4f} "
                     f"| {r['time_s']:.0f} |")
    cmd = "python benchmarks/distill_synth.py " + " ".join(argv if argv is not None else
                                                           sys.argv[1:])
    text = "\n".join(lines) + f"\n\nCommand: `{cmd.strip()}`\n"
    (out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
