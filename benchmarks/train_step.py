"""Full training-step time per image on CPU: forward + loss (incl. AlignedOTA assignment) +
backward + SGD step, for damoyolo-t at 640, optionally against the official code.

One random batch (``--batch`` images 640x640 in [0, 255], ``--gts`` random boxes per image,
80 classes) is used for every step.  Ours: ``DAMOYOLO`` in train mode + ``DAMOYOLOCriterion``
+ ``build_optimizer`` (SGD, momentum 0.9, nesterov, wd 5e-4 without decay on norms/biases),
as in ``Trainer.train_one_epoch`` (EMA, logging and the LR schedule are left out).

With ``--official DIR``, the official damoyolo-t detector (built from its config with the
official init) is timed on the same batch and targets (``BoxList`` with a ``labels``
field): ``loss = model(images, targets)['total_loss']``, ``zero_grad``, ``backward``,
``step`` with the optimizer of the official trainer (``Trainer.build_optimizer``: SGD,
one parameter group per parameter).  Our model is loaded with the official model's
initial weights, so both start from identical weights and compute the same losses
(printed as a check).  Steps are interleaved (ours, official, ours, ...); medians reported.

    PYTHONPATH=src python benchmarks/train_step.py [--official ../DAMO-YOLO] \\
        [--batch 8 --steps 5 --threads 1] [--bf16] [--model damoyolo-ns --size 320]

``--model`` / ``--size`` time another preset at another input size (default damoyolo-t at
640); ``--bf16`` adds bfloat16 autocast in both memory formats where the trainer itself runs
float32 (a CPU without AMX or AVX512-BF16), to see what it would give there.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import damoyolo
from damoyolo.engine.optim import build_optimizer
from damoyolo.losses import DAMOYOLOCriterion
from damoyolo.models.heads.zero_head import HeadOutput

MODEL = "damoyolo-t"


def make_batch(batch: int, gts: int, classes: int, size: int = 640, seed: int = 0):
    """images (B, 3, size, size) float in [0, 255]; targets: list of {boxes (N, 4) xyxy, labels (N,)}."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=g) * 255
    targets = []
    for _ in range(batch):
        xy = torch.rand(gts, 2, generator=g) * (size - 120)
        wh = torch.rand(gts, 2, generator=g) * 220 + 8
        boxes = torch.cat([xy, (xy + wh).clamp(max=size)], 1)
        targets.append({"boxes": boxes, "labels": torch.randint(0, classes, (gts,), generator=g)})
    return images, targets


class Ours:
    """Our step as ``Trainer.train_one_epoch`` runs it.  ``channels_last=None`` takes the
    trainer's memory format (:func:`damoyolo.engine.policy.use_channels_last`: NCHW for
    damoyolo-t on a CPU, with the backbone's stem and first stage in channels_last, ``stem``:
    :func:`~damoyolo.engine.policy.use_channels_last_stem`), ``True`` / ``False`` forces
    one; ``amp`` the trainer's autocast (bfloat16 on a CPU with AMX or AVX512-BF16,
    :func:`damoyolo.engine.policy.autocast_dtype`), ``False`` float32 (what a CPU without
    either runs)."""

    def __init__(self, images, targets, init_state: dict | None, classes: int,
                 channels_last: bool | None = None, amp: bool = True,
                 force_dtype: torch.dtype | None = None, model: str = MODEL,
                 stem: bool | None = None) -> None:
        from damoyolo.engine.policy import (STEM_STAGES, autocast_dtype, use_channels_last,
                                            use_channels_last_stem)
        if init_state is not None:
            with tempfile.TemporaryDirectory() as d:
                p = Path(d) / "init.pth"
                torch.save({"model": init_state}, p)
                self.model = damoyolo.load_model(p, model=model)
        else:
            self.model = damoyolo.build_model(model, num_classes=classes)
        self.model.train()
        self.channels_last = use_channels_last(channels_last, torch.device("cpu"), self.model)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)
        # as the trainer: an NCHW model runs its backbone's stem and first stage in
        # channels_last (train.channels_last_stem auto)
        self.channels_last_stem = use_channels_last_stem(stem, torch.device("cpu"), self.model,
                                                         self.channels_last)
        if self.channels_last_stem:
            self.model.backbone.channels_last_stages = STEM_STAGES
        self.dtype = force_dtype or autocast_dtype(amp, torch.device("cpu"), self.model)
        self.criterion = DAMOYOLOCriterion(self.model.head)
        self.opt = build_optimizer(self.model, "sgd", 0.01 / 64 * len(images), 0.9, 5e-4, True)
        self.images, self.targets = images, targets

    def step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=self.dtype, enabled=self.dtype is not None):
            out = self.model(self.images)
        if self.dtype is not None:  # as the trainer: assignment and losses in float32
            out = HeadOutput([c.float() for c in out.cls], [r.float() for r in out.reg])
        t1 = time.perf_counter()
        losses = self.criterion(out, self.targets)
        t2 = time.perf_counter()
        losses["loss"].backward()
        t3 = time.perf_counter()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        self.phases = {"forward (network)": t1 - t0, "loss incl. assignment": t2 - t1,
                       "backward": t3 - t2, "SGD step + zero_grad": t4 - t3}
        return {k: float(v.detach()) for k, v in losses.items()}


