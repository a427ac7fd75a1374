"""The package's floors: an import only points down (docs/architecture.md).

Every module of ``src/damoyolo`` belongs to a unit (a top-level module or sub-package); each
unit has a floor number.  A module may import its own unit and units of lower floors, never
a unit of its own floor or above.  Imports are read from the source (module level and inside
functions alike), so a lazy import that breaks a loop counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "damoyolo"

FLOORS = {
    # process, configuration and file facts: import nothing of ours above errors/config
    "errors": 0, "_version": 0, "_moved": 0,
    "config": 1, "_optional": 1, "_tensorrt": 1, "outputs": 1,
    "runtime": 2, "imageheader": 2, "metadata": 2,
    "_cpu": 3,  # the former home of runtime.cpu, kept importable
    # pure functions and data
    "ops": 3, "preprocess": 3, "presets": 3, "classes": 3,
    "assign": 4, "data": 4, "postprocess": 4,
    "losses": 5, "models": 5, "viz": 5,
    "checkpoint": 6, "track": 6,  # tracking runs over a detect callable
    # primitives: none imports another
    "export": 7, "infer": 7, "eval": 7, "distill": 7, "nas": 7,
    "engine": 8,
    "workflows": 9,
    "cli": 10, "damoyolo": 10,  # the package's own __init__
    "__main__": 11,
}

# Upward or sideways imports still to remove (none now).  The test fails when a new one
# appears and when a listed one is gone (then delete it from this list).
KNOWN: set[tuple[str, str]] = set()


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "damoyolo"


def _imports() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> files, for every import between two units."""
    found: dict[tuple[str, str], list[str]] = {}
    for f in sorted(SRC.rglob("*.py")):
        rel = f.relative_to(SRC.parent).with_suffix("")
        module = ".".join(rel.parts)
        package = module.rsplit(".", 1)[0] if f.name != "__init__.py" else module[:-9]
        here = _unit(module if f.name != "__init__.py" else package)
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    if node.module:
                        targets = [".".join(base + [node.module])]
                    else:
                        targets = [".".join(base + [a.name]) for a in node.names]
                elif node.module and node.module.split(".")[0] == "damoyolo":
                    targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "damoyolo"]
            for t in targets:
                there = _unit(t)
                if there != here:
                    found.setdefault((here, there), []).append(str(rel))
    return found


def test_every_unit_has_a_floor():
    units = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    units.discard("__init__")
    assert sorted(units - set(FLOORS)) == [], "give each new unit a floor in FLOORS"


def test_imports_point_down():
    edges = _imports()
    wrong = {e: files for e, files in edges.items() if FLOORS[e[0]] <= FLOORS[e[1]]}
    new = {e: sorted(set(f)) for e, f in wrong.items() if e not in KNOWN}
    assert new == {}, f"imports up or across a floor: {new}"
    assert sorted(KNOWN - set(wrong)) == [], "removed: delete them from KNOWN"
