"""Input blocks kept under ``<cache>/firmware/inputs``, so a recorded emulator command can be rerun by hand.

A block (the model and the input samples, see :func:`pytest_tinyml.emulate.protocol.input_block`) is stored by
content as ``<first 24 hex digits of its sha256>.bin`` and is bounded like a build cache: past
:data:`INPUTS_KEEP_BYTES` in all (ini ``tinyml_input_blocks_keep``) the least recently used blocks are deleted
when a new one is written. A block is "used" when a run writes or reuses it, and when a cached run whose
recorded command names it is reported again (:func:`restore_block` writes it back if it was pruned).

Several processes (pytest-xdist workers, two pytest runs on one cache) share the folder, with the locking of
:mod:`pytest_tinyml.pipeline.cache`:

- ``<cache>/firmware/inputs.lock`` (``fcntl.flock``, exclusive) is held while a block is checked, written or
  touched and while the folder is pruned, so a block is never deleted between a process finding it and
  starting to use it;
- a process running an emulator on a block holds a shared ``flock`` on the block file itself (taken under
  the folder lock) until the emulator has exited; pruning takes an exclusive ``flock`` without waiting and
  skips a block it cannot lock: a block an emulator is loading or running on is never deleted;
- a block used in the last :data:`INPUTS_GRACE_SECONDS` is not deleted either (a command recorded minutes
  ago can still be rerun by hand).

A stored block whose bytes differ from what it should hold (a damaged file) is written again, as cache
entries are. Pruning deletes only plain files with the names given here, never through a symbolic link.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tinyml._util.cachefs import file_lock

if TYPE_CHECKING:
    from pytest_tinyml.emulate.result import FirmwareResult

#: Input blocks kept under ``<cache>/firmware/inputs`` (bytes): beyond this the least recently used go.
INPUTS_KEEP_BYTES = 256 * 1024 * 1024
#: A block used less than this many seconds ago is never pruned.
INPUTS_GRACE_SECONDS = 600.0

_NAME = re.compile(r"[0-9a-f]{24}\.bin")
_TEMP = re.compile(r"\.block-[A-Za-z0-9_]+")


def block_name(block: bytes) -> str:
    """The file name a block is stored under (by content)."""
    return f"{hashlib.sha256(block).hexdigest()[:24]}.bin"


def lock_path(folder: Path) -> Path:
    """``<cache>/firmware/inputs.lock``, next to the folder (like ``builds/<key>.lock``)."""
    return folder.parent / f"{folder.name}.lock"


def _same_bytes(path: Path, block: bytes) -> bool:
    """True when ``path`` is a plain file (not a link) holding exactly ``block``."""
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(block):
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as fh:
        return fh.read(len(block) + 1) == block


def _store(folder: Path, path: Path, block: bytes) -> bool:
    """Write ``block`` to ``path`` unless it holds it already (then mark it used); True when written."""
    if _same_bytes(path, block):
        os.utime(path, follow_symlinks=False)  # reused: the most recent again
        return False
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".block-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(block)
        os.replace(tmp, path)  # replaces a damaged file or a link by the block itself
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


@contextlib.contextmanager
def use_block(folder: Path, block: bytes, keep_bytes: int | None = None,
              grace: float | None = None) -> Iterator[Path]:
    """Store ``block`` under ``folder`` (by content, written atomically) and yield its path; no other process
    deletes it until the ``with`` ends (run the emulator inside it). Writing a new block prunes the folder
    to ``keep_bytes`` (:data:`INPUTS_KEEP_BYTES`)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / block_name(block)
    with file_lock(lock_path(folder)):
        written = _store(folder, path, block)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            # never waits: pruners lock a block exclusively only while they hold the folder lock
            fcntl.flock(fd, fcntl.LOCK_SH)
            if written:
                _prune(folder, path, keep_bytes, grace)
        except BaseException:
            os.close(fd)
            raise
    try:
        yield path
    finally:
        os.close(fd)  # releases the shared lock


def prune_blocks(folder: Path, keep: Path | None = None, limit: int | None = None,
                 grace: float | None = None) -> list[Path]:
    """Delete the least recently used input blocks until ``folder`` holds at most ``limit`` bytes of them
    (:data:`INPUTS_KEEP_BYTES`), never ``keep``, a block an emulator is using, nor one used in the last
    ``grace`` seconds (:data:`INPUTS_GRACE_SECONDS`); returns what was deleted. A pruned block is written
    again by the next pytest run that needs it."""
    if folder.is_symlink() or not folder.is_dir():
        return []
    with file_lock(lock_path(folder)):
        return _prune(folder, keep, limit, grace)


def _prune(folder: Path, keep: Path | None, limit: int | None, grace: float | None) -> list[Path]:
    """:func:`prune_blocks` with the folder lock held."""
    limit = INPUTS_KEEP_BYTES if limit is None else limit
    grace = INPUTS_GRACE_SECONDS if grace is None else grace
    if folder.is_symlink():  # a crafted cache could point it elsewhere: delete nothing through a link
        return []
    now = time.time()
    entries = []
    for entry in folder.iterdir():
        try:
            st = entry.lstat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):  # never a link or anything but a plain file
            continue
        if _TEMP.fullmatch(entry.name) and now - st.st_mtime >= max(grace, 60.0):
            with contextlib.suppress(OSError):  # left by a process killed while writing (under this lock)
                entry.unlink()
        elif _NAME.fullmatch(entry.name):  # only the blocks use_block names
            entries.append((st.st_mtime, st.st_size, entry))
    total = sum(size for _, size, _ in entries)
    deleted: list[Path] = []
    for mtime, size, entry in sorted(entries, key=lambda e: e[0]):
        if total <= limit:
            break
        if entry == keep or now - mtime < grace:
            continue
        if _delete_unused(entry):
            total -= size
            deleted.append(entry)
    return deleted


def _delete_unused(entry: Path) -> bool:
    """Delete ``entry`` unless a process holds a lock on it (an emulator is using the block)."""
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: in use
            return False
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        entry.unlink()
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def restore_block(fw: FirmwareResult, model: bytes, inputs: Sequence[Any], cache_dir: Path,
                  inputs_keep: int | None = None) -> bool:
    """For a cached run: the input block its recorded command loads (``fw.input_block``), written again if it
    was pruned and marked used either way, so the command stays runnable. The block is rebuilt from the model
    and the first ``fw.input_block_samples`` inputs and must hash to the recorded name. Never raises; False
    when the block could not be restored (the firmware items then say the command's block is missing)."""
    from pytest_tinyml.analysis.model import parse_model
    from pytest_tinyml.emulate.protocol import input_block, io_specs, pack_inputs
    from pytest_tinyml.errors import TinyMLError

    if not fw.input_block:
        return False
    folder = Path(cache_dir).resolve() / "inputs"
    recorded = Path(fw.input_block)
    n = fw.input_block_samples
    if recorded.parent != folder or not 0 <= n <= len(inputs):
        return False  # recorded under another cache directory
    try:
        data = bytes(model)
        in_specs, _ = io_specs(parse_model(data, "<model>"))
        payload = pack_inputs(list(inputs[:n]), in_specs)
        block = input_block(data, payload, n, len(payload) // n if n else 0)
        if block_name(block) != recorded.name:
            return False
        with use_block(folder, block, inputs_keep):
            pass
    except (OSError, ValueError, TinyMLError):
        return False
    return True
