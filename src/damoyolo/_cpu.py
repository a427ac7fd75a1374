"""What this CPU can do, from torch's cpuinfo probes (``torch.cpu._is_<feature>_supported``)."""

from __future__ import annotations

import platform

import torch


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
