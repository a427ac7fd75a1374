"""CPU facts: what this CPU can do (torch's cpuinfo probes) and how many cores this process
may use."""

from __future__ import annotations

import os
import platform

import torch

__all__ = ["torch_cpu_has", "is_x86", "usable_cpus"]


def torch_cpu_has(*features: str) -> bool:
    """Whether torch reports any of ``features`` (e.g. ``"amx_tile"``, ``"vnni"``); ``False``
    where this torch has no such probe or the probe fails."""
    for feature in features:
        probe = getattr(torch.cpu, f"_is_{feature}_supported", None)
        try:
            if probe is not None and probe():
                return True
        except RuntimeError:
            pass
    return False


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def usable_cpus() -> int:
    """CPU cores this process may run on: its affinity mask (taskset, cpusets, SLURM), else
    ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)
