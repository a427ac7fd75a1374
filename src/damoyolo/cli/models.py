"""damoyolo models: the published presets with params/GFLOPs beside the published figures."""

from __future__ import annotations

import argparse
import json

HELP = "list the published models with params / GFLOPs (ours vs published)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("names", nargs="*", help="only these models")


def _fmt(v, nd):
    return "-" if v is None else f"{v:.{nd}f}"


def run(args: argparse.Namespace) -> int:
    import torch

    from ..models.factory import build_model
    from ..models.complexity import model_complexity
    from ..presets import PRESETS, get_preset

    torch.set_num_threads(max(1, torch.get_num_threads()))
    names = [get_preset(n).model.name for n in args.names] or list(PRESETS)
    rows = []
    for name in names:
        p = PRESETS[name]
        model = build_model(name)
        params, gflops = model_complexity(model, p.model.input_size)
        _, gflops_half = model_complexity(model, p.model.input_size, bn_rule="half")
        rows.append({"name": name, "input": f"{p.model.input_size[1]}x{p.model.input_size[0]}",
                     "params_m": round(params, 3), "gflops": round(gflops, 3),
                     "gflops_bn_half": round(gflops_half, 3),
                     "published_params_m": p.published_params_m,
                     "published_gflops": p.published_gflops,
                     "published_map": p.published_map})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = (f"{'model':<13}{'input':>8}{'params(M)':>10}{'pub.':>6}{'dParams':>9}"
            f"{'GFLOPs':>8}{'d':>7}{'GFLOPs*':>9}{'d*':>7}{'pub.':>6}{'mAP':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        pg, pp = r["published_gflops"], r["published_params_m"]
        dp = "-" if pp is None else f"{(r['params_m'] / pp - 1) * 100:+.1f}%"
        d1 = f"{(r['gflops'] / pg - 1) * 100:+.1f}%"
        d2 = f"{(r['gflops_bn_half'] / pg - 1) * 100:+.1f}%"
        print(f"{r['name']:<13}{r['input']:>8}{r['params_m']:>10.3f}{_fmt(pp, 2):>6}{dp:>9}"
              f"{r['gflops']:>8.3f}{d1:>7}{r['gflops_bn_half']:>9.3f}{d2:>7}{_fmt(pg, 2):>6}"
              f"{_fmt(r['published_map'], 1):>6}")
    print("\nDeploy form (RepConv fused, BN kept); GFLOPs = 2 x MACs (thop) at the input size.\n"
          "GFLOPs: thop 0.1.1 rules. GFLOPs*: BatchNorm counted at half thop 0.1.1's rule, the\n"
          "convention that reproduces the published nano figures (docs/model_zoo.md).")
    return 0
