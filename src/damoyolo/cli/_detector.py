"""The detector options that ``predict`` and ``track`` share, and the Detector they open."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_detector_arguments(p: argparse.ArgumentParser, out: str, conf_help: str,
                           batch: int, per: str) -> None:
    """--model --backend --out --conf --iou --max-det --imgsz --classes --device --half
    --batch --threads (``--weights`` and ``--source`` are the command's own)."""
    from ..infer.backends import BACKENDS
    p.add_argument("--model", default=None, help="preset name (needed for official .pth files)")
    p.add_argument("--backend", default=None, choices=list(BACKENDS),
                   help="default: chosen from the weights suffix")
    p.add_argument("--out", default=out, help=f"output folder (default {out}; one that holds "
                   f"files is not reused: the outputs go to {out}2, ...)")
    p.add_argument("--exist-ok", action="store_true",
                   help="write into --out even when it already holds files")
    p.add_argument("--conf", type=float, default=None, help=conf_help)
    p.add_argument("--iou", type=float, default=None, help="NMS IoU threshold (default: preset)")
    p.add_argument("--max-det", type=int, default=300, help=f"detections kept per {per}")
    p.add_argument("--imgsz", type=int, nargs="+", default=None,
                   help="network input: S or H W, multiples of 32 (torch backend)")
    p.add_argument("--classes", type=int, nargs="+", default=None,
                   help="keep only these class indices")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--half", action="store_true", help="fp16 inference (CUDA torch backend)")
    p.add_argument("--batch", type=int, default=batch,
                   help=f"{per}s per forward pass (default {batch})")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the backend")
    add_trust_engine_argument(p)


def add_trust_engine_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-engine", action="store_true",
                   help="allow a TensorRT engine to load: an engine is native code, so only "
                        "one you built or trust")


def detector_options(args: argparse.Namespace) -> dict:
    """The :class:`~damoyolo.Detector` keyword arguments of the parsed options, all but
    ``weights`` and ``conf`` (``--imgsz`` parsed here)."""
    from . import parse_imgsz
    return dict(backend=args.backend, device=args.device, iou=args.iou, max_det=args.max_det,
                classes=args.classes, half=args.half, imgsz=parse_imgsz(args.imgsz),
                model=args.model, threads=args.threads, batch_size=args.batch,
                trust_engine=args.trust_engine)


def open_detector(args: argparse.Namespace, conf: float):
    """The :class:`~damoyolo.Detector` of the parsed options, scoring at ``conf``."""
    from ..infer.detector import Detector
    from . import CLIError
    if args.batch < 1:
        raise CLIError("--batch must be >= 1")
    return Detector(args.weights, conf=conf, **detector_options(args))


def output_folder(args: argparse.Namespace, inputs: list) -> Path:
    """The folder this run writes into, claimed (:func:`damoyolo.outputs.claim_output_folder`
    with ``--out`` and ``--exist-ok``): call it once everything that can fail before writing
    has been opened, so that a failed start leaves no folder behind."""
    from ..outputs import claim_output_folder
    return claim_output_folder(args.out, args.exist_ok, inputs)
