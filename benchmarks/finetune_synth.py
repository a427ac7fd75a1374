"""Fine-tuning against training from scratch, on synthetic classes the model has never seen.

    python benchmarks/finetune_synth.py --out runs/finetune_synth

1. writes two synthetic datasets with disjoint classes (``damoyolo data synth --classes``):
   A = circle, triangle, square (pre-training) and B = star, cross, ring (the user's data),
   ``--images`` each at ``--size`` px with objects of ``--min-size`` px and up;
2. pre-trains ``--model`` on A for ``--pretrain-epochs`` (skipped when A's ``last.pt``
   exists);
3. trains on B twice, evaluating every epoch: from scratch, and fine-tuned from A's
   checkpoint (``damoyolo train --weights A/last.pt``: the class projections are
   re-initialised for B's classes, everything else starts from A);
4. writes ``OUT/results.md``: mAP per epoch (and optimizer steps) for both, and the first
   epoch at which each reaches ``--target`` (the demo's goal, mAP@[.5:.95] 0.25).

Every run is the plain command with the default auto recipe and ``--batch``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path


def _run(model, data, out, epochs, batch, imgsz, seed, weights=None) -> tuple[list[dict], float]:
    import damoyolo
    t0 = time.time()
    if not (out / "last.pt").exists():
        damoyolo.train(model=model, data=data, epochs=epochs, batch=batch, imgsz=imgsz,
                       device="cpu", workers=1, weights=weights, output=out, exist_ok=True,
                       overrides=["train.eval_interval=1", f"train.seed={seed}",
                                  "train.tensorboard=False"])
    with (out / "results.csv").open() as f:
        return list(csv.DictReader(f)), time.time() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/finetune_synth")
    p.add_argument("--model", default="damoyolo-ns")
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--min-size", type=int, default=16)
    p.add_argument("--pretrain-epochs", type=int, default=12)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--target", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from damoyolo.data import synthesize

    out = Path(args.out)
    sets = {"A": ("circle", "triangle", "square"), "B": ("star", "cross", "ring")}
    for k, classes in sets.items():
        if not (out / k / "annotations" / "val.json").exists():
            synthesize(out / k, images=args.images, seed=args.seed + (k == "B"),
                       size=args.size, min_size_px=args.min_size, classes=classes)
    pre, pre_s = _run(args.model, out / "A", out / "pretrain_A", args.pretrain_epochs,
                      args.batch, args.size, args.seed)
    runs = {}
    for name, w in (("scratch", None), ("fine-tuned", out / "pretrain_A" / "last.pt")):
        runs[name] = _run(args.model, out / "B", out / f"B_{name}", args.epochs, args.batch,
                          args.size, args.seed, weights=w)
    lines = ["| epoch | " + " | ".join(f"{n} mAP / AP50" for n in runs) + " |",
             "|---|" + "---:|" * len(runs)]
    n = max(len(r[0]) for r in runs.values())
    for e in range(n):
        cells = []
        for rows, _ in runs.values():
            r = rows[e] if e < len(rows) else {}
            cells.append(f"{float(r['val_AP']):.3f} / {float(r['val_AP50']):.3f}"
                         if r.get("val_AP") else "")
        lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    import math

    from damoyolo.data import load_dataset
    ipe = math.ceil(len(load_dataset(out / "B", split="train").records) / args.batch)
    reach = []
    for name, (rows, secs) in runs.items():
        hit = next((int(r["epoch"]) for r in rows if float(r.get("val_AP") or 0) >= args.target),
                   None)
        reach.append(f"- {name}: " + (f"mAP >= {args.target} at epoch {hit} ({hit * ipe} "
                                      f"optimizer steps)" if hit else
                                      f"mAP {args.target} not reached in {len(rows)} epochs "
                                      f"(best {max(float(r['val_AP']) for r in rows):.3f})")
                     + f"; {secs / 60:.1f} min")
    pre_ap = float(pre[-1]["val_AP"])
    text = (f"Pre-training on A ({', '.join(sets['A'])}): {args.pretrain_epochs} epochs, final "
            f"mAP {pre_ap:.3f} on A's val split ({pre_s / 60:.1f} min this call).\n\n"
            f"On B ({', '.join(sets['B'])}), batch {args.batch}, {ipe} steps per epoch:\n\n"
            + "\n".join(lines) + "\n\n" + "\n".join(reach) + "\n")
    (out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
