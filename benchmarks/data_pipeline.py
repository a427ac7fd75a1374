"""Throughput of the training data pipeline (images/s).

Generates a synthetic COCO dataset (640 px, no download), then times
  - the full training pipeline (mosaic + affine + mixup + flip + SADA, preset recipe)
    through ``build_loader`` with 0, 1 and 2 workers, and
  - the no-aug pipeline (resize + flip) used for the last ``no_aug_epochs``.
Results are printed as a Markdown table (and appended to ``--out`` if given).

    python benchmarks/data_pipeline.py --images 200 --batches 12 --batch-size 8
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from damoyolo.data import DetectionDataset, augment_config_for, build_loader, load_dataset, synthesize


def _time(ds, workers: int, batch_size: int, batches: int) -> float:
    loader = build_loader(ds, batch_size=batch_size, workers=workers, shuffle=True, seed=0)
    loader.set_epoch(0)
    it = iter(loader)
    next(it)  # warm-up (worker start, first reads)
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        try:
            imgs, _ = next(it)
        except StopIteration:
            loader.set_epoch(n)
            it = iter(loader)
            imgs, _ = next(it)
        n += imgs.shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--model", default="damoyolo-t")
    ap.add_argument("--data", default=None, help="existing dataset (default: synthesize one)")
    ap.add_argument("--out", default=None, help="Markdown file to append the table to")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = None
    if args.data is None:
        tmp = tempfile.TemporaryDirectory()
        synthesize(tmp.name, images=args.images, seed=0, size=640)
        args.data = tmp.name
    index = load_dataset(args.data, "train")
    aug = augment_config_for(args.model)
    rows = []
    for workers in (0, 1, 2):
        ds = DetectionDataset(index, (640, 640), train=True, aug=aug, seed=0)
        rows.append((f"full (mosaic+affine+mixup+flip+SADA, {args.model})", workers,
                     _time(ds, workers, args.batch_size, args.batches)))
    for workers in (0, 2):
        ds = DetectionDataset(index, (640, 640), train=True, aug=aug, seed=0)
        ds.set_strong_augment(False)
        rows.append(("no-aug (resize+flip)", workers, _time(ds, workers, args.batch_size, args.batches)))
    lines = [f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
             f"input 640x640, batch {args.batch_size}, {args.batches} batches after warm-up",
             "", "| pipeline | workers | images/s |", "|---|---:|---:|"]
    lines += [f"| {name} | {w} | {ips:.1f} |" for name, w, ips in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
