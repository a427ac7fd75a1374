"""Learning parity: the official DAMO-YOLO training loop and ours, same preset, data and schedule.

One command runs one side (``--side official`` or ``--side ours``) with identical settings:
the preset's architecture (official config <-> our preset, e.g. ``damoyolo-ns`` <->
``damoyolo_tinynasL18_Ns``), input size, batch, epochs (hence iterations), warm-up and no-aug
epochs, learning rate per image, EMA (momentum 0.9998, ramp 2000), seed, torch threads and
loader workers.  Both sides' EMA models are scored by OUR evaluator (``damoyolo.eval.evaluate``,
the val split loaded by ``damoyolo.data.load_dataset``, straight resize to ``--imgsz``), so
the mAP figures are comparable.  Each run prints one line::

    RESULT side=official model=damoyolo-ns imgsz=320 batch=16 seed=0 threads=1 workers=0
           iters=... train_s=... s_per_iter=... mAP=... AP50=...

(a single line) and writes ``OUT/summary.json``.  ``train_s`` is the wall-clock of
the training loop only (data loading, forward, loss, backward, step, EMA; not the model /
dataset construction, checkpoint writes or the final evaluation).

Typical use (COCO-format data with ``annotations/{train,val}.json``; two seeds per side)::

    python -m damoyolo data synth runs/parity/synth-320 --images 1000 --size 320 --seed 0
    export OMP_NUM_THREADS=1 PYTHONPATH=<stand-ins>:<pydeps>
    for s in 0 1; do for side in official ours; do
      nice -n 15 python benchmarks/official_train.py --side $side \\
        --official <DAMO-YOLO checkout> --data runs/parity/synth-320 --model damoyolo-ns \\
        --imgsz 320 --batch 16 --epochs 14 --warmup-epochs 1 --no-aug-epochs 3 \\
        --lr-per-img 1.25e-4 --seed $s --threads 1 --out runs/parity/ns320-$side-s$s
    done; done

and for T at 640 the same loop with ``data synth runs/parity/synth-640 --images 500 --size
640``, ``--data runs/parity/synth-640 --model damoyolo-t --imgsz 640 --epochs 10
--no-aug-epochs 2`` and the release learning rate (no ``--lr-per-img``).

(``--lr-per-img`` defaults to the preset's release value, the same as the official
config's: 0.001/64 for the nano models (AdamW), 0.01/64 for T-L (SGD).)

The ours side
-------------
``damoyolo.train(model, data, epochs, batch, imgsz, workers, overrides)`` with
``train.warmup_epochs=W train.no_aug_epochs=N train.base_lr_per_img=X
train.nominal_batch=<batch>`` (no gradient accumulation: one optimizer step per iteration,
as the official loop), ``train.ema_ramp=2000 train.ema_momentum=0.9998`` (the release EMA),
``train.seed=S``, ``train.eval_interval=0`` (no evaluation inside the loop),
``train.tensorboard=False``; everything else is the preset's recipe and the trainer's
defaults (memory format by ``use_channels_last``: on a CPU NCHW for T-L, channels_last for
the nano presets; bfloat16 autocast on CPUs with AMX, the nano presets' depthwise
convolutions kept in float32).
``--set KEY=VALUE`` adds overrides.  ``train_s`` is the sum of the per-epoch ``time_s`` of
the run's history (``OUT/train/last.pt``); the EMA weights of ``last.pt`` are scored.

The official side
-----------------
The official code runs from a checkout OUTSIDE this repository (``--official DIR``; nothing
of it is copied here).  Its ``Trainer.train()`` cannot run on a CPU (``device='cuda'`` is
hard-coded, NCCL process group, ``DistributedDataParallel(device_ids=[rank])``,
``SyncBatchNorm``), so this script builds the run from the official pieces, unchanged, in
the order of ``Trainer.__init__`` and repeats the body of ``Trainer.train`` step by step:

* config: ``parse_config(configs/<official_config>.py)`` (the preset's official config);
* seed: ``damo.apis.detector_trainer.set_seed(seed)`` (torch, numpy, random) before the
  model is built.  Deviation: the official ``Trainer`` has this call commented out, so its
  runs are unseeded; seeding changes nothing else;
* model: ``build_local_model(cfg, 'cpu')`` (official ``init_model``: BN eps 1e-3 / momentum
  0.03, backbone / neck / head ``init_weights``);
* optimizer: ``Trainer.build_optimizer(model, cfg.train.optimizer)`` (one parameter group per
  parameter, no weight decay on norms and biases; AdamW wd 0.01 for nano, SGD momentum 0.9
  nesterov wd 5e-4 for T-L);
* EMA: ``ema_model(model, cfg.train.ema_momentum)`` (momentum ``0.9998 * (1 - exp(-it /
  2000))``, it = the 0-based iteration; BN buffers averaged too);
* data: ``Trainer.get_data_loader(cfg)`` -> ``build_dataset`` (``COCODataset`` +
  ``MosaicWrapper``: mosaic, random affine, mixup) and ``build_dataloader`` (Resize, flip,
  ToTensor, Normalize, ``SA_Aug``; ``DistributedSampler`` + ``IterationBasedBatchSampler``
  over all iterations; ``BatchCollator(32)``), then ``Trainer.setup_iters``;
* schedule: ``cosine_scheduler(base_lr_per_img, batch, min_lr_ratio, total_iters,
  no_aug_iters, warmup_iters, warmup_start_lr)``;
* loop (as ``Trainer.train``): per iteration ``lr = get_lr(cur_iter)`` set on every group,
  ``outputs = model(inps, targets)``, ``loss = outputs['total_loss']``, ``zero_grad``,
  ``backward``, ``step``, ``ema.update(cur_iter, model)``, ``.item()`` of every output, and
  when ``cur_iter + 1 > total_iters - no_aug_iters`` the mosaic switch-off
  ``train_loader.batch_sampler.set_mosaic(False)``;
* after the loop the EMA weights are saved as an official checkpoint
  (``{'model': ema.model.state_dict()}``, what ``Trainer.save_ckpt`` writes) to
  ``OUT/official_ema.pth``, loaded with ``damoyolo.load_model(path, model=<preset>)`` (our
  official-checkpoint converter) and scored by our evaluator; a check prints the largest
  difference between the official model's decoded eval outputs and the converted model's
  on one val batch (expected ~1e-5 px, scores identical).

Values taken from the command line instead of the official config (set on the parsed
config object): ``model.head.num_classes`` and ``dataset.class_names`` (the dataset's, in
increasing category-id order, so both sides use the same labels), ``train.batch_size``,
``train.total_epochs``, ``train.warmup_epochs``, ``train.no_aug_epochs``,
``train.base_lr_per_img``, ``train.augment.transform.image_max_range`` and
``test.augment.transform.image_max_range`` = (imgsz, imgsz),
``train.augment.mosaic_mixup.mosaic_size`` = (imgsz, imgsz) unless ``--mosaic-size``
(the official Ns config leaves it at the base config's 640 while training at 416; ours
builds the mosaic at the input size), ``miscs.num_workers`` = ``--workers``.

Run-time patches and stand-ins (none edits an official file):

1. ``cfg.get_data`` is replaced on the config instance: the official ``DatasetCatalog`` only
   knows COCO under ``./datasets``; the replacement returns the same
   ``{'factory': 'COCODataset', 'args': {root, ann_file}}`` for the ``--data`` train / val
   json and image folder.
2. No ``SyncBatchNorm`` conversion: at world size 1 it is BatchNorm, and on a CPU with an
   initialised process group ``SyncBatchNorm.forward`` raises ValueError (GPU only).
3. No DDP by default: the model is called directly and ``ema_model.update`` (which reads
   ``student.module``) gets a ``.module`` shim; one-process DDP computes the same gradients.
   ``--ddp`` wraps the model in CPU ``DistributedDataParallel`` (gloo, no ``device_ids``,
   ``broadcast_buffers=False, find_unused_parameters=True`` as ``build_ddp_model``).
4. A one-process gloo group (``_official.ensure_single_process_group``): the official
   ``DistributedSampler`` calls ``dist.get_world_size()`` / ``get_rank()``.
5. Left out of ``Trainer``: ``get_model_info`` (thop profile and latency, logging only), the
   loguru file logger / ``MeterBuffer`` (a short progress line every ``--log-every``
   iterations instead), the periodic checkpoints and evaluations (``eval_interval_epochs``;
   one final evaluation with our evaluator instead of the official ``inference``, which
   needs torchvision NMS and pycocotools ``COCOeval``), ``synchronize()`` (a no-op at world
   size 1).
6. ``torchvision`` is not installed (and a torch-matching build is multi-GB): a stand-in
   package (our code, outside the repo, ``<stand-ins>/torchvision``) emulates the
   calls the official pipeline makes, as torchvision does them: ``CocoDetection`` (pycocotools
   ``COCO``, PIL ``Image.open(...).convert('RGB')``), ``transforms.functional.normalize``,
   ``to_pil_image`` / ``affine`` (PIL ``Image.transform`` with torchvision's inverse affine
   matrix, bilinear, fill) / ``to_tensor`` (SADA rotate / shear), ``ops.batched_nms``
   (imported by ``damo.utils.boxes``, unused in training).  ``pycocotools``, ``loguru``,
   ``easydict`` and ``tabulate`` are the real packages (``pip install --no-deps --target
   <pydeps> pycocotools==2.0.11 loguru==0.7.3 easydict==1.13 tabulate==0.9.0``).
   Both directories go on ``PYTHONPATH``.

Diagnostics (to tell one part of the loop from the rest)
--------------------------------------------------------
* ``--side ours --init official``: ours starts from the official model's initial weights
  (built as the official side builds them, seeded the same; saved to
  ``OUT/official_init.pth`` and loaded as ``--weights``);
* ``--side ours --weights W``: ours starts from the checkpoint ``W`` (ours or official);
* ``--side official --pipeline ours``: the official loop is fed by our training pipeline
  (``DetectionDataset`` with the preset's augmentation, ``EpochSampler`` per epoch, SADA's
  progress and the no-aug switch at the epoch boundary as our trainer sets them), the targets
  converted to ``BoxList``.

Behaviour of the official loop reproduced as it is (differences from ours to keep in mind
when reading the results): the sampler's shuffle is seeded by the iteration count, not the
seed (both seeds see the same image order); mosaic / mixup are switched off after the first
iteration of the no-aug tail (ours: at the epoch boundary); SADA (and flip) stay on during the
no-aug tail, and SA_Aug's probability ramp runs over all epochs (``no_aug_epochs`` is not
passed to ``build_dataloader``); with workers its iteration estimate is
``samples // batch * workers``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", choices=("official", "ours"), required=True)
    p.add_argument("--official", default=None, help="official DAMO-YOLO checkout (official side)")
    p.add_argument("--data", required=True, help="COCO-format dataset with train and val splits")
    p.add_argument("--model", default="damoyolo-ns", help="our preset (its official config)")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--no-aug-epochs", type=int, default=1)
    p.add_argument("--lr-per-img", type=float, default=None,
                   help="base lr per image (default: the preset's release value)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch (and OpenCV) threads")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--eval-batch", type=int, default=0, help="evaluation batch (0: --batch)")
    p.add_argument("--mosaic-size", type=int, default=0,
                   help="official side: mosaic canvas size (0: --imgsz, as ours)")
    p.add_argument("--ddp", action="store_true",
                   help="official side: wrap the model in CPU DDP (gloo) as Trainer.train does")
    p.add_argument("--init", choices=("ours", "official"), default="ours",
                   help="ours side: start from our initialisation, or from the official "
                        "model's initial weights (built as the official side builds them, same "
                        "seed; a diagnostic for the initialisation)")
    p.add_argument("--weights", default=None,
                   help="ours side: start from this checkpoint (ours or official format)")
    p.add_argument("--pipeline", choices=("official", "ours"), default="official",
                   help="official side: the training data pipeline (ours: our DetectionDataset "
                        "and loader with the preset's augmentation, targets as BoxList; a "
                        "diagnostic that tells the pipeline apart from the rest of the loop)")
    p.add_argument("--log-every", type=int, default=50, help="official side: progress line period")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="ours side: extra config overrides")
    p.add_argument("--out", default=None, help="output folder (default runs/parity/...)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- shared

def coco_index(data: str):
    from damoyolo.data import load_dataset
    train_idx = load_dataset(data, split="train")
    val_idx = load_dataset(data, split="val")
    return train_idx, val_idx


def score(net, val_idx, category_ids, imgsz: int, batch: int, seed: int) -> dict:
    """mAP of ``net`` on the val split, exactly as our trainer evaluates (workers 0)."""
    from damoyolo.data import DetectionDataset, build_loader
    from damoyolo.eval import Predictor, evaluate
    ds = DetectionDataset(val_idx, input_size=(imgsz, imgsz), train=False, aug=None, seed=seed)
    loader = build_loader(ds, batch_size=batch, workers=0, shuffle=False, seed=seed)
    res = evaluate(Predictor.from_model(net, device="cpu"), loader, val_idx.to_coco_dict(),
                   category_ids)
    return res.metrics


def report(args, out: Path, iters: int, train_s: float, iter_times: list[float],
           metrics: dict, extra: dict) -> None:
    s_per_iter = train_s / max(iters, 1)
    summary = {"side": args.side, "model": args.model, "imgsz": args.imgsz,
               "batch": args.batch, "epochs": args.epochs,
               "warmup_epochs": args.warmup_epochs, "no_aug_epochs": args.no_aug_epochs,
               "lr_per_img": args.lr_per_img, "seed": args.seed, "threads": args.threads,
               "workers": args.workers, "iters": iters, "train_s": train_s,
               "s_per_iter": s_per_iter,
               "median_iter_s": statistics.median(iter_times) if iter_times else None,
               "mAP": metrics.get("AP"), "AP50": metrics.get("AP50"), "metrics": metrics,
               **extra}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"RESULT side={args.side} model={args.model} imgsz={args.imgsz} batch={args.batch} "
          f"seed={args.seed} threads={args.threads} workers={args.workers} iters={iters} "
          f"train_s={train_s:.1f} s_per_iter={s_per_iter:.3f} "
          f"mAP={metrics.get('AP', float('nan')):.4f} "
          f"AP50={metrics.get('AP50', float('nan')):.4f}", flush=True)


# ---------------------------------------------------------------------------- ours

def run_ours(args, out: Path) -> None:
    import torch

    import damoyolo
    from damoyolo.checkpoint import read_checkpoint
    from damoyolo.workflows.train import train

    train_idx, val_idx = coco_index(args.data)
    overrides = [
        f"train.warmup_epochs={args.warmup_epochs}",
        f"train.no_aug_epochs={args.no_aug_epochs}",
        f"train.base_lr_per_img={args.lr_per_img!r}",
        f"train.nominal_batch={args.batch}",
        "train.ema_ramp=2000.0",
        "train.ema_momentum=0.9998",
        f"train.seed={args.seed}",
        "train.eval_interval=0",
        "train.tensorboard=False",
        *args.set,
    ]
    print("ours overrides: " + " ".join(overrides), flush=True)
    weights = args.weights
    if args.init == "official":
        weights = _official_init(args, train_idx, out)
        print(f"ours: starting from the official initial weights ({weights})", flush=True)
    t0 = time.time()
    train(model=args.model, data=args.data, epochs=args.epochs, batch=args.batch,
          imgsz=args.imgsz, workers=args.workers, overrides=overrides, weights=weights,
          output=out / "train", progress=False, exist_ok=True)
    total_s = time.time() - t0
    ck = read_checkpoint(out / "train" / "last.pt")
    hist = ck["history"]
    iters = int(ck["iteration"])
    ipe = iters // max(len(hist), 1)
    train_s = float(sum(h["time_s"] for h in hist))
    iter_times = [h["time_s"] / ipe for h in hist]
    for h in hist:
        print(f"  epoch {h['epoch']}: {h['time_s']:.1f}s loss {h.get('loss', float('nan')):.3f} "
              f"lr {h.get('lr', float('nan')):.3e}", flush=True)
    net = damoyolo.load_model(out / "train" / "last.pt")  # the EMA weights
    torch.set_num_threads(args.threads)
    metrics = score(net, val_idx, train_idx.category_ids, args.imgsz,
                    args.eval_batch or args.batch, args.seed)
    report(args, out, iters, train_s, iter_times, metrics,
           {"api_train_s": total_s, "overrides": overrides})


# ---------------------------------------------------------------------------- official

def _official_init(args, train_idx, out: Path) -> Path:
    """The official model's initial weights for ``--data``'s classes, seeded as the official
    side seeds them, saved as an official checkpoint."""
    if not args.official:
        raise SystemExit("--init official needs --official DIR (a DAMO-YOLO checkout)")
    sys.path.insert(0, str(HERE))
    from _official import add_official, build_official_model

    import torch

    from damoyolo.presets import get_preset

    root = add_official(args.official)
    from damo.apis.detector_trainer import set_seed

    set_seed(args.seed)
    model, _ = build_official_model(root, get_preset(args.model).official_config,
                                    len(train_idx.class_names))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "official_init.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


class _Module:
    """What ``ema_model.update`` reads from the DDP-wrapped model: ``.module``."""

    def __init__(self, module):
        self.module = module


def _image_root(index) -> str:
    """The image folder our reader resolved for a COCO json (``records[i].path`` ends with
    the json's ``file_name``)."""
    data = json.loads(Path(index.source).read_text())
    names = {im["id"]: im["file_name"] for im in data["images"]}
    rec = index.records[0]
    fname = names[rec.image_id]
    path = Path(rec.path).as_posix()
    if not path.endswith(fname):
        raise SystemExit(f"cannot tell the image folder of {index.source}")
    return path[: len(path) - len(fname)].rstrip("/") or "."


def conversion_check(official_net, net_ours, val_idx, imgsz: int) -> tuple[float, float]:
    """Largest differences between the official model's decoded eval outputs (``head.nms``
    off) and our converted model's ``decode`` on the first val images."""
    import torch

    from damoyolo.data import DetectionDataset, build_loader
    ds = DetectionDataset(val_idx, input_size=(imgsz, imgsz), train=False, aug=None)
    images, _ = next(iter(build_loader(ds, batch_size=min(4, len(ds)), workers=0)))
    was_training, nms = official_net.training, official_net.head.nms
    official_net.eval()
    official_net.head.nms = False
    try:
        with torch.no_grad():
            s1, b1 = official_net(images)
            s2, b2 = net_ours.decode(net_ours(images))
    finally:
        official_net.head.nms = nms
        official_net.train(was_training)
    return float((s1 - s2).abs().max()), float((b1 - b2).abs().max())


def _our_batches(args, train_idx, ipe: int, total_iters: int, no_aug_iters: int):
    """Our training pipeline as the trainer runs it (per-epoch sampler and SADA progress,
    strong augmentation off for the no-aug epochs), batches in the official loop's format."""
    from damo.structures.bounding_box import BoxList
    from damo.structures.image_list import to_image_list

    from damoyolo.data import DetectionDataset, build_loader
    from damoyolo.data.dataset import EpochSampler
    from damoyolo.engine.api import experiment_config_for
    from damoyolo.engine.trainer import sada_progress

    exp = experiment_config_for(args.model)
    size = (args.imgsz, args.imgsz)
    ds = DetectionDataset(train_idx, input_size=size, train=True, aug=exp.aug, seed=args.seed)
    sampler = EpochSampler(len(ds), args.seed)
    epochs = -(-total_iters // ipe)
    no_aug_from = epochs - -(-no_aug_iters // ipe)
    ds.set_strong_augment(True)
    for epoch in range(epochs):
        if epoch == no_aug_from:
            ds.set_strong_augment(False)
            print(f"  epoch {epoch + 1}: our pipeline, strong augmentation off", flush=True)
        elif epoch < no_aug_from:
            ds.set_progress(sada_progress(epoch, no_aug_from))
        sampler.set_epoch(epoch)
        loader = build_loader(ds, args.batch, args.workers, shuffle=False, seed=args.seed,
                              sampler=sampler)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        for images, targets in loader:
            h, w = images.shape[-2:]
            boxes = []
            for t in targets:
                bl = BoxList(t["boxes"].float(), (w, h), mode="xyxy")
                bl.add_field("labels", t["labels"].long())
                boxes.append(bl)
            yield to_image_list(images), boxes, None


def run_official(args, out: Path) -> None:
    if not args.official:
        raise SystemExit("--side official needs --official DIR (a DAMO-YOLO checkout)")
    sys.path.insert(0, str(HERE))
    from _official import add_official, ensure_single_process_group, official_config

    import torch

    from damoyolo.presets import get_preset

    train_idx, val_idx = coco_index(args.data)
    if train_idx.format != "coco" or val_idx.format != "coco":
        raise SystemExit("--side official needs a COCO-format dataset (json annotations)")
    preset = get_preset(args.model)
    root = add_official(args.official)
    ensure_single_process_group()

    import torch.nn as nn
    from damo.apis.detector_trainer import (Trainer, cosine_scheduler, ema_model, set_seed)
    from damo.detectors.detector import build_local_model

    cfg = official_config(root, preset.official_config)
    if abs(cfg.train.base_lr_per_img - preset.train.base_lr_per_img) > 1e-12:
        print(f"note: official base_lr_per_img {cfg.train.base_lr_per_img} differs from the "
              f"preset's {preset.train.base_lr_per_img}", flush=True)
    names = list(train_idx.class_names)
    cfg.model.head.num_classes = len(names)
    cfg.dataset.class_names = names
    cfg.train.batch_size = args.batch
    cfg.train.total_epochs = args.epochs
    cfg.train.warmup_epochs = args.warmup_epochs
    cfg.train.no_aug_epochs = args.no_aug_epochs
    cfg.train.base_lr_per_img = args.lr_per_img
    size = (args.imgsz, args.imgsz)
    cfg.train.augment.transform.image_max_range = size
    cfg.test.augment.transform.image_max_range = size
    mosaic = args.mosaic_size or args.imgsz
    cfg.train.augment.mosaic_mixup.mosaic_size = (mosaic, mosaic)
    cfg.miscs.num_workers = args.workers
    cfg.miscs.output_dir = str(out)
    cfg.miscs.seed = args.seed
    cfg.dataset.train_ann = ("parity_train",)
    cfg.dataset.val_ann = ("parity_val",)
    splits = {"parity_train": train_idx, "parity_val": val_idx}

    def get_data(name):  # patch 1: the --data splits instead of DatasetCatalog's COCO paths
        idx = splits[name]
        return dict(factory="COCODataset",
                    args=dict(root=_image_root(idx), ann_file=str(Path(idx.source).resolve())))

    cfg.get_data = get_data

    # --- Trainer.__init__, in its order (device 'cpu'; no SyncBatchNorm: patch 2)
    set_seed(args.seed)
    model = build_local_model(cfg, "cpu")
    optimizer = Trainer.build_optimizer(None, model, dict(cfg.train.optimizer))
    ema = ema_model(model, cfg.train.ema_momentum) if cfg.train.ema else None
    state = argparse.Namespace(start_epoch=0)
    train_loader, _val_loaders, ipe = Trainer.get_data_loader(state, cfg)
    Trainer.setup_iters(state, ipe, 0, cfg.train.total_epochs, cfg.train.warmup_epochs,
                        cfg.train.no_aug_epochs, cfg.miscs.eval_interval_epochs,
                        cfg.miscs.ckpt_interval_epochs, cfg.miscs.print_interval_iters)
    lr_scheduler = cosine_scheduler(cfg.train.base_lr_per_img, cfg.train.batch_size,
                                    cfg.train.min_lr_ratio, state.total_iters,
                                    state.no_aug_iters, state.warmup_iters,
                                    cfg.train.warmup_start_lr)
    mosaic_mixup = "mosaic_mixup" in cfg.train.augment
    if state.warmup_iters != round(state.warmup_iters):
        print(f"note: warm-up {state.warmup_iters} iterations is not whole (ours rounds it)")
    print(f"official {preset.official_config}: {len(names)} classes, {ipe} iterations/epoch, "
          f"{state.total_iters} iterations, warm-up {state.warmup_iters}, no-aug "
          f"{state.no_aug_iters}, base lr {lr_scheduler.base_lr:.3g} "
          f"({type(optimizer).__name__}), mosaic {mosaic}, EMA "
          f"{cfg.train.ema_momentum if ema else 'off'}, workers {args.workers}", flush=True)

    # --- Trainer.train (patch 3: no DDP unless --ddp)
    if args.ddp:
        net = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False,
                                                  find_unused_parameters=True)
        student = net
    else:
        net, student = model, _Module(model)
    net.train()
    device = "cpu"
    iter_times: list[float] = []
    first_loss = last_loss = None
    t_start = time.time()
    iter_end = t_start
    cur_iter = -1
    batches = (train_loader if args.pipeline == "official" else
               _our_batches(args, train_idx, ipe, state.total_iters, state.no_aug_iters))
    for data_iter, (inps, targets, ids) in enumerate(batches):
        cur_iter = state.start_iter + data_iter
        lr = lr_scheduler.get_lr(cur_iter)
        for group in optimizer.param_groups:
            group["lr"] = lr
        inps = inps.to(device)
        targets = [t.to(device) for t in targets]
        outputs = net(inps, targets)
        loss = outputs["total_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update(cur_iter, student)
        outputs_array = {k: v.item() for k, v in outputs.items()}
        now = time.time()
        iter_times.append(now - iter_end)
        iter_end = now
        if first_loss is None:
            first_loss = outputs_array["total_loss"]
        last_loss = outputs_array["total_loss"]
        if cur_iter + 1 > state.total_iters - state.no_aug_iters and mosaic_mixup \
                and args.pipeline == "official":
            print(f"  iter {cur_iter + 1}: turn OFF mosaic aug", flush=True)
            train_loader.batch_sampler.set_mosaic(False)
            mosaic_mixup = False
        if (cur_iter + 1) % args.log_every == 0 or cur_iter == 0 \
                or cur_iter + 1 == state.total_iters:
            losses = ", ".join(f"{k} {v:.3f}" for k, v in outputs_array.items())
            print(f"  iter {cur_iter + 1}/{state.total_iters}: {losses}, lr {lr:.3e}, "
                  f"{iter_times[-1]:.2f}s, size {tuple(inps.tensors.shape[2:])}", flush=True)
    train_s = time.time() - t_start
    iters = cur_iter + 1

    ck = out / "official_ema.pth"
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": (ema.model if ema is not None else model).state_dict()}, ck)
    import damoyolo
    net_ours = damoyolo.load_model(ck, model=args.model, class_names=names)
    d_score, d_box = conversion_check(ema.model if ema is not None else model, net_ours,
                                      val_idx, args.imgsz)
    print(f"conversion check (official eval outputs vs our converted model, one val batch): "
          f"max |d score| {d_score:.2e}, max |d box| {d_box:.2e} px", flush=True)
    metrics = score(net_ours, val_idx, train_idx.category_ids, args.imgsz,
                    args.eval_batch or args.batch, args.seed)
    report(args, out, iters, train_s, iter_times, metrics,
           {"official_config": preset.official_config, "mosaic_size": mosaic,
            "ddp": bool(args.ddp), "optimizer": type(optimizer).__name__,
            "first_loss": first_loss, "last_loss": last_loss})


def main(argv=None) -> int:
    args = parse_args(argv)
    # threads before torch is imported (OpenMP reads the variable once)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(args.threads))
    import cv2
    import torch

    from damoyolo.presets import get_preset

    torch.set_num_threads(args.threads)
    if args.side == "ours":
        cv2.setNumThreads(args.threads)  # the official COCODataset sets cv2.setNumThreads(0)
    if args.lr_per_img is None:
        args.lr_per_img = get_preset(args.model).train.base_lr_per_img
    if args.epochs <= args.no_aug_epochs:
        print("warning: --no-aug-epochs >= --epochs: no strong-augmentation phase", flush=True)
    out = Path(args.out or f"runs/parity/{args.model}-{args.imgsz}-{args.side}-s{args.seed}")
    if args.side == "ours":
        run_ours(args, out)
    else:
        run_official(args, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
