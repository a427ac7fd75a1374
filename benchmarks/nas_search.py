"""Benchmark of the MAE-NAS search: candidates per second and the official S budget.

Runs a seeded k1kx search under the official DAMO-YOLO-S budgets (25 layers, predicted V100
latency <= 1.2e-4 s/image with the official table) and reports the speed, the projected time of
the official 500,000-candidate search and the best score against the released L25 backbone.

    python benchmarks/nas_search.py --table PATH/conv_data.out.fp16.damoyolo --candidates 50000

The table is the official MAE-NAS latency table (not shipped with this package).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

from damoyolo.models.backbones.structure import dump_structure_official, load_structure
from damoyolo.nas.latency import TablePredictor
from damoyolo.nas.score import madnas_score
from damoyolo.nas.search import Budgets, search
from damoyolo.nas.space import SearchSpace, initial_structure, to_detector_form, to_search_form


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True, help="official latency table")
    ap.add_argument("--candidates", type=int, default=50000)
    ap.add_argument("--population", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--islands", type=int, default=1)
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)

    predictor = TablePredictor(args.table, resolution=320)
    released = to_search_form(load_structure("tinynas_L25_k1kx"))
    ref = madnas_score(released).total
    ref_lat = predictor(released)
    budgets = Budgets(layers=25, latency=1.2e-4)
    space = SearchSpace("k1kx", budget_layers=25)
    res = search(initial_structure("k1kx"), space, budgets, args.candidates,
                 population_size=args.population, seed=args.seed, predictor=predictor,
                 predictor_spec=f"table:{args.table}" if args.islands > 1 else None,
                 islands=args.islands, progress=True)
    ms = res.seconds / res.evaluated * 1000
    best = res.best
    out = {
        "machine": platform.processor() or platform.machine(),
        "candidates": res.evaluated, "accepted": res.accepted, "islands": args.islands,
        "seconds": round(res.seconds, 2), "ms_per_candidate": round(ms, 4),
        "projected_500k_minutes": round(ms * 500000 / 1000 / 60, 2),
        "best_score": best.score, "best_layers": best.layers, "best_latency_s": best.latency,
        "best_macs": best.macs, "best_params": best.params,
        "released_L25_score": ref, "released_L25_latency_s": ref_lat,
        "best_structure": dump_structure_official(to_detector_form(best.blocks)),
    }
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
