"""Seeded evolutionary search of MAE-NAS (training-free, no weights allocated per candidate).

Loop (as the official search, with its defects fixed): the population starts from one initial
structure; each step draws a parent uniformly from the population, mutates ``2`` of its blocks
(any block, the last included), rejects the child if it breaks a budget, otherwise scores it and
adds it; the population is kept deduplicated, ranked by score and truncated to its size.  All
randomness comes from ``random.Random(seed)``, so the same seed gives the same result.  With
``islands > 1`` independent sub-populations run in worker processes and are merged (rank +
truncate) every ``sync_every`` candidates; the result is deterministic for a given number of
islands.
"""

from __future__ import annotations

import dataclasses

import bisect
import hashlib
import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..errors import DamoyoloError
from ..models.backbones.structure import BlockSpec
from .cost import count_layers, count_macs, count_params
from .score import DEFAULT_STAGE_WEIGHTS, madnas_score
from .space import SearchSpace

__all__ = ["Budgets", "Candidate", "SearchResult", "Evaluator", "evolve", "search",
           "make_predictor", "SearchError"]


class SearchError(DamoyoloError, ValueError):
    """The search cannot run as asked (budgets, latency predictor, initial structure)."""


@dataclass(frozen=True)
class Budgets:
    """Upper bounds (inclusive); ``None`` disables one.  latency in seconds per image,
    macs in operations (:func:`damoyolo.nas.cost.count_macs`), params in parameters."""

    layers: int | None = None
    latency: float | None = None
    macs: float | None = None
    params: float | None = None

    def describe(self) -> str:
        parts = []
        for name in ("layers", "latency", "macs", "params"):
            v = getattr(self, name)
            if v is not None:
                parts.append(f"{name}<={v:g}")
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class Candidate:
    """An evaluated structure (search form) with its score and costs."""

    blocks: tuple[BlockSpec, ...]
    score: float
    layers: int
    macs: int
    params: int
    latency: float | None

    def usage(self, budgets: Budgets) -> dict[str, float]:
        """Fraction of each active budget used."""
        out = {}
        for name in ("layers", "latency", "macs", "params"):
            b = getattr(budgets, name)
            if b is not None:
                out[name] = getattr(self, name) / b
        return out


@dataclass
class SearchResult:
    population: list[Candidate]          # best first
    evaluated: int                       # children generated (incl. rejected / duplicates)
    accepted: int                        # children within budget and new
    seconds: float
    budgets: Budgets
    retimed: list[dict] = field(default_factory=list)  # see :func:`retime_population`

    @property
    def best(self) -> Candidate:
        return self.population[0]


def make_predictor(spec: str | None, resolution: int, threads: int | None = None):
    """``"table:PATH"`` -> :class:`TablePredictor`, ``"measured"`` / ``"measured:cuda"`` ->
    :class:`MeasuredPredictor` (timing with ``threads`` CPU threads), ``None`` -> no latency."""
    if spec is None:
        return None
    from .latency import MeasuredPredictor, TablePredictor
    if spec.startswith("table:"):
        return TablePredictor(spec[len("table:"):], resolution=resolution)
    if spec == "measured" or spec.startswith("measured:"):
        device = spec.split(":", 1)[1] if ":" in spec else "cpu"
        return MeasuredPredictor(resolution=resolution, device=device, threads=threads)
    raise SearchError(f"unknown latency predictor {spec!r}; use 'table:PATH' or 'measured[:DEVICE]'")


class Evaluator:
    """Budget filter + score for one structure.  Cheap checks first; score only within budget."""

    def __init__(self, budgets: Budgets, resolution: int = 320, predictor=None,
                 stage_weights: Sequence[float] = DEFAULT_STAGE_WEIGHTS):
        if budgets.latency is not None and predictor is None:
            raise SearchError("a latency budget needs a latency predictor")
        self.budgets = budgets
        self.resolution = resolution
        self.predictor = predictor
        self.stage_weights = tuple(stage_weights)

    def __call__(self, blocks: Sequence[BlockSpec], enforce: bool = True) -> Candidate | None:
        b = self.budgets
        layers = count_layers(blocks)
        if enforce and b.layers is not None and layers > b.layers:
            return None
        params = count_params(blocks)
        if enforce and b.params is not None and params > b.params:
            return None
        macs = count_macs(blocks, self.resolution)
        if enforce and b.macs is not None and macs > b.macs:
            return None
        latency = self.predictor(blocks) if self.predictor is not None else None
        if enforce and b.latency is not None and not latency <= b.latency:  # NaN: over
            return None
        score = madnas_score(blocks, self.stage_weights).total
        return Candidate(tuple(blocks), score, layers, macs, params, latency)


def _insert(pop: list[Candidate], keys: list[float], cand: Candidate, size: int) -> None:
    """Insert keeping ``pop`` sorted by descending score (stable: earlier first on ties)."""
    i = bisect.bisect_right(keys, -cand.score)
    keys.insert(i, -cand.score)
    pop.insert(i, cand)
    if len(pop) > size:
        del pop[size:]
        del keys[size:]


