"""CLI: train/val are registered; bad overrides are rejected with suggestions."""

import importlib.util

import pytest

from damoyolo.cli import COMMANDS, main


def test_commands_registered():
    assert COMMANDS["train"] == "damoyolo.cli.train" and COMMANDS["val"] == "damoyolo.cli.val"


def test_unknown_override_is_rejected(capsys):
    assert main(["train", "--data", "nowhere", "--set", "train.epoch=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.epoch'" in err and "epochs" in err


def test_bad_imgsz(capsys):
    assert main(["train", "--data", "nowhere", "--imgsz", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
