"""Memory available to this process: psutil, else /proc/meminfo, lowered to the cgroup
(container) limit."""

from __future__ import annotations

from pathlib import Path

__all__ = ["available_memory"]


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_available() -> int | None:
    """Memory left under this process's cgroup limit (v2, else v1), page cache counted as
    free; None without a limit."""
    for limit_f, usage_f, stat_f, key in (
            ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current",
             "/sys/fs/cgroup/memory.stat", "inactive_file"),
            ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
             "/sys/fs/cgroup/memory/memory.usage_in_bytes",
             "/sys/fs/cgroup/memory/memory.stat", "total_inactive_file")):
        limit, usage = _read_int(limit_f), _read_int(usage_f)
        if limit is None or usage is None or limit >= 2**60:
            continue
        inactive = 0
        try:
            for line in Path(stat_f).read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == key and v.strip().isdigit():
                    inactive = int(v)
        except OSError:
            pass
        return max(0, limit - max(0, usage - inactive))
    return None


def available_memory() -> tuple[int | None, str]:
    """(bytes available to this process, where the figure comes from); (None, ...) when
    unknown.  psutil when installed, else /proc/meminfo MemAvailable, lowered to the cgroup
    limit (containers)."""
    avail, source = None, "unknown"
    try:
        import psutil
        avail, source = int(psutil.virtual_memory().available), "psutil"
    except ImportError:
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    avail, source = int(line.split()[1]) * 1024, "/proc/meminfo MemAvailable"
        except (OSError, ValueError, IndexError):
            pass
    cg = _cgroup_available()
    if cg is not None and (avail is None or cg < avail):
        avail, source = cg, "cgroup memory limit"
    return avail, source
