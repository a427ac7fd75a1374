"""Backbone structure descriptions (TinyNAS / MAE-NAS).

A backbone is described as a list of :class:`BlockSpec`: a stem followed by
super-blocks.  Two text formats are understood:

* our packaged JSON format (``{"format": "damoyolo-structure/1", "blocks": [...]}``);
* the official structure-text format: a Python literal list of dicts such as
  ``{'class': 'SuperResConvK1KX', 'in': 24, 'out': 64, 'btn': 24, 'k': 3, 's': 2, 'L': 2}``.
  Both v1 class names (``SuperResConvK1KX`` / ``SuperResConvKXKX``) and v2 names
  (``SuperResK1KX`` / ``SuperResKXKX``) are accepted; quantisation fields
  (``nbitsA`` / ``nbitsW``) and ``inner_class`` are ignored.

The text is parsed with :func:`ast.literal_eval`, never ``eval``.
"""

from __future__ import annotations

import ast
import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from ...errors import DamoyoloError

__all__ = [
    "BlockSpec",
    "StructureError",
    "parse_structure",
    "load_structure",
    "dump_structure",
    "dump_structure_official",
    "packaged_structures",
]

FORMAT_TAG = "damoyolo-structure/1"

# canonical block kinds
STEM = "stem"
K1KX = "k1kx"
KXKX = "kxkx"

_CLASS_ALIASES = {
    "ConvKXBNRELU": STEM,
    "ConvKXBNReLU": STEM,
    "SuperResConvK1KX": K1KX,
    "SuperResK1KX": K1KX,
    "SuperResConvKXKX": KXKX,
    "SuperResKXKX": KXKX,
}
_OFFICIAL_NAMES = {STEM: "ConvKXBNRELU", K1KX: "SuperResConvK1KX", KXKX: "SuperResConvKXKX"}
_OFFICIAL_NAMES_V2 = {STEM: "ConvKXBNRELU", K1KX: "SuperResK1KX", KXKX: "SuperResKXKX"}
_IGNORED_KEYS = {"nbitsA", "nbitsW", "inner_class", "g", "nbitsA_list", "nbitsW_list"}


class StructureError(DamoyoloError, ValueError):
    """A structure description could not be understood."""


@dataclass(frozen=True)
class BlockSpec:
    """One entry of a backbone structure.

    kind: ``"stem"``, ``"k1kx"`` or ``"kxkx"``.
    in_channels / out_channels: channels entering / leaving the block.
    kernel: spatial kernel size of the block's KxK convolutions.
    stride: stride of the first unit of the block.
    btn: bottleneck channels (super-blocks only; 0 for the stem).
    num_layers: number of residual units ``L`` (super-blocks only; 1 for the stem).
    """

    kind: str
    in_channels: int
    out_channels: int
    kernel: int = 3
    stride: int = 1
    btn: int = 0
    num_layers: int = 1

    def to_official(self, names: str = "v1") -> dict:
        """Official dict; ``names``: ``"v1"`` (DAMO-YOLO's ``SuperResConvK1KX``) or ``"v2"``
        (current MAE-NAS ``SuperResK1KX``) class names."""
        if names not in ("v1", "v2"):
            raise ValueError(f"names must be 'v1' or 'v2', got {names!r}")
        table = _OFFICIAL_NAMES if names == "v1" else _OFFICIAL_NAMES_V2
        d = {"class": table[self.kind], "in": self.in_channels, "k": self.kernel,
             "out": self.out_channels, "s": self.stride}
        if self.kind != STEM:
            d.update({"btn": self.btn, "L": self.num_layers})
        return d


def _from_official_dict(entry: dict, index: int, source: str) -> BlockSpec:
    if not isinstance(entry, dict):
        raise StructureError(f"{source}: block {index} is {type(entry).__name__}, expected a dict")
    cls = entry.get("class")
    if cls not in _CLASS_ALIASES:
        raise StructureError(
            f"{source}: block {index} has unknown class {cls!r}; "
            f"expected one of {sorted(_CLASS_ALIASES)}")
    kind = _CLASS_ALIASES[cls]
    unknown = set(entry) - {"class", "in", "out", "k", "s", "btn", "L"} - _IGNORED_KEYS
    if unknown:
        raise StructureError(f"{source}: block {index} ({cls}) has unknown fields {sorted(unknown)}")
    try:
        spec = BlockSpec(
            kind=kind,
            in_channels=int(entry["in"]),
            out_channels=int(entry["out"]),
            kernel=int(entry.get("k", 3)),
            stride=int(entry.get("s", 1)),
            btn=int(entry.get("btn", 0)) if kind != STEM else 0,
            num_layers=int(entry.get("L", 1)) if kind != STEM else 1,
        )
    except KeyError as e:
        raise StructureError(f"{source}: block {index} ({cls}) lacks field {e.args[0]!r}") from None
    return spec


def _from_our_dict(entry: dict, index: int, source: str) -> BlockSpec:
    try:
        return BlockSpec(**entry)
    except TypeError as e:
        raise StructureError(f"{source}: block {index}: {e}") from None


# bounds of a structure, far above any searched or published backbone: a crafted file
# cannot make the builder allocate without limit
MAX_CHANNELS, MAX_KERNEL, MAX_LAYERS, MAX_BLOCKS = 8192, 15, 64, 64


