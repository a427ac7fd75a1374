"""Throughput of the training data pipeline (images/s), optionally against the official code.

Times, on a COCO-format dataset at 640x640 output:
  - the full training pipeline (mosaic + affine + mixup + flip + SADA, preset recipe, SADA at
    full strength, i.e. progress 1.0) through ``build_loader`` with 0, 1 and 2 workers, and
  - the no-aug pipeline (resize + flip) used for the last ``no_aug_epochs``, 0 and 2 workers.

With ``--official DIR`` (a checkout of the official DAMO-YOLO code, importable with its
dependencies; torchvision / pycocotools stand-ins may be put on PYTHONPATH) the official
training pipeline for the same preset is timed on the same images in the same run:
``build_dataset`` (COCODataset + MosaicWrapper from the preset's official config) and
``build_dataloader`` (Resize + flip + ToTensor + Normalize + SA_Aug), with SA_Aug's schedule
set to the end of the augmented phase (full SADA strength) for the full pipeline, and mosaic
off (``set_mosaic(False)``, SA_Aug past its schedule) for the no-aug pipeline, exactly as the
official trainer does in its last epochs.  Ours and official are interleaved (A, B, A, B ...);
medians over ``--repeats`` are reported with the ratio.

    python -m damoyolo data synth runs/synbench --images 300 --seed 0
    PYTHONPATH=src python benchmarks/data_pipeline.py --data runs/synbench \\
        [--official ../DAMO-YOLO] [--repeats 3 --batches 6 --batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import torch

from damoyolo.data import DetectionDataset, augment_config_for, build_loader, load_dataset, synthesize

FULL = "full (mosaic+affine+mixup+flip+SADA)"
NOAUG = "no-aug (resize+flip)"
CONFIGS = [(FULL, 0), (FULL, 1), (FULL, 2), (NOAUG, 0), (NOAUG, 2)]


def _time_loader(make_iter, count, batches: int) -> float:
    """images/s over ``batches`` batches after one warm-up batch (worker start, first reads)."""
    it = make_iter()
    next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        n += count(next(it))
    return n / (time.perf_counter() - t0)


class Ours:
    def __init__(self, index, model: str, batch_size: int, cache: bool = False) -> None:
        self.index, self.aug, self.bs = index, augment_config_for(model), batch_size
        self.cached = None
        if cache:  # decoded once, outside the timed region (as train.cache_images does)
            self.cached = DetectionDataset(index, (640, 640), train=True, aug=self.aug, seed=0)
            self.cached.cache_images()

    def run(self, pipeline: str, workers: int, batches: int, epoch: int) -> float:
        ds = self.cached or DetectionDataset(self.index, (640, 640), train=True, aug=self.aug,
                                             seed=0)
        ds.set_strong_augment(pipeline == FULL)
        loader = build_loader(ds, batch_size=self.bs, workers=workers, shuffle=True, seed=0)

        def make_iter():
            def gen():
                e = epoch
                while True:  # cycle epochs if the dataset is small
                    loader.set_epoch(e)
                    yield from loader
                    e += 1
            return gen()

        return _time_loader(make_iter, lambda b: b[0].shape[0], batches)


class Official:
    """The official training data pipeline of a preset, built with the official builders."""

    def __init__(self, root: str, model: str, index, batch_size: int) -> None:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _official import add_official, ensure_single_process_group, official_config

        from damoyolo import get_preset

        self.root = add_official(root)
        ensure_single_process_group()
        self.cfg = official_config(self.root, get_preset(model).official_config)
        ann = Path(index.source)
        if index.format != "coco" or ann.suffix != ".json":
            raise SystemExit("--official needs a COCO-format dataset (json annotations)")
        first = json.loads(ann.read_text())["images"][0]["file_name"]
        rec = next(r for r in index.records if r.path.endswith(first))
        img_root = rec.path[: -len(first)]
        self.cfg.dataset.class_names = list(index.class_names)
        self.cfg.get_data = lambda name: dict(factory="COCODataset",
                                              args=dict(root=img_root, ann_file=str(ann)))
        self.cfg.dataset.train_ann = ("bench_train",)
        self.bs = batch_size

    def run(self, pipeline: str, workers: int, batches: int, epoch: int) -> float:
        from damo.augmentations.scale_aware_aug import SA_Aug
        from damo.dataset import build_dataloader, build_dataset

        cfg = self.cfg
        ds = build_dataset(cfg, cfg.dataset.train_ann, is_train=True,
                           mosaic_mixup=cfg.train.augment.mosaic_mixup)
        loader = build_dataloader(ds, cfg.train.augment, batch_size=self.bs, start_epoch=epoch,
                                  total_epochs=10_000, num_workers=workers, is_train=True,
                                  size_div=32)
        sa = [t for t in loader.dataset._transforms.transforms if isinstance(t, SA_Aug)]
        if len(sa) != 1:
            raise SystemExit("official pipeline: expected one SA_Aug transform")
        sa = sa[0]
        # SA_Aug's op probabilities scale with iteration / max_iters (0 at the start of
        # training); put it at the end of the augmented phase, or past it for no-aug.
        sa.batch_size, sa.num_workers = 1, 1
        sa.box_augs.max_iters = 10**9
        sa.count = int(0.9999 * 10**9) if pipeline == FULL else 2 * 10**9
        loader.batch_sampler.set_mosaic(pipeline == FULL)
        return _time_loader(lambda: iter(loader), lambda b: len(b[1]), batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="dataset (default: synthesize 300 images, seed 0)")
    ap.add_argument("--official", default=None, help="official DAMO-YOLO checkout to time side by side")
    ap.add_argument("--model", default="damoyolo-t")
    ap.add_argument("--batches", type=int, default=6, help="timed batches per measurement")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median reported)")
    ap.add_argument("--out", default=None, help="Markdown file to append the table to")
    ap.add_argument("--cache", action="store_true",
                    help="also time ours with the images decoded once into RAM "
                         "(train.cache_images=true)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = None
    if args.data is None:
        tmp = tempfile.TemporaryDirectory()
        synthesize(tmp.name, images=300, seed=0, size=640)
        args.data = tmp.name
    index = load_dataset(args.data, "train")
    runners = {"ours": Ours(index, args.model, args.batch_size)}
    if args.cache:
        runners["ours (RAM cache)"] = Ours(index, args.model, args.batch_size, cache=True)
    if args.official:
        runners["official"] = Official(args.official, args.model, index, args.batch_size)
    res: dict[tuple[str, str, int], list[float]] = {}
    for rep in range(args.repeats):
        for pipeline, workers in CONFIGS:
            for name, r in runners.items():
                cv2.setNumThreads(1)
                ips = r.run(pipeline, workers, args.batches, epoch=rep)
                res.setdefault((name, pipeline, workers), []).append(ips)
                print(f"# rep {rep} {name:8s} {pipeline} workers={workers}: {ips:.1f} img/s", flush=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    lines = [f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
             + (f", load average at end {load[0]:.2f}" if load else "")
             + f"; {len(index)} images, output 640x640, batch {args.batch_size}, "
               f"{args.batches} batches after a warm-up batch, median of {args.repeats} interleaved runs",
             ""]
    names = list(runners)
    head = ["pipeline", "workers"] + [f"{n} img/s" for n in names]
    if args.official:
        head += [f"{n} / official" for n in names if n != "official"]
    lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for pipeline, workers in CONFIGS:
        med = {n: statistics.median(res[(n, pipeline, workers)]) for n in names}
        row = [pipeline, str(workers)] + [f"{med[n]:.1f}" for n in names]
        if args.official:
            row += [f"{med[n] / med['official']:.2f}x" for n in names if n != "official"]
        lines.append("| " + " | ".join(row) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(text + "\n")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
