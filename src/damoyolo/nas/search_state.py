"""The on-disk state of a resumable MAE-NAS search (see :mod:`damoyolo.nas.search`): the
population, the structures already seen (digests), the random generator and measured
timings, written atomically; refused in one line when another search wrote it or when damaged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time

from ..models.backbones.structure import BlockSpec
from .cost import ConvOp
from .search import Candidate, SearchError

class StateFile:
    """The state file of one search (settings digest ``key``; saved every ``every`` s)."""

    VERSION = 1

    def __init__(self, path, key: str, every: float):
        from pathlib import Path
        self.path = Path(path)
        self.key = key
        self.every = float(every)
        self.last = time.monotonic()

    def _fail(self, what: str):
        return SearchError(f"{self.path}: {what}; remove it to start the search afresh")

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        try:
            d = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise self._fail(f"not a search state file ({type(e).__name__})") from None
        if not isinstance(d, dict) or d.get("format") != "damoyolo-nas-search-state":
            raise self._fail("not a search state file")
        if d.get("version") != self.VERSION:
            raise self._fail(f"state version {d.get('version')!r} is not {self.VERSION}")
        if d.get("key") != self.key:
            raise self._fail("it was written by a search with other settings (space, budgets, "
                             "seed, population, latency, islands or initial structure)")
        try:
            state = {
                "step": _nonneg_int(d["step"]),
                "accepted": _nonneg_int(d["accepted"]),
                "population": [_candidate_from(c) for c in d["population"]],
                "seen": {str(x) for x in d["seen"]},
                "rng": _rng_state_from(d["rng"]) if d.get("rng") is not None else None,
                "round": _nonneg_int(d.get("round", 0)),
                "timings": [(_convop_from(t[:-1]), float(t[-1])) for t in d.get("timings", [])],
            }
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise self._fail(f"damaged state ({type(e).__name__}: {e})") from None
        if not state["population"]:
            raise self._fail("damaged state (empty population)")
        return state

    def save(self, step: int, pop, seen, rng_state, accepted: int, round_: int = 0,
             predictor=None) -> None:
        from ..outputs import atomic_write_text
        timings = []
        cache = getattr(predictor, "cache", None)
        if is_measured(predictor) and isinstance(cache, dict):
            timings = [[*dataclasses.astuple(op), ms] for op, ms in cache.items()]
        d = {"format": "damoyolo-nas-search-state", "version": self.VERSION, "key": self.key,
             "step": step, "accepted": accepted, "round": round_,
             "rng": None if rng_state is None else _rng_state_to(rng_state),
             "population": [_candidate_to(c) for c in pop], "seen": sorted(seen),
             "timings": timings}
        atomic_write_text(self.path, json.dumps(d, separators=(",", ":")) + "\n")
        self.last = time.monotonic()

    def checkpoint(self, predictor):
        def cb(step, pop, seen, rng_state, accepted, force):
            if force or time.monotonic() - self.last >= self.every:
                self.save(step, pop, seen, rng_state(), accepted, predictor=predictor)
        return cb

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def is_measured(predictor) -> bool:
    from .latency import MeasuredPredictor
    return isinstance(predictor, MeasuredPredictor)


def _nonneg_int(v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"expected a non-negative integer, got {v!r}")
    return v


def _candidate_to(c: Candidate) -> dict:
    return {"blocks": [dataclasses.astuple(b) for b in c.blocks], "score": c.score,
            "layers": c.layers, "macs": c.macs, "params": c.params, "latency": c.latency}


def _candidate_from(d: dict) -> Candidate:
    blocks = []
    for b in d["blocks"]:
        kind, *ints = b
        if not isinstance(kind, str) or len(ints) != 6:
            raise ValueError(f"bad block {b!r}")
        blocks.append(BlockSpec(kind, *(_nonneg_int(v) for v in ints)))
    lat = d["latency"]
    return Candidate(tuple(blocks), float(d["score"]), _nonneg_int(d["layers"]),
                     _nonneg_int(d["macs"]), _nonneg_int(d["params"]),
                     None if lat is None else float(lat))


def _rng_state_to(state) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_state_from(d) -> tuple:
    version, internal, gauss = d
    if len(internal) != 625 or not all(isinstance(v, int) for v in internal):
        raise ValueError("bad random state")
    state = (int(version), tuple(internal), None if gauss is None else float(gauss))
    random.Random().setstate(state)  # raises ValueError / TypeError when malformed
    return state


def _convop_from(fields) -> ConvOp:
    return ConvOp(*(_nonneg_int(v) for v in fields))


def settings_key(initial, space, budgets, seed, population_size, resolution, predictor_spec,
                  predictor, islands, sync_every, stage_weights) -> str:
    spec = predictor_spec
    if spec is None and predictor is not None:
        spec = type(predictor).__name__
    table = None
    if spec is not None and spec.startswith("table:"):
        from ..metadata import file_sha256
        try:
            table = file_sha256(spec[len("table:"):])
        except OSError:
            table = None
    text = repr((tuple(initial), space, budgets, int(seed), int(population_size),
                 int(resolution), spec, table, int(islands), sync_every, tuple(stage_weights)))
    return hashlib.sha256(text.encode()).hexdigest()
