"""Measured-latency MAE-NAS search on this CPU, then a short training comparison with the preset.

    PYTHONPATH=src python benchmarks/nas_train.py --out runs/nas_train

1. times the preset's backbone (default ``damoyolo-t``, structure ``tinynas_L20_k1kx``) with the
   measured per-convolution predictor the search uses (torch, batch 1, ``--threads`` threads,
   search form at ``--imgsz`` / 2; median of ``--latency-rounds`` fresh timings) and takes that
   latency, and the preset's layer budget (the ``L`` of its structure name), as the search
   budgets;
2. runs ``damoyolo nas search --latency measured --budget-latency <that>`` in a child process,
   writing ``OUT/best.txt``;
3. writes a synthetic COCO dataset (``damoyolo.data.synthesize``) and trains the preset and the
   preset with ``model.backbone.structure=OUT/best.txt`` through ``damoyolo.train`` with the
   same seed, recipe and number of iterations;
4. re-times both backbones in one process, alternating (per-convolution sum, the search's
   measure, and the whole backbone's forward pass in deploy form, Focus and SPP included), counts parameters and GFLOPs of both detectors,
   scores both backbones (MAE-NAS score) and prints a markdown table with the val mAP of both,
   also written to ``OUT/results.md`` and ``OUT/results.json``.

Only backbones in a search space qualify: the ``res`` (k1kx) and ``csp`` (kxkx) presets.  The
nano presets build depthwise ("mob") backbones whose structures are not members of the k1kx
space (for instance a bottleneck wider than the block output), so they are refused.
Latency figures are only as good as the machine is quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

SPACE_OF_KIND = {"res": "k1kx", "csp": "kxkx"}


def _layer_budget(structure: str, blocks) -> int:
    """The ``L`` of a released structure's name (``tinynas_L20_k1kx`` -> 20), else its depth."""
    from damoyolo.nas.cost import count_layers
    m = re.search(r"_L(\d+)_", structure)
    return int(m.group(1)) if m else count_layers(blocks)


