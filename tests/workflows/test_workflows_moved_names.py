"""Names that moved up to ``damoyolo.workflows`` stay importable from their old modules for
one release, with a DeprecationWarning naming the new path, and are the same objects."""

from __future__ import annotations

import importlib

import pytest

MOVED = [
    ("damoyolo.export", "export_int8", "damoyolo.workflows.int8"),
    ("damoyolo.export", "Int8Result", "damoyolo.workflows.int8"),
    ("damoyolo.export.quantize", "export_int8", "damoyolo.workflows.int8"),
    ("damoyolo.export.quantize", "Int8Result", "damoyolo.workflows.int8"),
    ("damoyolo.export.quantize", "write_sensitivity_chart", "damoyolo.workflows.int8"),
    ("damoyolo.infer.benchmark", "open_bench_detector", "damoyolo.workflows.bench"),
    ("damoyolo.eval", "open_predictor", "damoyolo.workflows.evaluate"),
    ("damoyolo.eval.predictor", "open_predictor", "damoyolo.workflows.evaluate"),
    ("damoyolo.engine", "train", "damoyolo.workflows.train"),
    ("damoyolo.engine", "load_for_finetune", "damoyolo.workflows.train"),
    ("damoyolo.engine.api", "train", "damoyolo.workflows.train"),
    ("damoyolo.engine.api", "load_for_finetune", "damoyolo.workflows.train"),
]


@pytest.mark.parametrize("old, name, new", MOVED)
def test_old_path_warns_and_gives_the_new_object(old, name, new):
    with pytest.warns(DeprecationWarning, match=f"{new}.{name}"):
        got = getattr(importlib.import_module(old), name)
    assert got is getattr(importlib.import_module(new), name)


def test_from_import_of_a_moved_name():
    with pytest.warns(DeprecationWarning, match="damoyolo.workflows.int8.export_int8"):
        from damoyolo.export import export_int8
    from damoyolo.workflows.int8 import export_int8 as new
    assert export_int8 is new


def test_unknown_names_still_raise():
    import damoyolo.eval
    import damoyolo.export
    import damoyolo.infer.benchmark
    for mod in (damoyolo.export, damoyolo.eval, damoyolo.infer.benchmark):
        with pytest.raises(AttributeError):
            mod.no_such_name  # noqa: B018
    from damoyolo.export import quantize  # a submodule still imports through the package
    assert quantize.__name__ == "damoyolo.export.quantize"


def test_predictor_from_detector_moved():
    import torch

    from damoyolo.eval import Predictor
    from damoyolo.workflows.evaluate import predictor_from_detector

    class Backend:
        device = torch.device("cpu")
        meta = {"category_ids": [3, 7]}

    class Det:
        backend = Backend()
        class_names = ["a", "b"]
        input_size = (32, 48)

        def forward(self, x):
            return x

        def postprocess(self, out):
            return []

    new = predictor_from_detector(Det())
    with pytest.warns(DeprecationWarning, match="predictor_from_detector"):
        old = Predictor.from_detector(Det())
    for p in (new, old):
        assert isinstance(p, Predictor)
        assert p.category_ids == [3, 7] and p.class_names == ["a", "b"]
        assert p.input_size == (32, 48) and p.device == torch.device("cpu")
