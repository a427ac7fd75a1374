"""save_model/load_model: an atomic round trip that keeps names, ids and weights."""

from __future__ import annotations

import os

import pytest
import torch

import damoyolo
from damoyolo.checkpoint import CheckpointError


def test_save_load_roundtrip_atomic(tmp_path):
    m = damoyolo.build_model("damoyolo-ns", class_names=["cat", "dog"])
    path = tmp_path / "sub" / "m.pth"
    damoyolo.save_model(m, path, category_ids=[3, 7])
    assert sorted(os.listdir(path.parent)) == ["m.pth"]  # no temporary left behind
    r = damoyolo.load_model(path)
    assert r.class_names == ["cat", "dog"] and r.category_ids == [3, 7] and not r.training
    for (ka, va), (kb, vb) in zip(m.state_dict().items(), r.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    # load -> save -> load keeps everything without passing anything explicitly
    again = tmp_path / "again.pth"
    damoyolo.save_model(r, again)
    r2 = damoyolo.load_model(again)
    assert r2.category_ids == [3, 7] and r2.class_names == ["cat", "dog"]
    assert r2.cfg == m.cfg
    assert all(torch.equal(va, vb) for va, vb in zip(r.state_dict().values(),
                                                     r2.state_dict().values()))
    with pytest.raises(CheckpointError, match="holds damoyolo-ns, not damoyolo-t"):
        damoyolo.load_model(path, model="damoyolo-t")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        damoyolo.load_model(tmp_path / "absent.pth")
