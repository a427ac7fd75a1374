"""Where outputs go and how they are written, so that no command destroys a user's files.

* **Run folders are never reused silently.** :func:`run_dir` returns the folder asked for
  when it does not exist or is empty, else the first free numbered sibling
  (``runs/train`` -> ``runs/train2``, ``runs/train3``, ...), the convention of the YOLO
  tools; ``exist_ok=True`` (``--exist-ok``) writes into the folder as it is.
* **No output over an input.** :func:`refuse_overlap` stops a command whose output folder
  is, holds or lies inside one of its input folders, or whose output file is an input file.
* **Every file is written atomically**: to a unique temporary name in the same folder
  (``.NAME.PID.RANDOM.tmp``), then renamed over the final name (:func:`atomic_output`,
  :func:`atomic_write_text`).  A kill leaves the previous file or none, never half of one;
  temporaries of processes that no longer run are removed by :func:`clean_stale_temporaries`.
* **One run per folder.** :func:`lock_run_dir` holds an exclusive lock on the folder while a
  run writes into it; a second run into the same folder stops with one line.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import DamoyoloError

__all__ = ["OutputError", "run_dir", "claim_run_dir", "refuse_overlap", "atomic_output", "atomic_write_text",
           "temporary_path", "claim_output_folder", "source_inputs",
           "atomic_write_bytes", "clean_stale_temporaries", "lock_run_dir", "is_empty_dir"]

CLAIM = ".damoyolo-run"  # made exclusively by the run that takes a folder
_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp(?P<suffix>\.[^/]*)?$")


class OutputError(DamoyoloError, FileExistsError):
    """An output would overwrite an input or another run's results."""


def is_empty_dir(path: Path) -> bool:
    """True when ``path`` is a folder holding nothing but stale temporaries of ours."""
    try:
        return all(_TMP.match(p.name) for p in path.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return False


def claim_run_dir(path: str | Path, exist_ok: bool = False) -> Path:
    """:func:`run_dir`, and the folder claimed at once (created, with a ``.damoyolo-run``
    file made exclusively), so that two runs started together never pick the same folder:
    the one that loses the race takes the next number."""
    for _ in range(100):
        chosen = run_dir(path, exist_ok)
        chosen.mkdir(parents=True, exist_ok=True)
        if exist_ok:
            return chosen
        try:
            os.close(os.open(chosen / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return chosen
        except FileExistsError:  # another run took it a moment ago
            continue
    raise OutputError(f"{path}: could not claim a run folder")


def run_dir(path: str | Path, exist_ok: bool = False) -> Path:
    """The folder a new run writes into: ``path`` when it is free (absent or empty) or
    ``exist_ok``, else the first free of ``path2``, ``path3``, ...  The folder is not created.

    Raises :class:`OutputError` when ``path`` names an existing file.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is a file, not a folder; name an output folder")
    if exist_ok or not path.exists() or is_empty_dir(path):
        return path
    if path.name in ("", ".", ".."):  # "." or ".." holding files: number the real folder
        path = path.resolve()
        if not path.name:
            raise OutputError(f"{path}: the root folder holds files; name an output folder")
    stem = path.name
    m = re.fullmatch(r"(.*?)(\d+)", stem)
    base, start = (m.group(1), int(m.group(2)) + 1) if m and m.group(1) else (stem, 2)
    for i in range(start, start + 10000):
        cand = path.with_name(f"{base}{i}")
        if not cand.exists() or is_empty_dir(cand):
            return cand
    raise OutputError(f"{path}: no free numbered folder beside it; name one with --out")


def _inside(a: Path, b: Path) -> bool:
    """a is b or lies inside b (both resolved)."""
    return a == b or b in a.parents


def refuse_overlap(out: str | Path, inputs: list[str | Path], what: str = "output") -> None:
    """Stop when writing into ``out`` could overwrite one of ``inputs``.

    A folder ``out`` must not be an input folder, lie inside one, or hold an input file or
    folder; a file ``out`` must not be an input file.  ``inputs`` may hold files or folders
    (globs and camera indices are skipped by the caller).
    """
    o = Path(out).expanduser().resolve()
    for raw in inputs:
        i = Path(raw).expanduser()
        if not i.exists():
            continue
        i = i.resolve()
        if o == i or (i.is_dir() and _inside(o, i)) or _inside(i, o):
            kind = "folder" if i.is_dir() else "file"
            raise OutputError(f"{out}: the {what} would overwrite or mix with the input {kind} "
                              f"{raw}; write the {what} elsewhere (--out)")


def source_inputs(source, spec) -> list:
    """The paths a source reads: its image files (a folder's or a pattern's), else the
    spec itself (a video file; a camera index is skipped by :func:`claim_output_folder`)."""
    files = getattr(source, "files", None)
    return list(files) if files is not None else [spec]


def claim_output_folder(out: str | Path, exist_ok: bool, inputs: list) -> Path:
    """The folder a run writes into (:func:`run_dir`), claimed and created, after checking
    that it neither is, holds nor lies inside one of ``inputs`` (paths; None and camera
    indices are skipped).  A numbered folder chosen instead of ``out`` is announced in one
    line.  Call it once everything that can fail before writing has been opened, so that a
    failed start leaves no folder behind."""
    folder = run_dir(out, exist_ok=exist_ok)
    inputs = [Path(str(i)) for i in inputs if i is not None and not isinstance(i, int)]
    refuse_overlap(folder, inputs)
    folder = claim_run_dir(out, exist_ok=exist_ok)  # created now (a concurrent run)
    refuse_overlap(folder, inputs)
    if folder != Path(out):
        print(f"output folder: {folder} ({out} already holds files; --exist-ok writes "
              f"into it)", flush=True)
    return folder


def temporary_path(path: str | Path) -> Path:
    """A new, empty, unique temporary file beside ``path`` (folder created), to be renamed
    over ``path`` once complete; :func:`clean_stale_temporaries` recognises it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _tmp_name(path)


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` would set it for a moment,
    and a file another thread made then would get open permissions)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _UMASK


def _startup_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _startup_umask()  # at import, before the program starts threads of its own


def _tmp_name(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp" + path.suffix,
                               dir=path.parent)
    try:  # the permissions a plainly created file gets (mkstemp's are owner-only)
        os.fchmod(fd, 0o666 & ~_umask())
    except (AttributeError, OSError):  # not POSIX
        pass
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """``with atomic_output(p) as tmp: write(tmp)``: the writer fills a unique temporary file
    in ``p``'s folder (same suffix, so libraries that pick a format by suffix work), which
    is renamed over ``p`` when the block ends without error and removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporaries that processes no longer running left in ``folder`` (a kill
    during a save); returns what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TMP.match(p.name)
        if m and p.is_file() and not process_alive(int(m.group("pid"))):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


class _RunLock:
    def __init__(self, folder: Path):
        self.folder, self.file = folder, None

    def acquire(self) -> _RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / ".lock"
        f = open(path, "a+")
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            self.file = f
            return self
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise OutputError(f"{self.folder}: another damoyolo run is writing into this folder "
                              f"(process {holder}); wait for it or choose another --output"
                              ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self.file = f
        return self

    def release(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def __enter__(self) -> _RunLock:
        return self.acquire() if self.file is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_run_dir(folder: str | Path) -> _RunLock:
    """An exclusive lock on a run folder (``with lock_run_dir(d): ...`` or ``.acquire()``);
    a second process that asks for it gets :class:`OutputError` at once.  The lock goes
    with the process, so a killed run never leaves its folder locked."""
    return _RunLock(Path(folder))
