"""damoyolo convert: an official DAMO-YOLO checkpoint -> our self-describing format."""

from __future__ import annotations

import argparse

HELP = "convert an official DAMO-YOLO checkpoint (.pth) into a damoyolo checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="official checkpoint ({'model': state_dict} or a state dict)")
    p.add_argument("dst", help="output path for the damoyolo checkpoint")
    p.add_argument("--model", required=True, help="architecture, e.g. damoyolo-s")
    p.add_argument("--names", default=None,
                   help="text file with one class name per line (default: COCO names for 80 "
                        "classes)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..checkpoint import load_model, save_model

    names = None
    if args.names:
        names = [ln.strip() for ln in Path(args.names).read_text().splitlines() if ln.strip()]
    model = load_model(args.src, model=args.model, class_names=names)
    save_model(model, args.dst, converted_from=str(Path(args.src).name))
    print(f"wrote {args.dst}: {model.cfg.name}, {model.num_classes} classes, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.3f} M params")
    return 0
