"""Names that moved up a floor, still importable from their old module for one release.

``__getattr__ = moved(__name__, {"name": "damoyolo.new.module"})`` in the old module: the
first use of an old name warns (``DeprecationWarning`` naming the new place) and returns the
object from its new module.  The new module is named as a string and imported on use, so the
old module does not import a floor above it; nothing else in the package may do this.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable


def moved(old_module: str, names: dict[str, str]) -> Callable[[str], Any]:
    def __getattr__(name: str) -> Any:
        if name in names:
            warnings.warn(f"{old_module}.{name} moved to {names[name]}.{name}; the old name "
                          "goes in the next release", DeprecationWarning, stacklevel=2)
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
    return __getattr__
