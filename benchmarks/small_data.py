"""A user's small dataset: about 30 images of one class, the plain command and its defaults.

    python benchmarks/small_data.py --out runs/small_data [--epochs 60]

1. writes a one-class synthetic COCO dataset (``damoyolo data synth --classes star``): 30
   training images and 30 validation images at 416 px (the preset's input size), objects of
   8 px and up on cluttered backgrounds;
2. runs exactly ``damoyolo train --model damoyolo-ns --data D --epochs 60 --output OUT/train``
   (every other value the default: batch 16, auto recipe), which prints its schedule;
3. writes ``OUT/results.md``: the schedule printout, the per-evaluation AP / AP50 and the time.

Goal: AP50 >= 0.5 on the validation images.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/small_data")
    p.add_argument("--model", default="damoyolo-ns")
    p.add_argument("--train-images", type=int, default=30)
    p.add_argument("--val-images", type=int, default=30)
    p.add_argument("--size", type=int, default=416, help="synthetic image long side")
    p.add_argument("--classes", default="star", help="the synthetic class(es) to draw")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("extra", nargs="*", help="more `damoyolo train` arguments")
    args = p.parse_args(argv)

    from damoyolo.data import synthesize

    out = Path(args.out)
    data = out / "data"
    if not (data / "annotations" / "val.json").exists():
        n = args.train_images + args.val_images
        synthesize(data, images=n, seed=args.seed, size=args.size,
                   val_fraction=args.val_images / n, classes=args.classes.split(","))
    run = out / "train"
    cmd = [sys.executable, "-m", "damoyolo", "train", "--model", args.model, "--data",
           str(data), "--epochs", str(args.epochs), "--output", str(run), "--exist-ok"] + args.extra
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    log = proc.stdout + proc.stderr
    (out / "train.log").write_text(log)
    if proc.returncode:
        print(log[-3000:])
        return proc.returncode
    sched = [ln for ln in log.splitlines()
             if ln.startswith(("schedule", "  ", "warning"))
             and not ln.startswith("  instances") and not ln.startswith("  no faults")]
    with (run / "results.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("val_AP")]
    table = ["| epoch | mAP@[.5:.95] | AP50 |", "|---|---:|---:|"]
    table += [f"| {r['epoch']} | {float(r['val_AP']):.4f} | {float(r['val_AP50']):.4f} |"
              for r in rows]
    final = rows[-1] if rows else {}
    ap50 = float(final.get("val_AP50", "nan"))
    shown = "damoyolo train " + " ".join(cmd[4:])
    text = (f"Command: `{shown}`\n\nSchedule printout:\n\n```\n" + "\n".join(sched)
            + "\n```\n\n" + "\n".join(table)
            + f"\n\nFinal AP50 {ap50:.4f} (mAP {float(final.get('val_AP', 'nan')):.4f}) in "
              f"{wall / 60:.1f} min; goal AP50 >= 0.5: {'met' if ap50 >= 0.5 else 'missed'}.\n")
    (out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