def _backbone_forward_ms(model, imgsz: int, threads: int, runs: int) -> float:
    """Median milliseconds of the deploy-form backbone on one random (1, 3, imgsz, imgsz) image."""
    import copy
    import statistics

    import torch

    from damoyolo.infer.benchmark import time_fn
    from damoyolo.models.reparam import reparameterize

    net = reparameterize(copy.deepcopy(model).eval(), fold_bn=True)
    backbone = net.backbone.eval()
    x = torch.randn(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            ms = statistics.median(time_fn(lambda: backbone(x), runs=runs, warmup=max(2, runs // 5)))
    finally:
        torch.set_num_threads(before)
    return ms


def _measured_ms(structures: list, res: int, threads: int, rounds: int) -> list[float]:
    """Per-convolution measured latency (ms) of each search-form structure: ``rounds`` fresh
    :class:`MeasuredPredictor` passes (every shape re-timed, structure order alternating),
    median per structure, so that structures compared are timed under the same conditions."""
    import statistics

    import torch

    from damoyolo.nas.latency import MeasuredPredictor
    per: list[list[float]] = [[] for _ in structures]
    before = torch.get_num_threads()  # the predictor sets its own; training must not inherit it
    try:
        for r in range(max(1, rounds)):
            pred = MeasuredPredictor(resolution=res, threads=threads)
            order = range(len(structures)) if r % 2 == 0 else reversed(range(len(structures)))
            for i in order:
                per[i].append(pred(structures[i]) * 1000.0)
    finally:
        torch.set_num_threads(before)
    return [statistics.median(v) for v in per]


def _search(args, space: str, budget_layers: int, budget_ms: float, best: Path) -> float:
    """Run ``damoyolo nas search`` in a child process; returns its wall time in seconds."""
    import damoyolo
    cmd = [sys.executable, "-m", "damoyolo", "nas", "search", "--space", space,
           "--budget-layers", str(budget_layers), "--budget-latency", f"{budget_ms:.6f}",
           "--latency", "measured", "--threads", str(args.threads),
           "--image-size", str(args.imgsz), "--population", str(args.population),
           "--candidates", str(args.candidates), "--seed", str(args.seed), "--out", str(best)]
    env = dict(os.environ)
    src = str(Path(damoyolo.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in [env.get("PYTHONPATH")] if p])
    print("$ " + " ".join(cmd[1:]).replace("-m damoyolo", "damoyolo", 1), flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"damoyolo nas search failed with exit status {proc.returncode}")
    return time.time() - t0


def _train(label: str, out: Path, data: Path, args, structure: Path | None) -> dict:
    import damoyolo
    from damoyolo.engine.api import short_run_overrides
    overrides = short_run_overrides(args.batch, args.lr, no_aug_epochs=args.no_aug,
                                    warmup_epochs=args.warmup, eval_interval=args.epochs,
                                    tensorboard=False, seed=args.seed, ema_ramp=args.ema_ramp)
    if structure is not None:
        overrides.append(f"model.backbone.structure={structure}")
    t0 = time.time()
    rec = damoyolo.train(model=args.model, data=data, epochs=args.epochs, batch=args.batch,
                         imgsz=args.imgsz, device="cpu", workers=args.workers,
                         overrides=overrides, output=out, progress=False, exist_ok=True)
    rec = {"label": label, "train_s": time.time() - t0, **rec}
    print(f"{label}: mAP {rec.get('val_AP', float('nan')):.4f}  AP50 "
          f"{rec.get('val_AP50', float('nan')):.4f}  ({rec['train_s']:.0f} s)", flush=True)
    return rec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/nas_train")
    p.add_argument("--model", default="damoyolo-t", help="preset (a res/k1kx or csp/kxkx one)")
    p.add_argument("--images", type=int, default=400, help="synthetic images (train + val)")
    p.add_argument("--size", type=int, default=320, help="synthetic image long side")
    p.add_argument("--imgsz", type=int, default=192,
                   help="training input size; latency is measured at this size too")
    p.add_argument("--epochs", type=int, default=8, help="epochs of each training run")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.02, help="learning rate at --batch")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up epochs")
    p.add_argument("--no-aug", type=int, default=2, help="final epochs without mosaic / mixup")
    p.add_argument("--ema-ramp", type=float, default=50.0, help="EMA ramp (short runs)")
    p.add_argument("--seed", type=int, default=0, help="data, search and training seed")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for every latency measurement (search included)")
    p.add_argument("--population", type=int, default=128, help="search population")
    p.add_argument("--candidates", type=int, default=30000, help="search candidates")
    p.add_argument("--budget-layers", type=int, default=None,
                   help="depth budget (default: the L of the preset's structure name)")
    p.add_argument("--latency-rounds", type=int, default=5,
                   help="independent per-convolution timings of each backbone (median kept)")
    p.add_argument("--latency-runs", type=int, default=30,
                   help="timed runs of each whole-backbone forward pass")
    p.add_argument("--reuse-search", action="store_true",
                   help="keep OUT/best.txt of an earlier run instead of searching again")
    args = p.parse_args(argv)
    if args.imgsz % 32:
        p.error(f"--imgsz {args.imgsz} must be a multiple of 32")

    import torch

    import damoyolo
    from damoyolo.data import synthesize
    from damoyolo.models.backbones.structure import load_structure
    from damoyolo.models.complexity import model_complexity
    from damoyolo.nas.score import madnas_score
    from damoyolo.nas.space import search_resolution, to_search_form
    from damoyolo.presets import get_preset

    try:
        preset = get_preset(args.model).model
    except KeyError as e:
        p.error(str(e.args[0]))
    space = SPACE_OF_KIND.get(preset.backbone.kind)
    if space is None:
        p.error(f"{preset.name} builds a '{preset.backbone.kind}' backbone, which is not in a "
                f"MAE-NAS search space; use a res (k1kx) or csp (kxkx) preset such as damoyolo-t")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = search_resolution(args.imgsz)
    preset_blocks = to_search_form(load_structure(preset.backbone.structure))
    layers = args.budget_layers or _layer_budget(preset.backbone.structure, preset_blocks)

    # 1. budget: the preset backbone's measured latency at the training size
    budget_ms = _measured_ms([preset_blocks], res, args.threads, args.latency_rounds)[0]
    print(f"{preset.name} backbone {preset.backbone.structure}: {budget_ms:.4f} ms measured "
          f"(search form {res}x{res}, {args.threads} thread(s), median of "
          f"{args.latency_rounds}); budgets: {layers} layers, "
          f"{budget_ms:.4f} ms", flush=True)

    # 2. search
    best = out / "best.txt"
    search_s = None
    if not (args.reuse_search and best.is_file()):
        search_s = _search(args, space, layers, budget_ms, best)
    side = json.loads((out / "best.txt.json").read_text()) if (out / "best.txt.json").is_file() else {}
    searched_blocks = to_search_form(load_structure(str(best.resolve())))

    # 3. train both under the same recipe
    data = out / "data"
    if not (data / "annotations" / "val.json").exists():
        synthesize(data, images=args.images, seed=args.seed, size=args.size)
    runs = [("preset", None, preset_blocks), ("searched", best.resolve(), searched_blocks)]
    rows = []
    for label, structure, blocks in runs:
        rec = _train(f"{preset.name} ({label})", out / label, data, args, structure)
        rows.append((label, structure, blocks, rec))

    # 4. figures, measured side by side in this process
    conv_ms = _measured_ms([r[2] for r in rows], res, args.threads, args.latency_rounds)
    table = []
    for (label, structure, blocks, rec), lat in zip(rows, conv_ms):
        ck = torch.load(out / label / "last.pt", map_location="cpu", weights_only=False)
        model = damoyolo.load_model(out / label / "last.pt")
        params_m, gflops = model_complexity(model, (args.imgsz, args.imgsz))
        table.append({
            "run": label, "structure": str(structure or preset.backbone.structure),
            "score": madnas_score(blocks).total,
            "latency_conv_sum_ms": lat,
            "backbone_forward_ms": _backbone_forward_ms(model, args.imgsz, args.threads,
                                                        args.latency_runs),
            "params_m": params_m, "gflops": gflops,
            "val_AP": rec.get("val_AP"), "val_AP50": rec.get("val_AP50"),
            "train_s": rec["train_s"], "epochs": ck["epoch"] + 1,
        })

    lines = [f"| backbone | MAE score | latency, conv sum (ms) | backbone forward (ms) | "
             f"params (M) | GFLOPs @{args.imgsz} | mAP@[.5:.95] | AP50 | train (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t in table:
        name = preset.backbone.structure if t["run"] == "preset" else "searched (best.txt)"
        lines.append(f"| {name} | {t['score']:.2f} | {t['latency_conv_sum_ms']:.3f} | "
                     f"{t['backbone_forward_ms']:.3f} | {t['params_m']:.3f} | {t['gflops']:.3f} | "
                     f"{(t['val_AP'] if t['val_AP'] is not None else float('nan')):.4f} | "
                     f"{(t['val_AP50'] if t['val_AP50'] is not None else float('nan')):.4f} | "
                     f"{t['train_s']:.0f} |")
    cmd = "python benchmarks/nas_train.py " + " ".join(argv if argv is not None else sys.argv[1:])
    searched_note = ""
    if side:
        top = (side.get("top") or [{}])[0]
        lat = top.get("latency_s")
        searched_note = (f"Search: {side.get('candidates')} candidates, {side.get('accepted')} "
                         f"accepted, {side.get('seconds', 0.0):.1f} s; budgets "
                         f"{side.get('budgets')}; the winner measured "
                         f"{'n/a' if lat is None else f'{lat * 1000:.4f} ms'} in the search.\n")
    text = ("\n".join(lines) + f"\n\n{preset.name}, budget {budget_ms:.4f} ms / {layers} layers "
            f"(measured before the search), {args.epochs} epochs at {args.imgsz}, batch "
            f"{args.batch}, seed {args.seed}, {args.images} synthetic images.\n" + searched_note
            + f"\nSearched backbone (detector form):\n\n```\n{best.read_text().strip()}\n```\n"
            + f"\nCommand: `{cmd.strip()}`\n")
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(
        {"model": preset.name, "budget_ms": budget_ms, "budget_layers": layers,
         "search_wall_s": search_s, "search": side, "runs": table,
         "args": vars(args)}, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
