"""The error boundary: the library's errors share one base and the command line prints them
in one line (exit status 2); any other exception is a bug and keeps its traceback."""

from __future__ import annotations

import importlib

import pytest
import torch

from damoyolo.cli import CLIError, main
from damoyolo.errors import DamoyoloError, MissingFileError


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_library_error_prints_one_line_with_status_2(tmp_path, capsys):
    missing = tmp_path / "nowhere.png"
    assert main(["predict", "--weights", str(tmp_path / "m.pt"), "--source", str(missing),
                 "--out", str(tmp_path / "out")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("damoyolo predict: error: ") and str(missing) in line


def test_an_unknown_model_prints_one_line_without_quotes(capsys):
    assert main(["models", "damoyolo-zz"]) == 2
    line = _one_line(capsys.readouterr().err)
    # a KeyError would print its repr ('...'); the library's error prints its message
    assert line.startswith("damoyolo models: error: unknown model 'damoyolo-zz'")


@pytest.mark.parametrize("bug", [KeyError("internal key"), ValueError("internal value"),
                                 FileNotFoundError("internal file"), TypeError("internal")])
def test_an_internal_error_keeps_its_traceback(monkeypatch, capsys, bug):
    mod = importlib.import_module("damoyolo.cli.models")

    def run(args):
        raise bug

    monkeypatch.setattr(mod, "run", run)
    with pytest.raises(type(bug)) as e:
        main(["models"])
    assert e.value is bug and e.traceback  # the exception itself, raised through main
    assert "error:" not in capsys.readouterr().err


def test_an_import_error_of_a_bug_keeps_its_traceback(monkeypatch):
    mod = importlib.import_module("damoyolo.cli.models")

    def run(args):
        import damoyolo_no_such_module  # noqa: F401

    monkeypatch.setattr(mod, "run", run)
    with pytest.raises(ModuleNotFoundError):
        main(["models"])


def test_user_errors_keep_their_old_built_in_base():
    from damoyolo.infer.sources import open_source
    from damoyolo.presets import PresetError, get_preset
    assert issubclass(CLIError, DamoyoloError)
    with pytest.raises(PresetError) as e:
        get_preset("nope")
    assert isinstance(e.value, KeyError) and isinstance(e.value, DamoyoloError)
    with pytest.raises(MissingFileError, match="nope.jpg: no such file") as e:
        open_source("nope.jpg")
    assert isinstance(e.value, FileNotFoundError)


@pytest.mark.parametrize("argv, text", [
    (["nas", "search", "--out", "x", "--budget-layers", "20", "--budget-latency", "1e-4"],
     "--budget-latency needs --latency"),
    (["data", "show", "nowhere"], "nowhere: no such file or folder"),
])
def test_bad_options_print_one_line(argv, text, capsys):
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"damoyolo {argv[0]}: error: ") and text in line


def test_distill_names_the_architecture_option_without_matching_text(tmp_path):
    """An official checkpoint without its architecture: a typed error, not a message match."""
    from damoyolo.checkpoint import ArchitectureUnknownError, CheckpointError, load_model
    from damoyolo.distill.task import load_teacher
    official = tmp_path / "official.pth"
    torch.save({"model": {"backbone.block_list.0.conv.weight": torch.zeros(1)}}, official)
    with pytest.raises(ArchitectureUnknownError):
        load_model(official)
    with pytest.raises(CheckpointError, match="--teacher-model") as e:
        load_teacher(str(official))
    assert not isinstance(e.value, ArchitectureUnknownError)
    with pytest.raises(MissingFileError, match="no-teacher.pth"):
        load_teacher(str(tmp_path / "no-teacher.pth"))
