"""damoyolo convert: an official DAMO-YOLO checkpoint -> our self-describing format."""

from __future__ import annotations

import argparse

HELP = ("convert an official DAMO-YOLO checkpoint (.pth) into a damoyolo checkpoint, or "
        "rewrite a trusted older checkpoint as plain data (--trust-code)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="official checkpoint ({'model': state_dict} or a state dict)")
    p.add_argument("dst", help="output path for the damoyolo checkpoint")
    p.add_argument("--model", default=None,
                   help="architecture, e.g. damoyolo-s (required for official checkpoints)")
    p.add_argument("--trust-code", action="store_true",
                   help="read SRC even if unpickling it runs code (only for a file you trust, "
                        "e.g. a checkpoint written by damoyolo 0.1), and write DST as plain "
                        "data that loads without that")
    p.add_argument("--names", default=None,
                   help="text file with one class name per line (default: COCO names for 80 "
                        "classes)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..checkpoint import (FORMAT, CheckpointError, atomic_save, load_model, read_checkpoint,
                              save_model, to_plain_data)

    obj = read_checkpoint(args.src, trust_code=args.trust_code)
    if obj.get("format") == FORMAT:  # ours: rewrite every entry as plain data
        atomic_save(to_plain_data(obj, str(args.src)), args.dst)
        read_checkpoint(args.dst)  # loads as data now
        print(f"wrote {args.dst}: the damoyolo checkpoint {args.src} as plain data")
        return 0
    if args.model is None:
        raise CheckpointError(f"{args.src}: an official checkpoint: name its architecture "
                              f"with --model (e.g. --model damoyolo-s)")
    names = None
    if args.names:
        if not Path(args.names).is_file():
            from ..errors import MissingFileError
            raise MissingFileError(f"--names {args.names}: no such file")
        names = [ln.strip() for ln in Path(args.names).read_text().splitlines() if ln.strip()]
    model = load_model(args.src, model=args.model, class_names=names,
                       trust_code=args.trust_code)
    save_model(model, args.dst, converted_from=str(Path(args.src).name))
    print(f"wrote {args.dst}: {model.cfg.name}, {model.num_classes} classes, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.3f} M params")
    return 0