def validate_structure(blocks: list[BlockSpec], source: str = "structure") -> list[BlockSpec]:
    """Check the channel chain and field ranges; return ``blocks`` unchanged."""
    if not blocks:
        raise StructureError(f"{source}: empty structure")
    if len(blocks) > MAX_BLOCKS:
        raise StructureError(f"{source}: {len(blocks)} blocks, more than {MAX_BLOCKS}")
    if blocks[0].kind != STEM:
        raise StructureError(f"{source}: the first block must be the stem (ConvKXBNRELU)")
    for i, b in enumerate(blocks):
        if b.kind not in (STEM, K1KX, KXKX):
            raise StructureError(f"{source}: block {i} has unknown kind {b.kind!r}")
        if i > 0 and b.kind == STEM:
            raise StructureError(f"{source}: block {i}: only the first block may be a stem")
        if min(b.in_channels, b.out_channels) <= 0 or b.kernel <= 0 or b.stride not in (1, 2):
            raise StructureError(f"{source}: block {i} has invalid channels/kernel/stride: {b}")
        if (max(b.in_channels, b.out_channels, b.btn) > MAX_CHANNELS or b.kernel > MAX_KERNEL
                or b.num_layers > MAX_LAYERS):
            raise StructureError(f"{source}: block {i} is out of bounds (channels <= "
                                 f"{MAX_CHANNELS}, kernel <= {MAX_KERNEL}, L <= {MAX_LAYERS}): {b}")
        if b.kind != STEM and (b.btn <= 0 or b.num_layers <= 0):
            raise StructureError(f"{source}: block {i} needs btn > 0 and L > 0: {b}")
        if i > 0 and b.in_channels != blocks[i - 1].out_channels:
            raise StructureError(
                f"{source}: block {i} takes {b.in_channels} channels but block {i - 1} "
                f"gives {blocks[i - 1].out_channels}")
    return blocks


def parse_structure(text: str, source: str = "structure") -> list[BlockSpec]:
    """Parse a structure from text in our JSON format or the official literal format."""
    stripped = text.strip()
    if not stripped:
        raise StructureError(f"{source}: empty file")
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise StructureError(f"{source}: invalid JSON: {e}") from None
        if data.get("format") != FORMAT_TAG:
            raise StructureError(f"{source}: unknown format tag {data.get('format')!r}, "
                                 f"expected {FORMAT_TAG!r}")
        blocks = [_from_our_dict(b, i, source) for i, b in enumerate(data.get("blocks", []))]
    else:
        try:
            data = ast.literal_eval("".join(line.strip() for line in stripped.splitlines()))
        except (ValueError, SyntaxError) as e:
            raise StructureError(f"{source}: not a structure literal: {e}") from None
        if not isinstance(data, (list, tuple)):
            raise StructureError(f"{source}: expected a list of blocks, got {type(data).__name__}")
        blocks = [_from_official_dict(b, i, source) for i, b in enumerate(data)]
    return validate_structure(blocks, source)


def packaged_structures() -> list[str]:
    """Names of the structures shipped with the package."""
    root = resources.files("damoyolo.models.backbones") / "structures"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def is_packaged_structure(name: str) -> bool:
    """Whether ``name`` names a structure shipped with the package."""
    name = str(name)
    root = resources.files("damoyolo.models.backbones") / "structures"
    return "/" not in name and "\\" not in name and (root / f"{name}.json").is_file()


def inline_structure(blocks: list[BlockSpec]) -> str:
    """The structure as one line of our JSON format: what a model config stores in place of
    a structure file's path, so that checkpoints and exports carry the structure itself."""
    return json.dumps({"format": FORMAT_TAG, "blocks": [asdict(b) for b in blocks]},
                      separators=(",", ":"))


def load_structure(name_or_path: str | Path) -> list[BlockSpec]:
    """Load a packaged structure by name (e.g. ``"tinynas_L20_k1kx"``), a file path, or a
    structure given inline as text (our JSON format, or the official literal list)."""
    name = str(name_or_path)
    if name.lstrip().startswith(("{", "[")):
        return parse_structure(name, source="inline structure")
    root = resources.files("damoyolo.models.backbones") / "structures"
    candidate = root / f"{name}.json"
    if is_packaged_structure(name):
        return parse_structure(candidate.read_text(), source=f"packaged structure {name!r}")
    path = Path(name)
    if not path.is_file():
        raise StructureError(
            f"structure {name!r} is neither a packaged structure "
            f"({', '.join(packaged_structures())}) nor an existing file")
    return parse_structure(path.read_text(), source=str(path))


def dump_structure(blocks: list[BlockSpec]) -> str:
    """Serialise to our JSON format."""
    rows = ",\n  ".join(json.dumps(asdict(b)) for b in blocks)
    return f'{{"format": "{FORMAT_TAG}", "blocks": [\n  {rows}\n]}}\n'


def dump_structure_official(blocks: list[BlockSpec], names: str = "v1") -> str:
    """Serialise to the official structure-text format (a Python literal list) with v1
    (DAMO-YOLO) or v2 (current MAE-NAS) class names."""
    lines = ",\n  ".join(repr(b.to_official(names)) for b in blocks)
    return f"[ {lines}]\n"
