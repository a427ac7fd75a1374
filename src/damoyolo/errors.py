"""The one base of every error the library raises on purpose.

``DamoyoloError`` is what a user can act on: a bad file, an unknown name, an invalid value,
a missing optional package.  The command line prints these in one line (exit status 2);
any other exception is a bug and keeps its traceback.

Each concern has its own subclass, defined beside the code that raises it (``ConfigError``
in ``config``, ``DatasetError`` in ``data.records``, ...).  Most also derive from the
built-in exception they used to be (``ValueError``, ``KeyError``, ``RuntimeError``), so
code that caught those keeps working.
"""

from __future__ import annotations

__all__ = ["DamoyoloError", "MissingFileError"]


class DamoyoloError(Exception):
    """An error the user can act on; its message names the file, the record and the fix."""

    def __str__(self) -> str:  # KeyError subclasses would otherwise print repr() quotes
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class MissingFileError(DamoyoloError, FileNotFoundError):
    """A file or folder the user named does not exist; the message names it."""
