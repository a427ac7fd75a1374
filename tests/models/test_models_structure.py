"""Backbone structure files: packaged copies, text formats, and the errors they raise."""

from __future__ import annotations

import pytest

from damoyolo.models.backbones.structure import (StructureError, dump_structure,
                                                 dump_structure_official, load_structure,
                                                 packaged_structures, parse_structure)

from conftest import shared_path


def test_packaged_structures_equal_official_files():
    names = packaged_structures()
    assert len(names) == 8
    for name in names:
        official = parse_structure(shared_path("official", "structures", f"{name}.txt").read_text())
        assert load_structure(name) == official


def test_structure_formats_round_trip_and_v2_names(tmp_path):
    blocks = load_structure("tinynas_L25_k1kx")
    assert parse_structure(dump_structure(blocks)) == blocks
    assert parse_structure(dump_structure_official(blocks)) == blocks
    v2 = dump_structure_official(blocks).replace("SuperResConvK1KX", "SuperResK1KX")
    assert parse_structure(v2) == blocks
    p = tmp_path / "s.txt"
    p.write_text(v2)
    assert load_structure(str(p)) == blocks


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("[{'class': 'Nope', 'in': 3, 'out': 8}]", "unknown class"),
    ("[{'class': 'ConvKXBNRELU', 'in': 3, 'out': 8, 'k': 3, 's': 1},"
     " {'class': 'SuperResConvK1KX', 'in': 9, 'out': 16, 'k': 3, 's': 2, 'btn': 8, 'L': 1}]",
     "takes 9 channels but block 0 gives 8"),
    ("[{'class': 'ConvKXBNRELU', 'in': 3, 'k': 3, 's': 1}]", "lacks field 'out'"),
    ("__import__('os')", "not a structure literal"),
])
def test_structure_errors(text, match):
    with pytest.raises(StructureError, match=match):
        parse_structure(text, source="x.txt")


def test_unknown_structure_name():
    with pytest.raises(StructureError, match="neither a packaged structure"):
        load_structure("tinynas_nope")
