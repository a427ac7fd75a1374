"""Cost matrices and assignment for tracking (numpy).

``linear_assignment`` solves the rectangular assignment problem with a cost ceiling: it uses
``lap.lapjv`` when the optional package ``lap`` (or ``lapx``, same module name) is installed,
and ``scipy.optimize.linear_sum_assignment`` otherwise; pairs whose cost is above the ceiling
are never matched.  ``greedy_assignment`` is the baseline: best pair first.
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_iou", "linear_assignment", "greedy_assignment", "assignment_backend",
           "load_solver"]

try:  # optional, faster for large matrices; same results up to ties
    import lap as _lap  # type: ignore
except ImportError:  # pragma: no cover - depends on the environment
    _lap = None

_BIG = 1e6
_lsa = None


def load_solver() -> None:
    """Import the assignment solver now (trackers call this when built, so the first frame
    does not pay for the import); without ``lap`` this needs scipy."""
    global _lsa
    if _lap is None and _lsa is None:
        from .._optional import import_optional
        _lsa = import_optional("scipy.optimize", "tracking (Hungarian assignment)"
                               ).linear_sum_assignment


def assignment_backend() -> str:
    """``"lap"`` when ``lap``/``lapx`` is importable, else ``"scipy"``."""
    return "lap" if _lap is not None else "scipy"


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a (N, 4) and b (M, 4), xyxy pixels -> (N, M) in [0, 1]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    ix = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    iy = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _split(matches: list[tuple[int, int]], n: int, m: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mt = np.asarray(matches, dtype=np.int64).reshape(-1, 2)
    free_r, free_c = np.ones(n, bool), np.ones(m, bool)
    free_r[mt[:, 0]] = False
    free_c[mt[:, 1]] = False
    return mt, np.flatnonzero(free_r), np.flatnonzero(free_c)


def linear_assignment(cost: np.ndarray, max_cost: float
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one matching of rows to columns, pairs above ``max_cost`` excluded.

    Returns (matches (K, 2) [row, col], unmatched rows, unmatched cols), int64 arrays.
    """
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    if n == 0 or m == 0:
        return _split([], n, m)
    if _lap is not None:
        _, x, _ = _lap.lapjv(cost, extend_cost=True, cost_limit=max_cost)
        matches = [(i, int(j)) for i, j in enumerate(x) if j >= 0]
        return _split(matches, n, m)
    load_solver()
    gated = np.where(cost > max_cost, _BIG, cost)
    r, c = _lsa(gated)
    keep = gated[r, c] <= max_cost
    return _split(list(zip(r[keep].tolist(), c[keep].tolist())), n, m)


def greedy_assignment(cost: np.ndarray, max_cost: float
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy matching: repeatedly take the cheapest remaining pair (cost <= ``max_cost``).

    Same return value as :func:`linear_assignment`.
    """
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    if n == 0 or m == 0:
        return _split([], n, m)
    order = np.argsort(cost, axis=None, kind="stable")
    used_r, used_c = np.zeros(n, bool), np.zeros(m, bool)
    matches = []
    for flat in order.tolist():
        i, j = divmod(flat, m)
        if cost[i, j] > max_cost:
            break
        if not used_r[i] and not used_c[j]:
            used_r[i] = used_c[j] = True
            matches.append((i, j))
    return _split(matches, n, m)
