"""A NAS search keeps its state on disk: a killed or interrupted search continues where it
stopped and ends with the result of an uninterrupted one."""

from __future__ import annotations

import json

import pytest

from damoyolo.cli import main
from damoyolo.errors import DamoyoloError
from damoyolo.nas.latency import MeasuredPredictor
from damoyolo.nas.search import Budgets, SearchError, search
from damoyolo.nas.space import SearchSpace, initial_structure

SPACE = SearchSpace("k1kx", budget_layers=25)


def _fake_ms(op) -> float:
    return 1e-5 * op.in_channels * op.out_channels * op.kernel ** 2 * op.resolution ** 2 / 1e3


class _Latency:
    """A deterministic latency predictor that raises KeyboardInterrupt on call ``stop``."""

    def __init__(self, stop: int | None = None):
        self.calls, self.stop = 0, stop

    def __call__(self, blocks) -> float:
        self.calls += 1
        if self.stop is not None and self.calls == self.stop:
            raise KeyboardInterrupt
        return sum(_fake_ms(op) for op in _ops(blocks)) / 1000.0


def _ops(blocks):
    from damoyolo.nas.cost import conv_ops
    return conv_ops(blocks, 320)


def _budgets(ref: float) -> Budgets:
    return Budgets(layers=25, latency=ref, macs=6e9, params=4e6)


def _summary(res):
    return [(c.blocks, c.score, c.latency) for c in res.population], res.accepted


def test_an_interrupted_search_resumes_to_the_uninterrupted_result(tmp_path):
    ref = _Latency()(initial_structure("k1kx")) * 3
    kw = dict(population_size=16, seed=5, checkpoint_every=3600.0)
    whole = search(initial_structure("k1kx"), SPACE, _budgets(ref), 400, predictor=_Latency(),
                   **kw)
    state = tmp_path / "s.json"
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the middle: the state is saved then
        search(initial_structure("k1kx"), SPACE, _budgets(ref), 400,
               predictor=_Latency(stop=150), state_path=state, **kw)
    saved = json.loads(state.read_text())
    assert 0 < saved["step"] < 400 and len(saved["seen"]) > 0
    resumed = search(initial_structure("k1kx"), SPACE, _budgets(ref), 400,
                     predictor=_Latency(), state_path=state, **kw)
    assert _summary(resumed) == _summary(whole)
    assert resumed.evaluated == 400
    # the finished state stays until the caller removes it: a rerun returns the same at once
    again = search(initial_structure("k1kx"), SPACE, _budgets(ref), 400,
                   predictor=_Latency(stop=2), state_path=state, **kw)
    assert _summary(again) == _summary(whole)


def test_a_killed_search_resumes_from_its_last_periodic_state(tmp_path):
    """A kill (no Ctrl-C handler runs) loses only the steps after the last periodic save."""
    kw = dict(population_size=16, seed=2)
    budgets = Budgets(layers=25, macs=6e9, params=4e6)
    whole = search(initial_structure("k1kx"), SPACE, budgets, 300, **kw)
    state = tmp_path / "s.json"
    search(initial_structure("k1kx"), SPACE, budgets, 120, state_path=state,
           checkpoint_every=0.0, **kw)  # stands in for a search killed after 120 candidates
    assert json.loads(state.read_text())["step"] == 120
    resumed = search(initial_structure("k1kx"), SPACE, budgets, 300, state_path=state,
                     checkpoint_every=0.0, **kw)
    assert _summary(resumed) == _summary(whole)


def test_measured_timings_are_kept_in_the_state(tmp_path):
    """A resumed measured-latency search reuses the timings taken before the kill, so its
    budget decisions are those of an uninterrupted search."""
    noise = iter(range(10 ** 6))

    def timer(op):  # every new timing differs: a re-timed shape would change the result
        return _fake_ms(op) * (1 + 1e-3 * (next(noise) % 7))

    init = initial_structure("k1kx")
    probe = MeasuredPredictor(resolution=320, timer=timer)
    budgets = _budgets(probe(init) * 3)
    state = tmp_path / "s.json"
    first = MeasuredPredictor(resolution=320, timer=timer)
    search(init, SPACE, budgets, 100, population_size=16, seed=1, predictor=first,
           state_path=state, checkpoint_every=0.0)
    timed = json.loads(state.read_text())["timings"]
    assert len(timed) == len(first.cache) > 0
    second = MeasuredPredictor(resolution=320, timer=timer)
    search(init, SPACE, budgets, 100, population_size=16, seed=1, predictor=second,
           state_path=state)
    assert second.cache == first.cache


def test_a_state_of_other_settings_or_damaged_is_refused_in_one_line(tmp_path):
    budgets = Budgets(layers=25, macs=6e9, params=4e6)
    state = tmp_path / "s.json"
    search(initial_structure("k1kx"), SPACE, budgets, 30, population_size=8, seed=0,
           state_path=state)
    with pytest.raises(SearchError, match="other settings") as e:
        search(initial_structure("k1kx"), SPACE, budgets, 30, population_size=8, seed=1,
               state_path=state)
    assert str(state) in str(e.value) and "\n" not in str(e.value)
    d = json.loads(state.read_text())
    for bad in ("not json", json.dumps([1]), json.dumps({**d, "population": [{"blocks": 1}]}),
                json.dumps({**d, "rng": [3, [1, 2], None]}), json.dumps({**d, "step": -1})):
        state.write_text(bad)
        with pytest.raises(DamoyoloError, match="s.json") as e:
            search(initial_structure("k1kx"), SPACE, budgets, 30, population_size=8, seed=0,
                   state_path=state)
        assert "\n" not in str(e.value)


def test_islands_search_continues_from_its_rounds(tmp_path, monkeypatch):
    import concurrent.futures

    from test_nas_islands import _InProcessPool
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", _InProcessPool)
    monkeypatch.setattr(_InProcessPool, "delay", 0.0)
    budgets = Budgets(layers=25, macs=6e9, params=4e6)
    kw = dict(population_size=8, islands=2, sync_every=10, seed=3)
    whole = search(initial_structure("k1kx"), SPACE, budgets, 60, **kw)
    state = tmp_path / "s.json"
    search(initial_structure("k1kx"), SPACE, budgets, 20, state_path=state, **kw)  # 1 round
    assert json.loads(state.read_text())["round"] == 1
    resumed = search(initial_structure("k1kx"), SPACE, budgets, 60, state_path=state, **kw)
    assert _summary(resumed) == _summary(whole)


def test_cli_search_continues_and_removes_its_state_when_done(tmp_path, capsys):
    out = tmp_path / "best.txt"
    state = tmp_path / "best.txt.search-state.json"
    args = ["nas", "search", "--budget-layers", "20", "--budget-flops", "4", "--population",
            "8", "--seed", "0", "--out", str(out)]
    search(initial_structure("k1kx"), SearchSpace("k1kx", budget_layers=20),
           Budgets(layers=20, macs=4e9), 50, population_size=8, seed=0, state_path=state)
    assert main(args + ["--candidates", "120"]) == 0
    assert "resuming the search" in capsys.readouterr().err
    assert out.is_file() and not state.exists()
    first = out.read_text()
    assert main(args + ["--candidates", "120"]) == 0  # afresh: same seed, same result
    assert "resuming" not in capsys.readouterr().err and out.read_text() == first
