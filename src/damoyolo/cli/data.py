"""damoyolo data {check,synth,show}: validate, generate and look at datasets."""

from __future__ import annotations

import argparse

HELP = "dataset tools: check (validate + label statistics), synth (synthetic data), show (grid)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    c = sub.add_parser("check", help="validate a dataset (COCO json/folder, YOLO, VOC); "
                                     "non-zero exit on errors")
    c.add_argument("path")
    c.add_argument("--split", default=None, help="split name (e.g. train, val)")
    c.add_argument("--stats", default=None, metavar="PNG",
                   help="also write a label-statistics image to this file (a check writes "
                        "nothing unless asked)")
    c.add_argument("--no-decode", action="store_true", help="skip decoding every image (faster)")
    s = sub.add_parser("synth", help="write a synthetic COCO-format dataset")
    s.add_argument("out")
    s.add_argument("--images", type=int, default=200, help="total images (20%% go to val)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=640, help="long image side")
    s.add_argument("--min-size", type=int, default=8,
                   help="size floor in pixels of the generated image: every box is at least "
                        "this wide and tall (default 8)")
    s.add_argument("--classes", default=None,
                   help="comma-separated subset of circle,triangle,square,star,cross,ring to "
                        "draw (default: all six), e.g. --classes star for a one-class set")
    s.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    g = sub.add_parser("show", help="draw a grid of (augmented) samples with their boxes")
    g.add_argument("path")
    g.add_argument("--split", default=None)
    g.add_argument("--augment", action="store_true", help="apply the training augmentation")
    g.add_argument("--model", default="damoyolo-t", help="preset whose recipe/input size is used")
    g.add_argument("--num", type=int, default=9, help="number of samples")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default="grid.png")


def run(args: argparse.Namespace) -> int:
    return {"check": _check, "synth": _synth, "show": _show}[args.data_command](args)


def _write_image(path, bgr) -> None:
    """An image file written through a unique temporary renamed over ``path`` (a kill leaves
    the previous file or none); one that cannot be written is an ``OutputError`` naming it."""
    import cv2

    from ..outputs import OutputError, atomic_output
    try:
        with atomic_output(path) as tmp:
            ok = cv2.imwrite(str(tmp), bgr)
            if not ok:
                raise OutputError(f"{path}: could not be written")
    except cv2.error as e:
        raise OutputError(f"{path}: could not be written as an image "
                          f"({str(e).strip().splitlines()[-1]})") from None
    except OutputError:
        raise
    except OSError as e:
        raise OutputError(f"{path}: could not be written ({e.strerror or e})") from None


def _check(args) -> int:
    import time
    from pathlib import Path

    from ..data.check import check_dataset, label_stats_image

    t0 = time.perf_counter()
    index = check_dataset(args.path, args.split, decode=not args.no_decode)
    print(index.summary())
    if args.stats:
        stats = Path(args.stats)
        _write_image(stats, label_stats_image(index)[:, :, ::-1])
        print(f"label statistics -> {stats}")
    errs = index.report.errors()
    dt = time.perf_counter() - t0
    if errs:
        print(f"FAILED: {sum(errs.values())} errors ({', '.join(f'{k}={v}' for k, v in errs.items())})"
              f" [{dt:.1f}s]")
        return 1
    print(f"OK [{dt:.1f}s]")
    return 0


def _synth(args) -> int:
    import time

    from ..data import synthesize

    t0 = time.perf_counter()
    res = synthesize(args.out, images=args.images, seed=args.seed, size=args.size,
                     workers=args.workers, min_size_px=args.min_size,
                     classes=args.classes.split(",") if args.classes else None)
    print(f"wrote {res['train']} train + {res['val']} val images, {res['boxes']} boxes to "
          f"{args.out} in {time.perf_counter() - t0:.1f}s")
    return 0


def _show(args) -> int:
    import math
    from pathlib import Path

    import cv2
    import numpy as np
    import torch

    from ..data import DatasetError, DetectionDataset, augment_config_for, load_dataset
    from ..postprocess import Detections
    from ..presets import get_preset
    from ..viz import draw_detections

    index = load_dataset(args.path, args.split)
    if not len(index):
        raise DatasetError(f"{args.path}: no images")
    preset = get_preset(args.model)
    ds = DetectionDataset(index, preset.model.input_size, train=args.augment,
                          aug=augment_config_for(preset.model.name) if args.augment else None,
                          seed=args.seed)
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(ds), size=min(args.num, len(ds)), replace=False)
    tiles = []
    for i in picks:
        img, t = ds[int(i)]
        arr = img.permute(1, 2, 0).clamp(0, 255).byte().numpy()
        n = len(t["labels"])
        det = Detections(t["boxes"], torch.ones(n), t["labels"], index.class_names)
        tile = draw_detections(arr, det, score_fmt="")
        cv2.putText(tile, f"id {t['image_id']} ({n} boxes)", (4, tile.shape[0] - 6),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    h, w = tiles[0].shape[:2]
    grid = np.zeros((rows * h, cols * w, 3), np.uint8)
    for k, tile in enumerate(tiles):
        grid[(k // cols) * h:(k // cols + 1) * h, (k % cols) * w:(k % cols + 1) * w] = tile
    out = Path(args.out)
    _write_image(out, np.ascontiguousarray(grid[:, :, ::-1]))
    print(f"{len(tiles)} {'augmented ' if args.augment else ''}samples -> {out}")
    return 0