class Official:
    def __init__(self, root: str, images, targets, classes: int, model: str = MODEL) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _official import add_official, build_official_model

        r = add_official(root)
        self.model, cfg = build_official_model(r, damoyolo.get_preset(model).official_config, classes)
        from damo.apis.detector_trainer import Trainer
        from damo.structures.bounding_box import BoxList

        self.init_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.train()
        ocfg = dict(cfg.train.optimizer)
        ocfg["lr"] = 0.01 / 64 * len(images)
        self.opt = Trainer.build_optimizer(None, self.model, ocfg)
        h, w = images.shape[-2:]
        self.targets = []
        for t in targets:
            bl = BoxList(t["boxes"].clone(), (w, h), mode="xyxy")
            bl.add_field("labels", t["labels"].clone())
            self.targets.append(bl)
        self.images = images
        # time the head's loss (assignment + targets + QFL/GIoU/DFL) inside the forward
        self._loss, self._loss_s = self.model.head.loss, 0.0
        self.model.head.loss = self._timed_loss

    def _timed_loss(self, *a, **k):
        t0 = time.perf_counter()
        out = self._loss(*a, **k)
        self._loss_s = time.perf_counter() - t0
        return out

    def step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        out = self.model(self.images, self.targets)
        t1 = time.perf_counter()
        self.opt.zero_grad()
        out["total_loss"].backward()
        t2 = time.perf_counter()
        self.opt.step()
        t3 = time.perf_counter()
        self.phases = {"forward (network)": t1 - t0 - self._loss_s,
                       "loss incl. assignment": self._loss_s,
                       "backward": t2 - t1, "SGD step + zero_grad": t3 - t2}
        return {k: float(v.detach()) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", default=None, help="official DAMO-YOLO checkout to time side by side")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--gts", type=int, default=10, help="ground-truth boxes per image")
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per implementation (median)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--bf16", action="store_true",
                    help="on a CPU where the trainer runs float32, also time bfloat16 autocast "
                         "(forced) in both memory formats")
    ap.add_argument("--profile", default=None, metavar="OUT.txt",
                    help="also write a torch.profiler table of one step of each to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, targets = make_batch(args.batch, args.gts, args.classes, size=args.size)
    runners = {}
    init = None
    if args.official:
        off = Official(args.official, images, targets, args.classes, model=args.model)
        init = off.init_state
    ours = functools.partial(Ours, images, targets, init, args.classes, model=args.model)
    runners["ours"] = ours()
    default_cl = runners["ours"].channels_last
    fmt = {True: "channels_last", False: "NCHW"}
    if runners["ours"].dtype is not None:  # the other memory format in bfloat16
        runners[f"ours bf16 {fmt[not default_cl]}"] = ours(channels_last=not default_cl)
    elif args.bf16:  # the trainer runs float32 here: bfloat16 forced, both memory formats
        for cl in (False, True):
            runners[f"ours bf16 {fmt[cl]} (forced)"] = ours(channels_last=cl,
                                                            force_dtype=torch.bfloat16)
    if runners["ours"].channels_last_stem:  # the same step without the channels_last stem
        runners["ours (stem NCHW)"] = ours(stem=False)
    runners["ours fp32 NCHW"] = ours(channels_last=False, amp=False)
    runners["ours fp32 channels_last"] = ours(channels_last=True, amp=False)
    if args.official:
        runners["official"] = off
    # first step (warm-up) from identical weights: losses should agree
    first = {name: r.step() for name, r in runners.items()}
    for name, ls in first.items():
        print(f"# first-step losses {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in ls.items()))
    ts: dict[str, list[float]] = {name: [] for name in runners}
    phases: dict[str, dict[str, list[float]]] = {name: {} for name in runners}
    for _ in range(args.steps):
        for name, r in runners.items():
            t0 = time.perf_counter()
            r.step()
            ts[name].append(time.perf_counter() - t0)
            for k, v in r.phases.items():
                phases[name].setdefault(k, []).append(v)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with open(args.profile, "w") as fh:
            for name, r in runners.items():
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    r.step()
                fh.write(f"==== {name}\n")
                fh.write(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30) + "\n")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.threads} torch thread(s)" + (f", load average at end {load[0]:.2f}" if load else "")
          + f"; {args.model} at {args.size}, batch {args.batch}, {args.gts} GTs/image, {args.classes} classes, "
            f"median of {args.steps} interleaved steps after a warm-up step")
    print()
    dt = runners["ours"].dtype
    stem = ", stem and first stage in channels_last" if runners["ours"].channels_last_stem else ""
    print(f"ours: {'channels_last' if runners['ours'].channels_last else 'NCHW'}{stem}, "
          f"forward autocast {dt if dt is not None else 'off (float32)'}")
    ms = {n: 1e3 * statistics.median(v) / args.batch for n, v in ts.items()}
    ref = "official" if args.official else "ours fp32 NCHW"
    print(f"| implementation | ms / image (train step) | ms / step | vs {ref} |")
    print("|---|---:|---:|---:|")
    for n, v in ms.items():
        print(f"| {n} | {v:.0f} | {v * args.batch:.0f} | {v / ms[ref]:.2f}x |")
    print()
    names = list(runners)
    print("| phase (ms / image, median) | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for k in phases["ours"]:
        print(f"| {k} | " + " | ".join(
            f"{1e3 * statistics.median(phases[n][k]) / args.batch:.1f}" for n in names) + " |")


if __name__ == "__main__":
    main()
