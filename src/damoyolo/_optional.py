"""Optional third-party packages and the ``damoyolo[...]`` extra that installs each.

The core install (``pip install damoyolo``) has torch, numpy, opencv, thop and tqdm; the rest is
optional.  A feature that needs an optional package raises :class:`MissingDependency` (an
``ImportError``) whose message names the extra; the CLI prints such errors -- and a plain
``ModuleNotFoundError`` of a module listed here -- as one line instead of a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from .errors import DamoyoloError

__all__ = ["EXTRAS", "MissingDependency", "import_optional", "is_available", "missing_message"]

# top-level module -> (pip distribution, extra); extra None: not part of any extra
EXTRAS: dict[str, tuple[str, str | None]] = {
    "onnx": ("onnx", "export"),
    "onnxruntime": ("onnxruntime", "export"),
    "onnxslim": ("onnxslim", "export"),
    "openvino": ("openvino", "export"),
    "nncf": ("nncf", "export"),
    "faster_coco_eval": ("faster-coco-eval", "train"),
    "matplotlib": ("matplotlib", "train"),
    "tensorboard": ("tensorboard", "train"),
    "numba": ("numba", "train"),
    "scipy": ("scipy", "nas"),
    "tensorrt": ("tensorrt", None),
}


class MissingDependency(DamoyoloError, ImportError):
    """An optional package is not installed; the message says which extra installs it."""


def install_hint(module: str) -> str:
    """``pip install 'damoyolo[extra]'`` for an optional module (``pip install pkg`` if none)."""
    top = module.split(".")[0]
    dist, extra = EXTRAS.get(top, (top, None))
    return f"pip install 'damoyolo[{extra}]'" if extra else f"pip install {dist}"


def import_optional(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency`: ``"<purpose> needs <pkg>: pip
    install 'damoyolo[<extra>]'"``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        dist = EXTRAS.get(top, (top, None))[0]
        raise MissingDependency(f"{purpose} needs the optional package {dist} "
                                f"({install_hint(module)})", name=top) from e


def is_available(module: str) -> bool:
    """Whether ``module`` imports (it is imported, not just looked up)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def missing_message(e: BaseException) -> str | None:
    """One-line text for an ImportError caused by a missing optional package, else None
    (an ImportError of anything else is a bug and keeps its traceback)."""
    if not isinstance(e, ImportError):
        return None
    if isinstance(e, MissingDependency):
        return str(e).splitlines()[0]
    top = (e.name or "").split(".")[0]
    if top in EXTRAS:
        return f"needs the optional package {EXTRAS[top][0]} ({install_hint(top)})"
    text = str(e)
    if "pip install" in text:  # our own ImportErrors already name the package / extra
        return " ".join(text.split())
    return None