def structure_digest(blocks: Sequence[BlockSpec]) -> str:
    """A short stable digest of a structure (what ``seen`` holds)."""
    return hashlib.blake2b(repr(tuple(blocks)).encode(), digest_size=12).hexdigest()


def evolve(population: list[Candidate], space: SearchSpace, evaluator: Evaluator,
           candidates: int, population_size: int, rng: random.Random,
           seen: set | None = None,
           progress: Callable[[int, list[Candidate]], None] | None = None,
           start: int = 0, accepted: int = 0,
           checkpoint: Callable[..., None] | None = None) -> tuple[list[Candidate], int]:
    """Run steps ``start`` .. ``candidates - 1`` on ``population`` (sorted, best first);
    returns the new population and the number of accepted children (``accepted`` counts
    those of earlier steps).  ``seen`` holds the digests (:func:`structure_digest`) of
    structures already evaluated; a child equal to one of them is skipped.

    checkpoint: called as ``checkpoint(step, pop, seen, rng_state, accepted, force)`` after
    each step (``force`` False: it decides by time) and, with ``force`` True and the state of
    the last completed step, when the search is interrupted (KeyboardInterrupt).
    """
    pop = sorted(population, key=lambda c: -c.score)[:population_size]
    keys = [-c.score for c in pop]
    seen = seen if seen is not None else set()
    seen.update(structure_digest(c.blocks) for c in pop)
    step = start
    try:
        for step in range(start, candidates):
            rng_state = rng.getstate() if checkpoint is not None else None
            parent = pop[rng.randrange(len(pop))]
            child = tuple(space.mutate(parent.blocks, rng))
            key = structure_digest(child)
            if key not in seen:
                cand = evaluator(child)
                seen.add(key)  # after the evaluation: an interrupted step leaves no trace
                if cand is not None:
                    accepted += 1
                    _insert(pop, keys, cand, population_size)
            rng_state = None
            if progress is not None:
                progress(step + 1, pop)
            if checkpoint is not None:
                checkpoint(step + 1, pop, seen, rng.getstate, accepted, False)
    except KeyboardInterrupt:
        if checkpoint is not None and rng_state is not None:
            checkpoint(step, pop, seen, lambda: rng_state, accepted, True)
        raise
    return pop, accepted


# ------------------------------------------------------------------------ islands
_WORKER: dict = {}


def _worker_init(space, budgets, resolution, predictor_spec, stage_weights):
    _WORKER["space"] = space
    _WORKER["evaluator"] = Evaluator(budgets, resolution,
                                     make_predictor(predictor_spec, resolution), stage_weights)


def _worker_run(args):
    population, candidates, population_size, seed = args
    pop, acc = evolve(population, _WORKER["space"], _WORKER["evaluator"], candidates,
                      population_size, random.Random(seed))
    return pop, acc


def _merge(pops: Sequence[Sequence[Candidate]], size: int) -> list[Candidate]:
    best: dict[tuple, Candidate] = {}
    for pop in pops:
        for c in pop:
            best.setdefault(c.blocks, c)
    return sorted(best.values(), key=lambda c: -c.score)[:size]


class _Progress:
    """Prints ``[done/total] best SCORE (budget use) RATE ms/cand`` every ``every`` candidates;
    the rate is the time since this object was made over the candidates done (one object
    for the whole search)."""

    def __init__(self, total: int, budgets: Budgets, every: int = 1000, stream=None):
        self.total, self.budgets, self.every = total, budgets, max(1, every)
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()

    def __call__(self, done: int, pop: Sequence[Candidate]) -> None:
        if done % self.every and done != self.total:
            return
        best = pop[0]
        use = " ".join(f"{k} {v:.0%}" for k, v in best.usage(self.budgets).items())
        rate = (time.perf_counter() - self.t0) / max(1, done) * 1000
        tty = getattr(self.stream, "isatty", lambda: False)()
        head, tail = ("\r", " ") if tty else ("", "\n")
        self.stream.write(f"{head}[{done}/{self.total}] best {best.score:.4f} "
                          f"({use}) {rate:.2f} ms/cand{tail}")
        if tty and done == self.total:
            self.stream.write("\n")
        self.stream.flush()


