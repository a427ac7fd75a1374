"""``damoyolo nas search|score|profile``: MAE-NAS backbone search, scoring and latency tables."""

from __future__ import annotations

import argparse
import json
import sys

from . import CLIError

HELP = "MAE-NAS: search a backbone for a latency/FLOPs budget, score one, profile a device"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-size", type=int, default=640,
                   help="detector input size; the search form runs at half of it (default 640)")
    p.add_argument("--latency", default=None, metavar="PREDICTOR",
                   help="latency predictor: 'table:PATH' (official-format table) or "
                        "'measured[:DEVICE]' (time each conv shape with torch here)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads for measured latency (default: torch's setting)")
    p.add_argument("--stage-weights", default="0,0,1,1,16",
                   help="score weight per stage (default 0,0,1,1,16)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="nas_command", metavar="SUBCOMMAND", required=True)

    s = sub.add_parser("search", help="evolutionary search under budgets")
    s.add_argument("--space", choices=("k1kx", "kxkx"), default="k1kx")
    s.add_argument("--budget-layers", type=int, required=True, help="maximum depth (e.g. 25)")
    s.add_argument("--budget-latency", type=float, default=None, metavar="MS",
                   help="maximum latency per image in milliseconds (needs --latency)")
    s.add_argument("--budget-flops", type=float, default=None, metavar="G",
                   help="maximum GFLOPs (MAE-NAS op count of the search-form network)")
    s.add_argument("--budget-params", type=float, default=None, metavar="M",
                   help="maximum parameters in millions")
    s.add_argument("--population", type=int, default=512)
    s.add_argument("--candidates", type=int, default=100000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--islands", type=int, default=1, help="worker processes (default 1)")
    s.add_argument("--channel-ranges", default="-,-,64:128,-,128:256,256:512",
                   help="per block output-channel range 'min:max' or '-' "
                        "(default: DAMO-YOLO S/M '-,-,64:128,-,128:256,256:512')")
    s.add_argument("--init", default=None, help="initial structure file (default: the "
                   "official small starting network)")
    s.add_argument("--out", required=True, help="best structure, detector form, official format")
    s.add_argument("--top", type=int, default=5, help="also write the top-N as OUT.json")
    s.add_argument("--retime-top", type=int, default=16,
                   help="measured latency: after the search, re-time candidates N at a time "
                        "(best first) with fresh timings until one is still within budget; "
                        "it becomes the result (0: off)")
    s.add_argument("--retime-rounds", type=int, default=3,
                   help="fresh timings per re-timed candidate (median)")
    s.add_argument("--checkpoint-every", type=float, default=60.0, metavar="S",
                   help="save the search's state to OUT.search-state.json every S seconds "
                        "(also on Ctrl-C and after each island round); the same command "
                        "run again continues from it (default 60)")
    _common(s)

    sc = sub.add_parser("score", help="score and cost of a structure file or packaged name")
    sc.add_argument("structure")
    sc.add_argument("--forward", action="store_true",
                    help="also compute the forward-pass entropy score (cross-check)")
    _common(sc)

    pr = sub.add_parser("profile", help="time convolutions here and write a latency table")
    pr.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    pr.add_argument("--out", required=True, help="table to write (official format)")
    pr.add_argument("--channels", default="16,32,64,128,256,512")
    pr.add_argument("--resolutions", default="160,80,40,20,10",
                    help="input feature-map sizes (search form: 320 for a 640 image)")
    pr.add_argument("--batch", type=int, default=1)
    pr.add_argument("--repeats", type=int, default=5)
    pr.add_argument("--threads", type=int, default=None, help="torch CPU threads while timing")


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CLIError(f"{what}: expected comma-separated integers, got {text!r}") from None


def _weights(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"--stage-weights: expected comma-separated numbers, got {text!r}") from None


def _ranges(text: str):
    out = []
    for part in text.split(","):
        part = part.strip()
        if part in ("-", "", "none", "None"):
            out.append(None)
            continue
        try:
            lo, hi = (int(v) for v in part.split(":"))
        except ValueError:
            raise CLIError(f"--channel-ranges: bad range {part!r}; use 'min:max' or '-'") from None
        out.append((lo, hi))
    return tuple(out)


def _describe(c, image_size: int) -> str:
    lat = "n/a" if c.latency is None else f"{c.latency * 1000:.6g} ms"
    return (f"score {c.score:.4f}  layers {c.layers}  latency {lat}  "
            f"GFLOPs {c.macs / 1e9:.3f} @{image_size}  params {c.params / 1e6:.3f} M")


def _run_score(args) -> int:
    from ..models.backbones.structure import load_structure
    from ..nas.score import entropy_score, madnas_score
    from ..nas.search import Budgets, Evaluator, make_predictor
    from ..nas.space import search_resolution, to_search_form

    res = search_resolution(args.image_size)
    blocks = to_search_form(load_structure(args.structure))
    weights = _weights(args.stage_weights)
    ev = Evaluator(Budgets(), res, make_predictor(args.latency, res, args.threads), weights)
    cand = ev(tuple(blocks), enforce=False)
    terms = madnas_score(blocks, weights).stage_terms
    print(f"{args.structure}: {_describe(cand, args.image_size)}")
    print("stage terms: " + ", ".join(f"{t:.4f}" for t in terms))
    print(f"score (full precision): {cand.score!r}")
    if args.forward:
        fw = entropy_score(blocks, stage_weights=weights)
        rel = (fw.total - cand.score) / cand.score
        print(f"forward entropy score: {fw.total:.4f} ({rel:+.3%} vs analytic)")
    return 0


def _run_search(args) -> int:
    from ..models.backbones.structure import dump_structure_official, load_structure
    from ..nas.search import Budgets, make_predictor, search
    from ..nas.space import (SearchSpace, initial_structure, search_resolution, to_detector_form,
                             to_search_form)

    if args.budget_latency is not None and args.latency is None:
        raise CLIError("--budget-latency needs --latency table:PATH or --latency measured")
    res = search_resolution(args.image_size)
    budgets = Budgets(
        layers=args.budget_layers,
        latency=None if args.budget_latency is None else args.budget_latency / 1000.0,
        macs=None if args.budget_flops is None else args.budget_flops * 1e9,
        params=None if args.budget_params is None else args.budget_params * 1e6)
    space = SearchSpace(args.space, channel_ranges=_ranges(args.channel_ranges),
                        budget_layers=args.budget_layers)
    init = (to_search_form(load_structure(args.init)) if args.init
            else initial_structure(args.space))
    predictor = make_predictor(args.latency, res, args.threads) if args.islands <= 1 else None
    from pathlib import Path
    out = Path(args.out)
    state = out.with_name(out.name + ".search-state.json")
    result = search(init, space, budgets, args.candidates, population_size=args.population,
                    seed=args.seed, resolution=res, predictor=predictor,
                    predictor_spec=args.latency,
                    islands=args.islands, stage_weights=_weights(args.stage_weights),
                    progress=True, state_path=state, checkpoint_every=args.checkpoint_every)
    if (args.latency or "").startswith("measured") and args.retime_top > 0 \
            and budgets.latency is not None:
        from ..nas.search import retime_population
        timer = predictor or make_predictor(args.latency, res, args.threads)
        result = retime_population(result, timer, args.retime_top, args.retime_rounds)
        n_ok = sum(r["within"] for r in result.retimed)
        print(f"re-timed the best {len(result.retimed)} ({args.retime_rounds} fresh timings "
              f"each, {args.retime_top} at a time until one fits): {n_ok} within the latency "
              f"budget")
        if n_ok == 0:
            print("warning: no candidate re-timed within budget; the best is over it "
                  "(timings are noisy here: run on a quiet machine or loosen the budget)")
    best = result.best
    from ..outputs import atomic_write_text
    atomic_write_text(out, dump_structure_official(to_detector_form(best.blocks)))
    top = [{"score": c.score, "layers": c.layers, "latency_s": c.latency, "flops": c.macs,
            "params": c.params, "usage": c.usage(budgets),
            "structure": dump_structure_official(to_detector_form(c.blocks))}
           for c in result.population[:max(1, args.top)]]
    summary = {"budgets": budgets.describe(), "space": args.space, "seed": args.seed,
               "candidates": result.evaluated, "accepted": result.accepted,
               "seconds": result.seconds, "top": top, "retimed": result.retimed}
    side = out.with_name(out.name + ".json")
    atomic_write_text(side, json.dumps(summary, indent=1) + "\n")
    state.unlink(missing_ok=True)  # the result is written: the next search starts afresh
    print(f"best: {_describe(best, args.image_size)}")
    print(f"{result.evaluated} candidates in {result.seconds:.1f} s "
          f"({result.seconds / max(1, result.evaluated) * 1000:.3f} ms each); "
          f"wrote {out} and {side}")
    print(f"train it: damoyolo train --set model.backbone.structure={out} ...")
    return 0


def _run_profile(args) -> int:
    from ..nas.latency import MeasuredPredictor, profile_table

    pred = MeasuredPredictor(batch=args.batch, device=args.device, repeats=args.repeats,
                             threads=args.threads)

    def progress(i, n):
        if i % max(1, n // 20) == 0 or i == n:
            print(f"[{i}/{n}] convolutions timed", file=sys.stderr)

    n = profile_table(args.out, _ints(args.channels, "--channels"),
                      _ints(args.resolutions, "--resolutions"), predictor=pred, progress=progress)
    print(f"wrote {n} rows to {args.out} (device {args.device}, batch {args.batch}); "
          f"use it with --latency table:{args.out}")
    return 0


def run(args) -> int:
    return {"search": _run_search, "score": _run_score, "profile": _run_profile}[args.nas_command](args)
