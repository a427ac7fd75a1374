"""``damoyolo distill``: ``damoyolo train`` with a teacher (feature distillation)."""

from __future__ import annotations

from . import train as _train

HELP = "train a student with feature distillation from a teacher (train --teacher ...)"


def add_arguments(p) -> None:
    _train.add_arguments(p, teacher_required=True)


def run(args) -> int:
    return _train.run(args)
