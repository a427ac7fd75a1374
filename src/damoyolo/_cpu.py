"""Moved to :mod:`damoyolo.runtime.cpu`; the names stay importable from here."""

from __future__ import annotations

from .runtime.cpu import is_x86, torch_cpu_has

__all__ = ["torch_cpu_has", "is_x86"]
