"""What runs around the training loop: evaluation, the epoch log, the best model, the
checkpoints and the plots, as small objects with explicit state.

The protocol (:class:`Callback`; subclass it and override the hooks you need).  The trainer
calls each hook on every rank, for each callback in the order of ``trainer.callbacks``:

``on_fit_start(trainer)``
    once, when :meth:`~damoyolo.engine.trainer.Trainer.fit` starts its epochs (the run
    folder exists and is locked on rank 0).
``on_epoch_end(trainer, epoch, record)``
    after each epoch.  ``epoch`` counts from 0; ``record`` is the epoch's record (``epoch``
    counted from 1, the mean losses, ``lr``, ``time_s``), already the last entry of
    ``trainer.history``: a callback may add to it, and the later ones see what it added.
    The ranks meet at a barrier after the last callback.
``on_fit_end(trainer, completed)``
    once after the epochs, also when one raised (``completed`` is then ``False``): release
    what ``on_fit_start`` took, report what the run did.

A callback decides itself on which ranks it acts (:mod:`damoyolo.runtime.dist`), and keeps
its own state as attributes; what it reads of the trainer is the run's state (``cfg``,
``model``, ``history``, ``best_map``, ``out_dir``, ``progress``, ...).  The trainer's
default list, in this order: :class:`Evaluate`, :class:`Log`, :class:`BestModel`,
:class:`Checkpoint`, :class:`Plots`.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import atomic_save
from ..outputs import atomic_output
from ..runtime import dist as du
from .rng import rng_state

__all__ = ["Callback", "Evaluate", "Log", "BestModel", "Checkpoint", "Plots",
           "default_callbacks", "open_tensorboard"]


class Callback:
    """A hook set for the training loop; every hook does nothing unless overridden."""

    def on_fit_start(self, trainer) -> None:
        pass

    def on_epoch_end(self, trainer, epoch: int, record: dict[str, Any]) -> None:
        pass

    def on_fit_end(self, trainer, completed: bool) -> None:
        pass


class Evaluate(Callback):
    """COCO mAP of the evaluated model (the EMA's when there is one) on ``val_set`` every
    ``train.eval_interval`` epochs and after the last (0: never), on rank 0; adds ``val_*``
    and ``eval_s`` to the record.  With ``bn_set`` (the training images without
    augmentation) and ``precise_bn`` > 0 in the trainer's schedule, the model's BatchNorm
    statistics are recomputed first (:mod:`damoyolo.engine.bn`).

    State: ``last_results``, the COCO results of the latest evaluation (for the PR curves).
    """

    def __init__(self, val_set=None, val_gt: dict | None = None,
                 category_ids: list[int] | None = None, bn_set=None):
        self.val_set, self.val_gt, self.category_ids = val_set, val_gt, category_ids
        self.bn_set = bn_set
        self.last_results: list[dict] | None = None

    def on_epoch_end(self, trainer, epoch: int, record: dict[str, Any]) -> None:
        every, last = trainer.cfg.eval_interval, epoch + 1 == trainer.cfg.epochs
        if every <= 0 or not ((epoch + 1) % every == 0 or last):
            return
        t1 = time.time()
        metrics = self.evaluate(trainer)
        if metrics is not None:
            record.update({f"val_{k}": v for k, v in metrics.items()})
            record["eval_s"] = time.time() - t1

    def evaluate(self, trainer) -> dict[str, float] | None:
        """The metrics of the trainer's evaluated model now; ``None`` without validation data
        and on the ranks other than 0."""
        if self.val_set is None or self.val_gt is None or not du.is_main():
            return None
        from ..eval import Predictor, evaluate
        if self.bn_set is not None and trainer.plan.precise_bn > 0:
            self.precise_bn(trainer)
        loader = trainer.loader_fn(self.val_set,
                                   batch_size=max(1, trainer.cfg.batch_size // trainer.world),
                                   workers=trainer.workers, shuffle=False, seed=trainer.cfg.seed)
        res = evaluate(Predictor.from_model(trainer.eval_model(), device=trainer.device), loader,
                       self.val_gt, self.category_ids)
        self.last_results = res.results
        return res.metrics

    def precise_bn(self, trainer) -> None:
        """Recompute the evaluated model's BatchNorm statistics on a fixed, seeded subset of
        the training images (no augmentation)."""
        from torch.utils.data import Subset

        from .bn import recompute_bn_stats
        cfg = trainer.cfg
        n = min(trainer.plan.precise_bn, len(self.bn_set))
        pick = np.random.default_rng((cfg.seed, 1)).permutation(len(self.bn_set))[:n]
        loader = trainer.loader_fn(Subset(self.bn_set, pick.tolist()),
                                   batch_size=max(1, cfg.batch_size // trainer.world),
                                   workers=trainer.workers, shuffle=False, seed=cfg.seed)
        recompute_bn_stats(trainer.eval_model(), loader, n, trainer.device,
                           trainer.channels_last)


def open_tensorboard(enabled: bool, folder: Path):
    """A TensorBoard writer into ``folder / "tensorboard"`` on rank 0 when ``enabled``
    (``train.tensorboard``); ``None`` otherwise, and with a warning when it cannot start."""
    if not (enabled and du.is_main()):
        return None
    try:  # the tensorboard package is optional
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter(str(folder / "tensorboard"))
    except Exception as e:
        print(f"warning: train.tensorboard is set but TensorBoard did not start "
              f"({type(e).__name__}: {e}); training goes on without it "
              f"(pip install tensorboard)", flush=True)
        return None


class Log(Callback):
    """Each record, on rank 0: a row of ``results.csv`` (rewritten whole; rows of later epochs
    left by a killed run are dropped, the header covers every row's columns), its numbers
    in TensorBoard (``train.tensorboard``) and a console line (with progress).

    State: ``writer``, the TensorBoard writer open between the start and the end of a fit.
    """

    def __init__(self):
        self.writer = None

    def on_fit_start(self, trainer) -> None:
        self.writer = open_tensorboard(trainer.cfg.tensorboard, trainer.out_dir)

    def on_fit_end(self, trainer, completed: bool) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def on_epoch_end(self, trainer, epoch: int, record: dict[str, Any]) -> None:
        if not du.is_main():
            return
        path = trainer.out_dir / "results.csv"
        keys = list(record)
        rows = []
        if path.exists():
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < record["epoch"]]
            for r in rows:
                keys += [k for k in r if k not in keys]
        rows.append(record)
        with atomic_output(path) as tmp, tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        if self.writer is not None:
            for k, v in record.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, record["epoch"])
        if not trainer.progress:
            return
        msg = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in record.items())
        print(msg, flush=True)


class BestModel(Callback):
    """Tracks the best ``val_AP`` (``trainer.best_map``, kept in the checkpoints), on rank 0.

    State: ``improved``, whether the latest epoch's ``val_AP`` beat the best before it.
    """

    def __init__(self):
        self.improved = False

    def on_epoch_end(self, trainer, epoch: int, record: dict[str, Any]) -> None:
        self.improved = (du.is_main() and "val_AP" in record
                         and record["val_AP"] > trainer.best_map)
        if self.improved:
            trainer.best_map = record["val_AP"]


class Checkpoint(Callback):
    """``last.pt`` after each epoch (:meth:`~damoyolo.engine.trainer.Trainer.state`, written
    atomically by rank 0), and ``best.pt`` when ``best`` says the epoch improved.  Under a
    process group every rank's random streams go in too (``rng_ranks``), so that a resumed
    multi-process run continues exactly."""

    def __init__(self, best: BestModel | None = None):
        self.best = best

    def on_epoch_end(self, trainer, epoch: int, record: dict[str, Any]) -> None:
        rngs = du.gather_objects(rng_state()) if du.is_distributed() else None
        if not du.is_main():
            return
        st = trainer.state(epoch)
        if rngs is not None:
            st["rng_ranks"] = rngs
        atomic_save(st, trainer.out_dir / "last.pt")
        if self.best is not None and self.best.improved:
            atomic_save(st, trainer.out_dir / "best.pt")


class Plots(Callback):
    """After a completed fit, on rank 0: ``results.png`` (losses, lr, mAP per epoch) and,
    after an evaluation by ``evaluation``, ``pr_curves.png`` (per-class precision-recall at
    IoU 0.5) in the run folder."""

    def __init__(self, evaluation: Evaluate | None = None):
        self.evaluation = evaluation

    def on_fit_end(self, trainer, completed: bool) -> None:
        if completed and du.is_main() and trainer.history:
            self.draw(trainer)

    def draw(self, trainer) -> list[Path]:
        ev = self.evaluation
        try:
            from .plots import plot_history, plot_pr_curves
            paths = [plot_history(trainer.history, trainer.out_dir / "results.png")]
            if ev is not None and ev.last_results is not None and ev.val_gt is not None:
                paths.append(plot_pr_curves(ev.val_gt, ev.last_results,
                                            trainer.model.class_names or [],
                                            trainer.out_dir / "pr_curves.png", ev.category_ids))
        except ImportError as e:
            if trainer.progress:
                print(f"plots skipped ({e}); pip install 'damoyolo[train]' to get them")
            return []
        if trainer.progress:
            print("plots: " + ", ".join(str(p) for p in paths), flush=True)
        return paths


def default_callbacks(val_set=None, val_gt: dict | None = None,
                      category_ids: list[int] | None = None, bn_set=None) -> list[Callback]:
    """The trainer's callbacks, in order: evaluate, log, best model, checkpoint, plots."""
    evaluation, best = Evaluate(val_set, val_gt, category_ids, bn_set), BestModel()
    return [evaluation, Log(), best, Checkpoint(best), Plots(evaluation)]
