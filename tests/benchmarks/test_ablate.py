"""benchmarks/ablate.py: paired statistics, the study file, and a real two-arm study on tiny
data that is killed half-way through a run and resumed."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("scipy")
pytest.importorskip("faster_coco_eval")


@pytest.fixture(scope="module")
def ablate():
    spec = importlib.util.spec_from_file_location("ablate_bench", ROOT / "benchmarks" / "ablate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_summary_and_paired_interval(ablate):
    s = ablate.Summary.of([1.0, 2.0, 3.0, 4.0])
    assert (s.n, s.mean) == (4, 2.5)
    assert s.sd == pytest.approx(math.sqrt(5 / 3))
    assert s.se == pytest.approx(math.sqrt(5 / 3) / 2)
    lo, hi = s.interval()
    h = 3.182446305284263 * s.se  # t(0.975, df=3)
    assert (lo, hi) == (pytest.approx(2.5 - h), pytest.approx(2.5 + h))
    assert math.isnan(ablate.Summary.of([1.0]).interval()[0])
    d, seeds = ablate.paired({0: 0.30, 1: 0.25, 2: 0.40}, {0: 0.28, 1: 0.26, 5: 0.1})
    assert seeds == [0, 1] and d.mean == pytest.approx((0.02 - 0.01) / 2)


def test_seeds_and_study_errors(ablate, tmp_path):
    assert ablate.parse_seeds(3) == [0, 1, 2]
    assert ablate.parse_seeds("0-2,7") == [0, 1, 2, 7]
    bad = tmp_path / "s.json"
    bad.write_text(json.dumps({"name": "x", "data": {}, "model": "damoyolo-ns",
                               "arms": {"a": {}}, "baseline": "b"}))
    with pytest.raises(ablate.StudyError, match="baseline 'b' is not an arm"):
        ablate.load_study(bad)
    bad.write_text("{")
    with pytest.raises(ablate.StudyError, match="cannot read"):
        ablate.load_study(bad)


def test_two_arms_resume_after_a_killed_run(ablate, tmp_path):
    study = {"name": "tiny", "data": {"synth": {"images": 10, "size": 96, "min_size": 12}},
             "model": "damoyolo-ns", "imgsz": 64, "epochs": 1, "batch": 4,
             "set": ["train.precise_bn=0", "train.workers=0"],
             "arms": {"aota": {}, "tal": {"set": ["train.assigner='tal'"]}},
             "baseline": "aota", "seeds": 2}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(study))
    out, work = tmp_path / "out", tmp_path / "work"
    r = ablate.Runner(ablate.load_study(path), out, work, threads=1, echo=lambda s: None)
    r.run_all([0, 1], ["aota", "tal"], max_runs=3)
    assert [p.name for p in sorted((out / "results" / "aota").glob("*.json"))] == \
        ["seed0.json", "seed1.json"]
    assert r.pending([0, 1], ["aota", "tal"]) == [("tal", 1)]
    # a run killed half-way leaves its folder but no result: it restarts from scratch
    half = work / "runs" / "tal" / "seed1"
    half.mkdir(parents=True)
    (half / "stale.txt").write_text("x")
    calls = []
    r.echo = calls.append
    r.run_all([0, 1], ["aota", "tal"])
    assert not (half / "stale.txt").exists() and r.pending([0, 1], ["aota", "tal"]) == []
    assert calls[0].startswith("1 runs to do")
    res = json.loads((out / "results" / "tal" / "seed1.json").read_text())
    assert 0 <= res["mAP"] <= 1 and res["seconds"] > 0 and res["cpu"]
    assert "train.assigner='tal'" in res["overrides"] and "train.seed=1" in res["overrides"]
    assert not list(half.glob("*.pt"))  # checkpoints dropped, logs kept
    text = ablate.report(r)
    assert "| aota | 2 |" in text and "| tal | 2 |" in text
    assert "Paired differences against `aota`" in text
    assert (out / "table.md").read_text() == text and (out / "map_per_seed.png").stat().st_size > 0
    # the two arms really trained differently (same seed, other assigner)
    a0 = json.loads((out / "results" / "aota" / "seed0.json").read_text())
    t0 = json.loads((out / "results" / "tal" / "seed0.json").read_text())
    assert a0["losses"] != t0["losses"]
