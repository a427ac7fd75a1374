"""MAE-NAS: golden scores/costs/latencies of the official code, space invariants, search."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from damoyolo.cli import main
from damoyolo.models.backbones.structure import (BlockSpec, dump_structure_official,
                                                 load_structure, parse_structure)
from damoyolo.nas.cost import count_conv_macs, count_layers, count_macs, count_params
from damoyolo.nas.latency import MeasuredPredictor, TableError, TablePredictor, profile_table
from damoyolo.nas.score import entropy_score, madnas_score
from damoyolo.nas.search import Budgets, search
from damoyolo.nas.space import SearchSpace, initial_structure, to_detector_form, to_search_form

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT.parent / "shared" / "nas" / "conv_data.out.fp16.damoyolo"

# official tutorial example (search form)
TUTORIAL = [BlockSpec("stem", 12, 32, 3, 1)] + [
    BlockSpec("k1kx", i, o, 3, s, btn, L) for i, o, s, L, btn in
    [(32, 96, 2, 1, 24), (96, 96, 2, 2, 96), (96, 256, 2, 3, 128), (256, 256, 1, 3, 144),
     (256, 512, 2, 3, 224)]]

GOLDEN = {  # score, per-stage terms, layers, predicted V100 latency (s/img), GFLOPs, M params
    "tinynas_L20_k1kx": (1015.1441, (0, 0, 26.667, 51.511, 936.966), 19, 8.38e-5, 4.00, 1.90),
    "tinynas_L25_k1kx": (1380.5875, (0, 0, 40.430, 72.198, 1267.959), 25, 1.1996e-4, 8.19, 3.05),
    "tinynas_L35_kxkx": (2293.5631, (0, 0, 46.716, 109.002, 2137.845), 35, 4.0037e-4, 32.77, 16.65),
    "tinynas_L45_kxkx": (3004.1578, (0, 0, 61.743, 141.541, 2800.873), 45, 7.048e-4, 63.02, 32.41),
}


@pytest.fixture(scope="module")
def table():
    if not TABLE.exists():
        pytest.skip("reference data shared/nas/conv_data.out.fp16.damoyolo not present")
    return TablePredictor(TABLE, resolution=320)


# ------------------------------------------------------------------ score and cost
@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_released_backbones_golden(name):
    score, terms, layers, _lat, gflops, mparams = GOLDEN[name]
    blocks = to_search_form(load_structure(name))
    r = madnas_score(blocks)
    assert round(r.total, 4) == pytest.approx(score, abs=1e-9)
    assert [round(t, 3) for t in r.stage_terms] == pytest.approx(list(terms), abs=1e-9)
    assert count_layers(blocks) == layers
    assert round(count_macs(blocks, 320) / 1e9, 2) == pytest.approx(gflops)
    assert round(count_params(blocks) / 1e6, 2) == pytest.approx(mparams)


def test_tutorial_example_golden():
    assert madnas_score(TUTORIAL).total == 1399.2675807481487
    assert count_macs(TUTORIAL, 320) == 7_351_091_200
    assert count_params(TUTORIAL) == 5_831_696
    assert count_layers(TUTORIAL) == 25
    assert count_conv_macs(TUTORIAL, 320) < count_macs(TUTORIAL, 320)


def test_table_latency_golden(table):
    assert table(TUTORIAL) == pytest.approx(1.1991791411210322e-4, rel=1e-12)
    for name, (*_, lat, _g, _p) in GOLDEN.items():
        got = table(to_search_form(load_structure(name)))
        digits = len(f"{lat:e}".split("e")[0].replace(".", "").rstrip("0"))
        assert float(f"{got:.{digits - 1}e}") == pytest.approx(lat, rel=1e-12), name


def test_forward_entropy_score_matches_analytic():
    for blocks in (TUTORIAL, to_search_form(load_structure("tinynas_L35_kxkx"))):
        a = madnas_score(blocks).total
        f = entropy_score(blocks, resolution=64, repeats=1, batch_size=1).total
        assert abs(f - a) / a < 0.005


def _bump(blocks, i, field):
    b = blocks[i]
    new = list(blocks)
    if field == "out":
        new[i] = replace(b, out_channels=b.out_channels + 8)
        if i + 1 < len(new):
            new[i + 1] = replace(new[i + 1], in_channels=b.out_channels + 8)
    elif field == "btn":
        new[i] = replace(b, btn=b.btn + 8)
    else:
        new[i] = replace(b, num_layers=b.num_layers + 1)
    return new


@pytest.mark.parametrize("field", ["out", "btn", "L"])
def test_score_increases_with_out_btn_L(field):
    base = madnas_score(TUTORIAL).total
    for i in range(1, len(TUTORIAL)):
        assert madnas_score(_bump(TUTORIAL, i, field)).total > base, (field, i)
    if field == "out":
        assert madnas_score(_bump(TUTORIAL, 0, "out")).total > base


# ------------------------------------------------------------------ structures
def test_structure_formats_and_forms(tmp_path):
    det = load_structure("tinynas_L25_k1kx")
    for names in ("v1", "v2"):
        text = dump_structure_official(det, names=names)
        assert ("SuperResConvK1KX" in text) == (names == "v1")
        assert parse_structure(text) == det
    with_bits = ("[{'class': 'ConvKXBNRELU', 'in': 12, 'out': 32, 's': 1, 'k': 3, 'nbitsA': 8, "
                 "'nbitsW': 8}, {'class': 'SuperResKXKX', 'in': 32, 'out': 64, 's': 2, 'k': 3, "
                 "'L': 1, 'btn': 32, 'nbitsA': [8, 8], 'nbitsW': [8, 8]}]")
    blocks = parse_structure(with_bits)
    assert blocks[1].kind == "kxkx" and blocks[0].in_channels == 12
    s = to_search_form(det)
    assert s[0].in_channels == 12 and s[1:] == det[1:]
    assert to_detector_form(s) == det and to_search_form(s) == s
    with pytest.raises(ValueError, match="stem takes 5"):
        to_search_form([replace(det[0], in_channels=5)] + det[1:])


# ------------------------------------------------------------------ search space
@pytest.mark.parametrize("kind", ["k1kx", "kxkx"])
def test_mutation_invariants(kind):
    space = SearchSpace(kind, budget_layers=25)
    rng = random.Random(1)
    cur = initial_structure(kind)
    changed = [0] * len(cur)
    pool = [cur]
    for _ in range(3000):
        parent = pool[rng.randrange(len(pool))]
        child = space.mutate(parent, rng)
        assert space.check(child) == [], (child, space.check(child))
        for i, (a, b) in enumerate(zip(parent, child)):
            changed[i] += a != b
        pool.append(child)
        pool = pool[-64:]
    assert all(c > 0 for c in changed), changed  # every block mutates, the last included
    # out channels never decrease along the network
    assert all(child[i].out_channels <= child[i + 1].out_channels for i in range(len(child) - 1))


def test_layer_caps():
    space = SearchSpace("k1kx", budget_layers=25)
    assert space.layer_cap(1, 6) == 2 and space.layer_cap(3, 6) == 3
    rng = random.Random(0)
    b = initial_structure("k1kx")
    for _ in range(300):
        b = space.mutate_block(b, rng.randrange(1, 6), rng)
        assert b[1].num_layers <= 2 and max(x.num_layers for x in b[2:]) <= 3


# ------------------------------------------------------------------ search
def test_search_budgets_and_determinism(table):
    space = SearchSpace("k1kx", budget_layers=25)
    budgets = Budgets(layers=25, latency=1.0e-4, macs=6e9, params=4e6)
    kw = dict(population_size=32, seed=3, predictor=table)
    r1 = search(initial_structure("k1kx"), space, budgets, 1500, **kw)
    r2 = search(initial_structure("k1kx"), space, budgets, 1500, **kw)
    assert [c.blocks for c in r1.population] == [c.blocks for c in r2.population]
    assert len(r1.population) == 32
    assert r1.best.score > madnas_score(initial_structure("k1kx")).total
    fresh = TablePredictor(TABLE, resolution=320)
    scores = [c.score for c in r1.population]
    assert scores == sorted(scores, reverse=True)
    assert len({c.blocks for c in r1.population}) == len(r1.population)
    for c in r1.population:  # every member meets every budget, recomputed independently
        assert count_layers(c.blocks) <= 25
        assert count_macs(c.blocks, 320) <= 6e9
        assert count_params(c.blocks) <= 4e6
        assert fresh(c.blocks) <= 1.0e-4
        assert madnas_score(c.blocks).total == c.score
    r3 = search(initial_structure("k1kx"), space, budgets, 1500, population_size=32, seed=4,
                predictor=table)
    assert [c.blocks for c in r3.population] != [c.blocks for c in r1.population]


def test_search_rejects_initial_over_budget():
    with pytest.raises(ValueError, match="initial structure does not meet"):
        search(initial_structure("k1kx"), SearchSpace(budget_layers=4), Budgets(layers=4), 10)


# ------------------------------------------------------------------ measured / profiled latency
def test_measured_predictor_caches_shapes():
    calls = []

    def fake(op):
        calls.append(op)
        return 0.01 * op.macs / 1e6

    pred = MeasuredPredictor(resolution=320, timer=fake)
    lat = pred(TUTORIAL)
    n = len(calls)
    assert lat > 0 and n < 40  # repeated unit shapes are timed once
    assert pred(TUTORIAL) == lat and len(calls) == n


def test_profile_table_roundtrip(tmp_path):
    out = tmp_path / "cpu.table"
    pred = MeasuredPredictor(batch=1, repeats=1, warmup=0)
    n = profile_table(out, [8, 16], [16, 8], predictor=pred)
    assert n == 2 * 2 * 2 * 2 * 2 * 2
    first = out.read_text().splitlines()[0]
    assert first.startswith("{Regular,1,") and len(first.split()) == 2
    tp = TablePredictor(out, resolution=16)
    small = [BlockSpec("stem", 12, 8, 3, 1), BlockSpec("k1kx", 8, 16, 3, 2, 8, 1)]
    assert tp(small) > 0


def test_table_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.table"
    bad.write_text("{Regular,1,8,16,16,8,3,1,0} 0.1\n{Regular,1,8} x\n")
    with pytest.raises(TableError, match=r"bad.table:2"):
        TablePredictor(bad)
    with pytest.raises(TableError, match="does not exist"):
        TablePredictor(tmp_path / "missing")
    for value in ("nan", "inf", "-0.5"):  # a NaN row would otherwise pass every budget
        bad.write_text(f"{{Regular,1,8,16,16,8,3,1,0}} {value}\n")
        with pytest.raises(TableError, match=r"bad.table:1: latency .* not a finite"):
            TablePredictor(bad)


# ------------------------------------------------------------------ CLI and detector
def test_cli_score(capsys, table):
    assert main(["nas", "score", "tinynas_L25_k1kx", "--latency", f"table:{TABLE}"]) == 0
    out = capsys.readouterr().out
    assert "score 1380.5875" in out and "layers 25" in out and "1380.5875248763266" in out


def test_cli_search_and_detector_builds(tmp_path, capsys):
    out = tmp_path / "best.txt"
    rc = main(["nas", "search", "--space", "k1kx", "--budget-layers", "20", "--budget-flops", "4",
               "--budget-params", "3", "--population", "16", "--candidates", "300", "--seed", "0",
               "--out", str(out)])
    assert rc == 0
    blocks = load_structure(out)
    assert blocks[0].in_channels == 3  # detector form
    s = to_search_form(blocks)
    assert count_layers(s) <= 20 and count_macs(s, 320) <= 4e9 and count_params(s) <= 3e6
    assert (tmp_path / "best.txt.json").is_file()
    from damoyolo import build_model
    from damoyolo.config import apply_overrides
    from damoyolo.presets import get_preset
    cfg = apply_overrides(get_preset("damoyolo-s").model, [f"backbone.structure={out}"])
    model = build_model(cfg, num_classes=3).eval()
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 64, 64))
    assert len(y.cls) == 3 and y.cls[0].shape[:2] == (1, 3)
    assert main(["nas", "search", "--budget-layers", "20", "--budget-latency", "1",
                 "--out", str(out)]) == 2  # latency budget without a predictor: clear error
    assert "needs --latency" in capsys.readouterr().err


def test_retime_population_moves_over_budget_candidates_back():
    """Re-timing with fresh predictors replaces the search's cached latencies: a candidate
    now over budget goes behind those within it (winner's-curse guard)."""
    from damoyolo.nas.search import Budgets, Candidate, SearchResult, retime_population
    from damoyolo.nas.space import initial_structure

    blocks = tuple(initial_structure("k1kx"))
    cands = [Candidate(blocks[:k], 100.0 - k, k, 0, 0, 0.9e-3) for k in (1, 2, 3)]
    true_lat = {1: 1.5e-3, 2: 0.8e-3, 3: 0.95e-3}  # candidate 1 was timed too fast

    class Fake:
        fresh_calls = 0

        def fresh(self):
            Fake.fresh_calls += 1
            return lambda b: true_lat[len(b)]

    res = SearchResult(list(cands), 3, 3, 0.0, Budgets(latency=1e-3))
    out = retime_population(res, Fake(), top=3, rounds=3)
    assert Fake.fresh_calls == 3
    assert [len(c.blocks) for c in out.population] == [2, 3, 1]
    assert [c.latency for c in out.population] == [0.8e-3, 0.95e-3, 1.5e-3]
    assert [r["within"] for r in out.retimed] == [False, True, True]
    # no latency budget: untouched
    res2 = SearchResult(list(cands), 3, 3, 0.0, Budgets(layers=20))
    assert retime_population(res2, Fake()).population == cands


def test_measured_predictor_fresh_has_same_settings_and_empty_cache():
    from damoyolo.nas.latency import MeasuredPredictor
    from damoyolo.nas.space import initial_structure
    p = MeasuredPredictor(resolution=64, repeats=2, warmup=1, timer=lambda op: 1.0, threads=1)
    blocks = initial_structure("k1kx")
    v = p(blocks)
    q = p.fresh()
    assert q.cache == {} and p.cache and (q.resolution, q.repeats, q.warmup, q.threads) == (64, 2, 1, 1)
    assert q(blocks) == v  # same timer, same conv list


def test_retime_goes_down_the_population_until_one_fits():
    from damoyolo.nas.search import Budgets, Candidate, SearchResult, retime_population
    from damoyolo.nas.space import initial_structure

    blocks = tuple(initial_structure("k1kx"))
    cands = [Candidate(blocks[:k], 100.0 - k, k, 0, 0, 0.9e-3) for k in (1, 2, 3, 4, 5)]
    true_lat = {1: 1.5e-3, 2: 1.2e-3, 3: 0.7e-3, 4: 0.6e-3, 5: 2e-3}

    class Fake:
        def fresh(self):
            return lambda b: true_lat[len(b)]

    out = retime_population(SearchResult(list(cands), 5, 5, 0.0, Budgets(latency=1e-3)),
                            Fake(), top=2, rounds=1)
    # groups [1, 2] (both over), [3, 4] (fit): stops there; 5 is never re-timed
    assert [len(c.blocks) for c in out.population] == [3, 4, 1, 2, 5]
    assert len(out.retimed) == 4 and out.population[-1].latency == 0.9e-3
