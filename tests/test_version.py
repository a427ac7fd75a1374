"""One version, in ``damoyolo/_version.py``: the package face, the installed metadata, the
exports and checkpoints read it from there; no module imports it from the package face."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import damoyolo
from damoyolo import _version

SRC = Path(damoyolo.__file__).parent


def test_one_version():
    assert damoyolo.__version__ is _version.__version__
    assert importlib.metadata.version("damoyolo") == _version.__version__
    pyproject = (SRC.parent.parent / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "damoyolo._version.__version__" in pyproject


def test_no_module_imports_the_version_from_the_package_face():
    face = re.compile(r"from\s+(\.+|damoyolo)\s+import\s+[^\n]*__version__")
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if p.name != "__init__.py" or p.parent != SRC
                 if face.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
