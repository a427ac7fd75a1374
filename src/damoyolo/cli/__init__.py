"""Command-line interface: ``damoyolo <command> ...``.

Each subcommand is one thin module in this package exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``.  Modules are imported to build
the parser, so they keep heavy imports (torch, onnx, ...) inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import DamoyoloError

__all__ = ["main", "COMMANDS"]

# command name -> module (explicit, no registry decorators)
COMMANDS: dict[str, str] = {
    "models": "damoyolo.cli.models",
    "convert": "damoyolo.cli.convert",
    "demo": "damoyolo.cli.demo",
    "train": "damoyolo.cli.train",
    "val": "damoyolo.cli.val",
    "nas": "damoyolo.cli.nas",
    "data": "damoyolo.cli.data",
    "predict": "damoyolo.cli.predict",
    "track": "damoyolo.cli.track",
    "export": "damoyolo.cli.export",
    "bench": "damoyolo.cli.bench",
    "distill": "damoyolo.cli.distill",
}


class CLIError(DamoyoloError):
    """A bad command-line argument: printed in one line, exit status 2."""


def parse_imgsz(values: list[int] | None) -> tuple[int, int] | None:
    """``--imgsz H [W]`` -> (H, W) (one value means a square), or None when not given."""
    if not values:
        return None
    if len(values) not in (1, 2):
        raise CLIError("--imgsz takes one or two values")
    return (values[0], values[-1])


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="damoyolo", description="DAMO-YOLO object detection")
    from .._version import __version__
    parser.add_argument("--version", action="version", version=f"damoyolo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def _train_evaluates(args) -> bool:
    """Whether a train / distill invocation will evaluate (``train.eval_interval`` > 0, the
    default; the last epoch is always evaluated then).  False when the arguments are
    invalid: ``run`` reports those first."""
    if args.imgsz is not None and args.imgsz % 32:
        return False
    try:
        from ..config import apply_overrides
        from ..engine.api import experiment_config_for
        exp = apply_overrides(experiment_config_for(args.model), list(args.overrides or []))
        return int(exp.train.eval_interval) > 0
    except Exception:  # unknown preset, bad override: run() says so
        return False


def _preflight(args) -> None:
    """Fail before the work starts when an optional package it will need is missing."""
    from .._optional import install_hint, is_available
    if args.command in ("train", "distill") and not is_available("faster_coco_eval") \
            and _train_evaluates(args):
        # the last epoch is always evaluated: without this check the run dies after training
        raise CLIError("evaluation during training needs the optional package faster-coco-eval "
                       f"({install_hint('faster_coco_eval')}), or train without it: "
                       "--set train.eval_interval=0")
    if args.command == "demo" and not getattr(args, "smoke", False) \
            and not is_available("faster_coco_eval"):
        raise CLIError("the demo evaluates its model (mAP), which needs the optional package "
                       f"faster-coco-eval ({install_hint('faster_coco_eval')}); "
                       "`damoyolo demo --smoke` runs without it")
    if args.command == "val" and not is_available("faster_coco_eval"):
        raise CLIError("COCO evaluation needs the optional package faster-coco-eval "
                       f"({install_hint('faster_coco_eval')})")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (also usable from tests as ``main([...])``).

    The library's errors (:class:`~damoyolo.errors.DamoyoloError`: bad paths, unknown
    names, invalid values, missing optional packages with the extra that installs them)
    are reported in one line, exit status 2.  Any other exception is a bug and propagates
    with its traceback.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 1
    from .._optional import missing_message
    try:
        _preflight(args)
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ImportError as e:  # MissingDependency, or an optional package's own import
        msg = missing_message(e)
        if msg is None:  # not a missing optional package: a bug, keep the traceback
            raise
        print(f"damoyolo {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except DamoyoloError as e:  # the library's errors speak to the user: one line
        print(f"damoyolo {args.command}: error: {e}", file=sys.stderr)
        return 2
