"""Spec and model files as hostile input: what a path is, found without opening it, and a bounded read
that never blocks.

A FIFO opened for reading blocks until a writer comes; ``/dev/zero`` never ends. Paths the user names are
therefore judged by ``stat`` first (:func:`not_regular`), and read only through :func:`read_regular`,
which opens with ``O_NONBLOCK`` and checks the opened file (so a file swapped for a FIFO after the check
is refused too, not waited on).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pytest_tinyml._util.text import printable

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


class NotRegularFile(OSError):
    """The opened path is not a regular file; ``kind`` says what it is."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"not a regular file: {kind}")
        self.kind = kind


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def not_regular(path: Path) -> str | None:
    """None when ``path`` is a regular file (through symlinks), else what it is, e.g. ``a FIFO (named
    pipe)`` or ``a symbolic link to /dev/zero, a character device``; ``no such file`` when it (or the file
    a symlink points to) does not exist. Never opens the path."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"a symbolic link to {printable(os.readlink(path))}, which does not exist"
        return "no such file"
    except OSError as exc:
        return f"cannot be examined ({exc.strerror or type(exc).__name__})"
    if stat.S_ISREG(st.st_mode):
        return None
    kind = _kind(st.st_mode)
    if os.path.islink(path):
        try:
            return f"a symbolic link to {printable(os.path.realpath(path))}, {kind}"
        except (OSError, ValueError):
            return f"a symbolic link to {kind}"
    return kind


def read_regular(path: Path, limit: int) -> bytes:
    """Up to ``limit`` bytes of the regular file ``path``. Opened with ``O_NONBLOCK`` (a FIFO never makes
    this wait); raises :class:`NotRegularFile` when the opened file is not a regular file, ``OSError``
    when it cannot be opened or read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(_kind(mode))
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            return fh.read(limit)
    finally:
        if fd >= 0:
            os.close(fd)


def target_key(path: Path) -> Path:
    """The one name of a spec or model file in a run: its resolved path when it is a regular file
    (through symlinks), else its absolute path with the last component kept as given (a symlink to
    ``/dev/zero`` stays the link the user named, so its error names it)."""
    if path.is_file():
        return path.resolve()
    return path.absolute().parent.resolve() / path.name
