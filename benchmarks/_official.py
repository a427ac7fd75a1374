"""Helpers for running the official DAMO-YOLO code side by side with ours (benchmarks only).

Nothing of the official code lives in this repository: ``--official DIR`` points at a
checkout of it, which is put on ``sys.path``.  The official code imports torchvision (and
pycocotools for COCO datasets); put any importable stand-ins for those on ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path


def add_official(path: str | os.PathLike) -> Path:
    """Put the official checkout on ``sys.path`` (first) and return its absolute path.

    Exits with a clear message when ``path`` is not an official checkout."""
    root = Path(path).expanduser().resolve()
    if not (root / "damo" / "config" / "base.py").is_file():
        raise SystemExit(f"--official {path}: not a DAMO-YOLO checkout (no damo/config/base.py)")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


@contextlib.contextmanager
def _cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def official_config(root: Path, config_name: str):
    """Parse ``configs/<config_name>.py`` of the official checkout (it reads structure files
    relative to the checkout, hence the temporary chdir)."""
    with _cwd(root):
        from damo.config.base import parse_config

        return parse_config(str(root / "configs" / f"{config_name}.py"))


def build_official_model(root: Path, config_name: str, num_classes: int | None = None):
    """The official detector of a config on CPU (optionally with another class count)."""
    cfg = official_config(root, config_name)
    if num_classes is not None:
        cfg.model.head.num_classes = int(num_classes)
    with _cwd(root):
        from damo.detectors.detector import build_local_model

        return build_local_model(cfg, "cpu"), cfg


def ensure_single_process_group() -> None:
    """The official samplers call ``torch.distributed.get_world_size()``: start a one-process
    gloo group if none exists."""
    import torch.distributed as dist

    if dist.is_available() and not dist.is_initialized():
        fd, name = tempfile.mkstemp(prefix="damoyolo_pg_")
        os.close(fd)
        os.unlink(name)
        dist.init_process_group("gloo", init_method=f"file://{name}", rank=0, world_size=1)