def retime_population(result: SearchResult, predictor, top: int = 16, rounds: int = 3
                      ) -> SearchResult:
    """Re-time the best candidates of a measured-latency search and keep the budget.

    Each candidate's latency in the search comes from one cached timing per convolution
    shape; picking the best score among candidates that *measured* within budget favours
    those whose convolutions happened to be timed fast.  Here candidates are timed again,
    ``top`` at a time in score order, by ``rounds`` fresh predictors (``predictor.fresh()``:
    empty cache, independent timings); a candidate's latency becomes the median.  It stops
    after the first group that contains a candidate within the latency budget (or at the
    end of the population).  Re-timed candidates within budget come first, then the
    re-timed ones over it, then the rest (score order otherwise kept).
    ``result.retimed`` records ``score``, ``search_latency``, ``latency`` and ``within``.
    """
    if result.budgets.latency is None or not hasattr(predictor, "fresh"):
        return result
    pop = result.population
    fits, over, log = [], [], []
    done = 0
    while done < len(pop) and not fits:
        head = pop[done:done + top]
        times = [[p(c.blocks) for c in head] for p in (predictor.fresh() for _ in range(rounds))]
        for i, c in enumerate(head):
            lat = float(sorted(t[i] for t in times)[len(times) // 2])
            ok = lat <= result.budgets.latency
            log.append({"score": c.score, "search_latency": c.latency, "latency": lat,
                        "within": ok})
            (fits if ok else over).append(dataclasses.replace(c, latency=lat))
        done += len(head)
    result.population = fits + over + pop[done:]
    result.retimed = log
    return result


def search(initial: Sequence[BlockSpec], space: SearchSpace, budgets: Budgets,
           candidates: int, population_size: int = 512, seed: int = 0, resolution: int = 320,
           predictor_spec: str | None = None, predictor=None, islands: int = 1,
           sync_every: int | None = None, stage_weights: Sequence[float] = DEFAULT_STAGE_WEIGHTS,
           progress: bool = False, state_path=None, checkpoint_every: float = 60.0
           ) -> SearchResult:
    """Evolutionary search from ``initial`` (search form).  See the module docstring.

    predictor / predictor_spec: a latency predictor object, or its spec string (needed with
    ``islands > 1``, each worker builds its own).  state_path: keep the search's state there
    and continue from it when it exists (see the module docstring).  Raises
    :class:`SearchError` when ``initial`` does not meet the budgets, or when the state file
    was written by a search with other settings or is damaged.
    """
    t0 = time.perf_counter()
    if predictor is None and predictor_spec is not None:
        predictor = make_predictor(predictor_spec, resolution)
    if islands > 1 and predictor is not None and predictor_spec is None:
        raise SearchError("islands > 1 needs predictor_spec (each worker builds its own predictor)")
    state_file = state = None
    if state_path is not None:
        from .search_state import StateFile, is_measured, settings_key
        state_file = StateFile(state_path, settings_key(
            initial, space, budgets, seed, population_size, resolution, predictor_spec,
            predictor, islands, sync_every, stage_weights), checkpoint_every)
        state = state_file.load()
        if state is not None and state["timings"] and is_measured(predictor):
            predictor.cache.update(state["timings"])
    evaluator = Evaluator(budgets, resolution, predictor, stage_weights)
    first = evaluator(tuple(initial))
    if first is None:
        c = evaluator(tuple(initial), enforce=False)
        raise SearchError(f"the initial structure does not meet the budgets ({budgets.describe()}): "
                          f"layers {c.layers}, latency {c.latency}, macs {c.macs}, params {c.params}")
    if state is not None and progress:
        print(f"resuming the search from {state_file.path} at candidate {state['step']}",
              file=sys.stderr)
    if islands <= 1:
        prog = _Progress(candidates, budgets, every=max(1, candidates // 20)) if progress else None
        rng = random.Random(seed)
        pop, seen, start, acc0 = [first], set(), 0, 0
        if state is not None:
            if state["rng"] is None:
                raise state_file._fail("damaged state (no random state)")
            pop, seen, start, acc0 = (state["population"], state["seen"], state["step"],
                                      state["accepted"])
            rng.setstate(state["rng"])
        pop, acc = evolve(pop, space, evaluator, candidates, population_size, rng, seen=seen,
                          progress=prog, start=min(start, candidates), accepted=acc0,
                          checkpoint=None if state_file is None
                          else state_file.checkpoint(predictor))
        if state_file is not None:
            state_file.save(max(candidates, start), pop, seen, rng.getstate(),
                            acc, predictor=predictor)
        return SearchResult(pop, max(candidates, start), acc, time.perf_counter() - t0, budgets)

    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing as mp

    sync_every = int(sync_every or population_size)
    prog = _Progress(candidates, budgets, every=1) if progress else None  # each round reports
    pop = [first]
    done = accepted = rnd = 0
    if state is not None:
        pop, done, accepted, rnd = (state["population"], state["step"], state["accepted"],
                                    state["round"])
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(islands, mp_context=ctx, initializer=_worker_init,
                             initargs=(space, budgets, resolution, predictor_spec,
                                       tuple(stage_weights))) as ex:
        while done < candidates:
            per = min(sync_every, math.ceil((candidates - done) / islands))
            jobs = [(pop, per, population_size, f"{seed}:{rnd}:{i}")
                    for i in range(islands)]
            results = list(ex.map(_worker_run, jobs))
            pop = _merge([r[0] for r in results], population_size)
            accepted += sum(r[1] for r in results)
            done += per * islands
            rnd += 1
            if state_file is not None:
                state_file.save(done, pop, (), None, accepted, round_=rnd)
            if prog is not None:
                prog(min(done, candidates), pop)
    return SearchResult(pop, done, accepted, time.perf_counter() - t0, budgets)
