"""CLI: train/val are registered; bad overrides are rejected with suggestions."""

import importlib.util

import pytest

from damoyolo.cli import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_parses_and_prints_its_help(name, capsys):
    """Each command module is thin (HELP, add_arguments, run) and ``damoyolo NAME --help``
    builds its parser."""
    mod = importlib.import_module(COMMANDS[name])
    assert isinstance(mod.HELP, str) and mod.HELP.strip() and callable(mod.run)
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: damoyolo {name}")


def test_unknown_override_is_rejected(capsys):
    assert main(["train", "--data", "nowhere", "--set", "train.epoch=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.epoch'" in err and "epochs" in err


def test_bad_imgsz(capsys):
    assert main(["train", "--data", "nowhere", "--imgsz", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
