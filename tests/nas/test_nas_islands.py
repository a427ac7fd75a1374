"""MAE-NAS with islands > 1: rounds of per-island evolution merged, one progress report."""

from __future__ import annotations

import re
import time

import pytest

from damoyolo.nas.search import Budgets, search
from damoyolo.nas.space import SearchSpace, initial_structure


class _InProcessPool:
    """Stands in for ProcessPoolExecutor: the initializer and the jobs run in this process;
    each round (``map``) takes at least ``delay`` seconds."""

    delay = 0.05
    rounds = 0

    def __init__(self, workers, mp_context=None, initializer=None, initargs=()):
        if initializer is not None:
            initializer(*initargs)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def map(self, fn, jobs):
        type(self).rounds += 1
        t0 = time.perf_counter()
        out = [fn(j) for j in jobs]
        time.sleep(max(0.0, self.delay - (time.perf_counter() - t0)))
        return out


def test_islands_search_merges_rounds_and_reports_a_real_rate(monkeypatch, capsys):
    import concurrent.futures
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", _InProcessPool)
    _InProcessPool.rounds = 0
    space = SearchSpace("k1kx", budget_layers=25)
    budgets = Budgets(layers=25, macs=6e9, params=4e6)
    res = search(initial_structure("k1kx"), space, budgets, candidates=40, population_size=8,
                 islands=2, sync_every=10, progress=True)
    assert _InProcessPool.rounds == 2 and res.evaluated == 40  # 2 rounds x 2 islands x 10
    scores = [c.score for c in res.population]
    assert scores == sorted(scores, reverse=True) and len(res.population) == 8
    assert len({c.blocks for c in res.population}) == 8  # merged without duplicates
    lines = [ln for ln in capsys.readouterr().err.replace("\r", "\n").splitlines() if ln]
    assert [ln.split("]")[0] for ln in lines] == ["[20/40", "[40/40"]
    # the rate counts from the start of the search: >= one 50 ms round per 20 candidates
    rates = [float(re.search(r"([0-9.]+) ms/cand", ln).group(1)) for ln in lines]
    assert min(rates) >= 0.9 * 50 / 20
    assert rates[1] == pytest.approx(rates[0], rel=0.5)  # one clock, steady rounds
