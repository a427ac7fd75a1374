"""Command-line interface: ``damoyolo <command> ...``.

Each subcommand is one thin module in this package exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``.  Modules are imported to build
the parser, so they keep heavy imports (torch, onnx, ...) inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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
    "export": "damoyolo.cli.export",
    "bench": "damoyolo.cli.bench",
    "distill": "damoyolo.cli.distill",
}


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def parse_imgsz(values: list[int] | None) -> tuple[int, int] | None:
    """``--imgsz H [W]`` -> (H, W) (one value means a square), or None when not given."""
    if not values:
        return None
    if len(values) not in (1, 2):
        raise CLIError("--imgsz takes one or two values")
    return (values[0], values[-1])


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="damoyolo", description="DAMO-YOLO object detection")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"damoyolo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (also usable from tests as ``main([...])``)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 1
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CLIError, FileNotFoundError, KeyError, ValueError) as e:
        # user errors (bad paths, unknown names, invalid values) get one clear line
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"damoyolo {args.command}: error: {msg}", file=sys.stderr)
        return 2
