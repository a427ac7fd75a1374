"""The callback protocol: on_fit_start, on_epoch_end(trainer, epoch, record) and
on_fit_end(trainer, completed), called in the order of ``trainer.callbacks``."""

from __future__ import annotations

import pytest
import torch

from damoyolo.engine import Trainer
from damoyolo.engine.callbacks import (BestModel, Callback, Checkpoint, Evaluate, Log, Plots,
                                       default_callbacks)
from engine_standin import RectDataset, build_loader, tiny_cfg, tiny_model

torch.set_num_threads(1)


class Recorder(Callback):
    def __init__(self, calls: list, name: str):
        self.calls, self.name = calls, name

    def on_fit_start(self, trainer):
        self.calls.append((self.name, "start", trainer.start_epoch))

    def on_epoch_end(self, trainer, epoch, record):
        assert record is trainer.history[-1] and record["epoch"] == epoch + 1
        self.calls.append((self.name, "epoch", epoch, sorted(record)))
        record[f"seen_by_{self.name}"] = 1.0  # the later callbacks see it

    def on_fit_end(self, trainer, completed):
        self.calls.append((self.name, "end", completed))


def test_default_callbacks_in_order():
    cbs = default_callbacks()
    assert [type(c) for c in cbs] == [Evaluate, Log, BestModel, Checkpoint, Plots]
    assert cbs[3].best is cbs[2] and cbs[4].evaluation is cbs[0]


def test_hooks_run_in_order_and_records_are_shared(tmp_path):
    calls: list = []
    tr = Trainer(tiny_model(), RectDataset(4, seed=1), tiny_cfg(tmp_path, epochs=2),
                 loader_fn=build_loader, progress=False)
    tr.callbacks += [Recorder(calls, "a"), Recorder(calls, "b")]
    tr.fit()
    assert [c[:3] for c in calls] == [("a", "start", 0), ("b", "start", 0),
                                      ("a", "epoch", 0), ("b", "epoch", 0),
                                      ("a", "epoch", 1), ("b", "epoch", 1),
                                      ("a", "end", True), ("b", "end", True)]
    a0, b0 = calls[2][3], calls[3][3]
    assert "seen_by_a" not in a0 and "seen_by_a" in b0
    assert (tmp_path / "last.pt").exists() and (tmp_path / "results.png").exists()
    assert {"seen_by_a", "seen_by_b"} <= set(tr.history[0])  # the record the trainer keeps


def test_fit_end_says_whether_the_epochs_completed(tmp_path):
    calls: list = []
    tr = Trainer(tiny_model(), RectDataset(4, seed=1), tiny_cfg(tmp_path, epochs=2),
                 loader_fn=build_loader, progress=False)
    tr.callbacks.append(Recorder(calls, "a"))

    def boom(epoch, loader):
        raise RuntimeError("boom")
    tr.train_one_epoch = boom
    with pytest.raises(RuntimeError, match="boom"):
        tr.fit()
    assert calls == [("a", "start", 0), ("a", "end", False)]
    assert not (tmp_path / "results.png").exists()  # no plots after a failed fit
