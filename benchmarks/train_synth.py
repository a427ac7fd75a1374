"""Learning benchmark: the fastest preset trained on the synthetic dataset on the CPU.

    python benchmarks/train_synth.py --out runs/train_synth [--budget-min 30]

1. writes the synthetic COCO dataset (``damoyolo data synth``; train/val split 80/20),
2. trains ``damoyolo-ns`` with a short-run schedule (below) for ``--epochs`` epochs,
   evaluating the EMA model on the val split every ``--eval-every`` epochs,
3. writes ``OUT/results.md`` (learning curve: epoch, wall-clock minutes, losses, mAP) and
   the trainer's plots (``OUT/train/results.png``, ``pr_curves.png``).

The run is the plain ``damoyolo train`` with the default ``auto`` recipe (warm-up, no-aug
tail, EMA and learning rate sized for the run; see docs/training.md): the preset's model,
optimizer (AdamW for the nano presets) and augmentation recipe (Mosaic, Mixup, affine,
SADA).  ``--lr`` / ``--no-aug`` override the recipe's values when given.  Wall-clock time
counts training and the evaluations.
Killed runs continue from ``OUT/train/last.pt`` when started again with the same arguments.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/train_synth")
    p.add_argument("--model", default="damoyolo-ns")
    p.add_argument("--images", type=int, default=1000, help="synthetic images (train + val)")
    p.add_argument("--size", type=int, default=320, help="synthetic image long side")
    p.add_argument("--imgsz", type=int, default=320, help="training input size")
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--no-aug", type=int, default=None,
                   help="final epochs without strong aug (default: the recipe's)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: "
                   "the recipe's)")
    p.add_argument("--eval-every", type=int, default=4)
    p.add_argument("--budget-min", type=float, default=30.0,
                   help="the time budget the result is judged against (minutes)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    import damoyolo
    from damoyolo.data import synthesize

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    data = out / "data"
    if not (data / "annotations" / "val.json").exists():
        synthesize(data, images=args.images, seed=args.seed, size=args.size)
    run = out / "train"
    overrides = [f"train.eval_interval={args.eval_every}", f"train.seed={args.seed}",
                 "train.tensorboard=False"]
    if args.lr is not None:
        overrides.append(f"train.lr={args.lr}")
    if args.no_aug is not None:
        overrides.append(f"train.no_aug_epochs={args.no_aug}")
    resume = run / "last.pt" if (run / "last.pt").exists() else None
    t0 = time.time()
    rec = damoyolo.train(model=args.model, data=data, epochs=args.epochs, batch=args.batch,
                         imgsz=args.imgsz, device="cpu", workers=args.workers,
                         overrides=overrides, output=run, resume=resume, exist_ok=True)
    wall = time.time() - t0

    with (run / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    lines = [f"| epoch | minutes | loss | qfl | giou | dfl | mAP@[.5:.95] | AP50 |",
             "|---|---|---|---|---|---|---|---|"]
    minutes = 0.0
    for r in rows:
        minutes += (float(r["time_s"]) + float(r.get("eval_s") or 0)) / 60
        ap = f"{float(r['val_AP']):.4f}" if r.get("val_AP") else ""
        ap50 = f"{float(r['val_AP50']):.4f}" if r.get("val_AP50") else ""
        lines.append(f"| {r['epoch']} | {minutes:.1f} | {float(r['loss']):.3f} | "
                     f"{float(r['loss_qfl']):.3f} | {float(r['loss_giou']):.3f} | "
                     f"{float(r['loss_dfl']):.3f} | {ap} | {ap50} |")
    final = rec.get("val_AP", float("nan"))
    t, first = 0.0, None  # the first evaluation at >= 0.5, with its cumulative minutes
    for r in rows:
        t += (float(r["time_s"]) + float(r.get("eval_s") or 0)) / 60
        if first is None and r.get("val_AP") and float(r["val_AP"]) >= 0.5:
            first = (int(r["epoch"]), t)
    verdict = (f"met (mAP >= 0.5 first at epoch {first[0]}, {first[1]:.1f} min)"
               if first and first[1] <= args.budget_min else "missed")
    cmd = "python benchmarks/train_synth.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = ("\n".join(lines) + f"\n\nFinal mAP@[.5:.95] {final:.4f} (AP50 "
            f"{rec.get('val_AP50', float('nan')):.4f}) after {minutes:.1f} min of training "
            f"(training + evaluation; this call {wall / 60:.1f} min). Goal >= 0.5 within "
            f"{args.budget_min:g} min: {verdict}.\n\nCommand: `{cmd.strip()}`, torch threads "
            f"{torch.get_num_threads()}\n")
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"final": rec, "minutes": minutes,
                                                  "args": vars(args)}, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
