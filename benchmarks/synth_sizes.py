"""Box-size distribution of the synthetic dataset (``damoyolo data synth``).

    OMP_NUM_THREADS=1 python benchmarks/synth_sizes.py --images 400 --sizes 320 640 --seed 0

Generates ``--images`` images per ``--size`` (seed ``--seed``, train + val together) into a
temporary folder (or ``--data DIR``) with ``damoyolo.data.synthesize`` and prints, from the
written COCO annotations, markdown tables of box-size percentiles (min side = min(w, h), and
sqrt(area) = sqrt(w * h), in pixels of the generated image), the fraction of boxes under
8 / 12 / 16 / 32 px and in [8, 16) px by either measure, and the COCO small / medium / large
fractions (by the annotation's ``area``, which is the box area w * h: < 32^2, < 96^2, >= 96^2).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

PCTS = (("min", 0), ("p5", 5), ("p25", 25), ("median", 50), ("p75", 75), ("p95", 95), ("max", 100))
UNDER = (8, 12, 16, 32)


def box_sizes(root: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(w, h) arrays of every box in ``root/annotations/{train,val}.json``."""
    ws, hs = [], []
    for split in ("train", "val"):
        f = Path(root) / "annotations" / f"{split}.json"
        if not f.is_file():
            continue
        for a in json.loads(f.read_text())["annotations"]:
            ws.append(a["bbox"][2])
            hs.append(a["bbox"][3])
    return np.asarray(ws, float), np.asarray(hs, float)


def rows(label: str, w: np.ndarray, h: np.ndarray) -> tuple[list[str], list[str], str]:
    side, root_area, area = np.minimum(w, h), np.sqrt(w * h), w * h
    pct, frac = [], []
    for name, v in (("min side", side), ("sqrt(area)", root_area)):
        q = [f"{np.percentile(v, p):.1f}" for _, p in PCTS]
        pct.append(f"| {label} | {name} | {len(v)} | " + " | ".join(q) + " |")
        under = [f"{np.mean(v < t) * 100:.1f}" for t in UNDER]
        band = f"{np.mean((v >= 8) & (v < 16)) * 100:.1f}"
        frac.append(f"| {label} | {name} | " + " | ".join(under) + f" | {band} |")
    small, large = np.mean(area < 32 ** 2) * 100, np.mean(area >= 96 ** 2) * 100
    coco = f"| {label} | {len(area)} | {small:.1f} | {100 - small - large:.1f} | {large:.1f} |"
    return pct, frac, coco


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=400, help="images per size")
    p.add_argument("--sizes", type=int, nargs="+", default=[320, 640], help="synth --size values")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-size", type=int, default=None, help="synth --min-size (default: its own)")
    p.add_argument("--workers", type=int, default=1, help="processes for generation")
    p.add_argument("--data", default=None, help="keep the generated datasets under this folder")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from damoyolo.data.synthetic import synthesize

    kw = {} if args.min_size is None else {"min_size_px": args.min_size}
    tmp = None if args.data else tempfile.TemporaryDirectory()
    base = Path(args.data) if args.data else Path(tmp.name)
    pct_rows, frac_rows, coco_rows = [], [], []
    for size in args.sizes:
        d = base / f"synth_{size}_seed{args.seed}"
        synthesize(d, images=args.images, seed=args.seed, size=size, workers=args.workers, **kw)
        pct, frac, coco = rows(f"--size {size}", *box_sizes(d))
        pct_rows += pct
        frac_rows += frac
        coco_rows.append(coco)
    print(f"{args.images} images per size, seed {args.seed}, train + val boxes; pixels of the "
          "generated image\n")
    print("| images | measure | boxes | " + " | ".join(n for n, _ in PCTS) + " |")
    print("|---|---|---:|" + "---:|" * len(PCTS))
    print("\n".join(pct_rows))
    print("\n| images | measure | " + " | ".join(f"< {t} px (%)" for t in UNDER)
          + " | 8-16 px (%) |")
    print("|---|---|" + "---:|" * (len(UNDER) + 1))
    print("\n".join(frac_rows))
    print("\n| images | boxes | COCO small (%) | medium (%) | large (%) |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(coco_rows))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
