"""MAE-NAS: training-free search of TinyNAS backbones under latency / FLOPs / params budgets.

* :mod:`.space` — search form vs detector form, the k1kx / kxkx search spaces and their mutations;
* :mod:`.cost` — layers, params, MACs and the per-convolution list of the search-time network;
* :mod:`.score` — the analytic maximum-entropy ("madnas") score and its forward-pass cross-check;
* :mod:`.latency` — latency predictors: official-format lookup tables and on-device measurement;
* :mod:`.search` — budgets and the seeded evolutionary search.

Nothing here allocates network weights except the forward-pass score and the measured predictor.
"""

from .cost import ConvOp, count_layers, count_macs, count_params, conv_ops
from .score import ScoreResult, entropy_score, madnas_score
from .space import SearchSpace, to_detector_form, to_search_form

__all__ = [
    "ConvOp", "conv_ops", "count_layers", "count_params", "count_macs",
    "ScoreResult", "madnas_score", "entropy_score",
    "SearchSpace", "to_search_form", "to_detector_form",
]
