"""Argument checks of benchmarks/nas_train.py (the benchmark itself is too long for the suite)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "nas_train.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("nas_train_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_layer_budget_from_name_or_depth(bench):
    from damoyolo.models.backbones.structure import load_structure
    from damoyolo.nas.cost import count_layers
    from damoyolo.nas.space import initial_structure

    assert bench._layer_budget("tinynas_L20_k1kx", load_structure("tinynas_L20_k1kx")) == 20
    assert bench._layer_budget("tinynas_L35_kxkx", load_structure("tinynas_L35_kxkx")) == 35
    blocks = initial_structure("k1kx")
    assert bench._layer_budget("my_backbone.txt", blocks) == count_layers(blocks) == 11


@pytest.mark.parametrize("argv, words", [
    (["--model", "damoyolo-ns"], "'mob' backbone"),
    (["--model", "damoyolo-x"], "unknown model"),
    (["--imgsz", "200"], "multiple of 32"),
])
def test_bad_arguments_are_refused_before_any_work(bench, tmp_path, capsys, argv, words):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        bench.main(["--out", str(out)] + argv)
    assert e.value.code == 2
    assert words in capsys.readouterr().err
    assert not (out / "best.txt").exists() and not (out / "data").exists()
