"""Read a ``.tflite`` file into plain dataclasses: operators, tensors, quantization, MACs, weight bytes.

No TensorFlow. The flatbuffer is walked with the bounds-checked reader in :mod:`._fb` (every offset is
validated before it is read, vector lengths are bounded by the file size), and the ``tflite`` package
supplies the schema's enum names (operators, tensor types, padding, activations). Any problem with the
file becomes one :class:`~pytest_tinyml.errors.ModelFileError` line naming the file, what is wrong, and
the fix.

MACs (multiply-accumulates) are counted for the ops that dominate compute, from tensor shapes:

- ``CONV_2D``: ``batch * out_h * out_w * out_c * k_h * k_w * in_c`` (``in_c`` = the filter's input
  channels, so grouped convolutions count correctly);
- ``DEPTHWISE_CONV_2D``: ``batch * out_h * out_w * out_c * k_h * k_w``;
- ``FULLY_CONNECTED``: ``output elements * in_features`` (``output elements`` = batch rows x units);
- ``TRANSPOSE_CONV``: ``batch * in_h * in_w * in_c * k_h * k_w * out_c``;
- ``BATCH_MATMUL``: ``output elements * K``.

Other ops count 0 MACs. Ops in every subgraph are counted once (a ``WHILE`` body is not multiplied by
its trip count).
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

from pytest_tinyml._util.files import NotRegularFile, not_regular, read_regular
from pytest_tinyml.analysis._fb import BudgetError, FlatbufferError, Reader
from pytest_tinyml.analysis.modelinfo import ModelInfo
from pytest_tinyml.analysis.schema import Schema
from pytest_tinyml.analysis.walker import FIX_CORRUPT, Walker
from pytest_tinyml.errors import ModelFileError

#: Files above this size are refused before reading, with one line: no microcontroller holds them (the
#: largest flash in boards.yaml is 8 MiB; external QSPI parts top out around 64 MiB) and every copy of
#: them (host TFLM child, digests, firmware image) is a memory hazard for the pytest process.
MAX_MODEL_BYTES = 64 << 20

TFLITE_IDENTIFIER = b"TFL3"

_FIX_CONVERT = "convert the model to TFLite with tf.lite.TFLiteConverter and pass the .tflite file"


def load_model_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a ``.tflite`` file, after checking it is a complete, readable TFLite flatbuffer.

    Raises :class:`ModelFileError` (one line: file, problem, fix) for a missing file, a directory or
    other non-regular file, an empty or absurdly large file, something that is not a flatbuffer, a
    wrong file identifier, and truncated or inconsistent contents.
    """
    data = _read_file(path)
    parse_model(data, os.fspath(path))  # full structural check; cheap (milliseconds)
    return data


def _read_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a regular, non-empty file of sane size (file-system checks only)."""
    where = os.fspath(path)
    try:
        st = os.stat(where)
    except FileNotFoundError:
        raise ModelFileError(
            "model file not found", where=where, fix=f"check the path (relative to {os.getcwd()})"
        ) from None
    except OSError as exc:
        raise ModelFileError(
            f"cannot access the model file: {exc.strerror}", where=where, fix="check the path and permissions"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(
            "is a directory, not a .tflite file",
            where=where,
            fix="pass the .tflite file itself (a SavedModel directory must be converted first)",
        )
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(
            f"not a regular file: {not_regular(Path(where)) or 'a device, pipe or socket'}",
            where=where, fix="pass the .tflite file itself",
        )
    if st.st_size == 0:
        raise ModelFileError(
            "file is empty (0 bytes)",
            where=where,
            fix="re-export the model: the conversion or the copy did not finish",
        )
    if st.st_size > MAX_MODEL_BYTES:
        raise ModelFileError(
            f"file is {st.st_size:,} bytes, more than the {MAX_MODEL_BYTES:,}-byte limit "
            "for any microcontroller flash; not read",
            where=where,
            fix="check this is the right file, or shrink the model (quantize, prune, fewer parameters)",
        )
    try:
        data = read_regular(Path(where), MAX_MODEL_BYTES + 1)  # O_NONBLOCK: a FIFO swapped in never blocks
    except NotRegularFile as exc:
        raise ModelFileError(f"not a regular file: {exc.kind}", where=where, fix="pass the .tflite file itself") from None
    except OSError as exc:
        raise ModelFileError(
            f"cannot read the model file: {exc.strerror}", where=where, fix="check the file permissions"
        ) from None
    return data


def _sniff(data: bytes) -> str | None:
    """A short description of well-known non-TFLite formats."""
    head = data[:64]
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (a Keras .h5 model?)"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive (a .keras model?)"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the model itself"
    if b"onnx" in head.lower() or b"pytorch" in head.lower():
        return "an ONNX/PyTorch file"
    if len(data) >= 12 and data[8:12] == TFLITE_IDENTIFIER:
        return "a size-prefixed flatbuffer"
    if head and all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return f"a text file starting {head[:24].decode('ascii')!r}"
    return None


def _fix_for(kind: str) -> str:
    if "Git LFS" in kind:
        return "run `git lfs pull` to fetch the real file"
    if "size-prefixed" in kind:
        return "strip the 4-byte size prefix (bytes 0..4) and pass the plain flatbuffer"
    return _FIX_CONVERT


def _check_header(data: bytes, where: str) -> None:
    size = len(data)
    if size == 0:
        raise ModelFileError("model is empty (0 bytes)", where=where, fix="re-export the model")
    if size > MAX_MODEL_BYTES:
        raise ModelFileError(
            f"model is {size:,} bytes, more than the {MAX_MODEL_BYTES:,}-byte limit",
            where=where,
            fix="check this is the right file, or shrink the model",
        )
    kind = _sniff(data)
    if size < 16:
        raise ModelFileError(
            f"not a TFLite flatbuffer: only {size} bytes" + (f", looks like {kind}" if kind else ""),
            where=where,
            fix=_FIX_CONVERT,
        )
    ident = data[4:8]
    if ident == TFLITE_IDENTIFIER:
        return
    root = struct.unpack_from("<I", data, 0)[0]
    is_flatbuffer = False
    if kind is None and 8 <= root < size:
        try:
            Reader(data).root()
            is_flatbuffer = True
        except FlatbufferError:
            pass
    if is_flatbuffer:
        raise ModelFileError(
            f"wrong file identifier: bytes 4..8 are {ident!r}, a TFLite model has {TFLITE_IDENTIFIER!r} "
            "(a flatbuffer of another schema)",
            where=where,
            fix="pass a TFLite (.tflite) model, e.g. the output of tf.lite.TFLiteConverter",
        )
    found = kind or f"bytes 4..8 are {ident!r}, not {TFLITE_IDENTIFIER!r}"
    raise ModelFileError(f"not a TFLite flatbuffer: found {found}", where=where, fix=_fix_for(kind or ""))


def parse_model(data: bytes, source: str) -> ModelInfo:
    """Parse a TFLite flatbuffer (``source`` names it in messages). Raises :class:`ModelFileError`."""
    data = bytes(data)
    _check_header(data, source)
    schema = Schema.load()
    try:
        return Walker(data, source, schema).model()
    except ModelFileError:
        raise
    except BudgetError as exc:
        raise ModelFileError(
            f"refused: {exc.problem}; stopped at byte offset {exc.offset}, reading {exc.what}",
            where=source,
            fix="a converter writes each table once: re-export the model; do not trust this file",
        ) from None
    except FlatbufferError as exc:
        raise ModelFileError(
            f"truncated or corrupted: {exc.problem} at byte offset {exc.offset}, reading {exc.what}",
            where=source,
            fix=FIX_CORRUPT,
        ) from None
    except Exception as exc:  # any other surprise from hostile bytes: still one line, no traceback
        raise ModelFileError(
            f"corrupted model ({type(exc).__name__}: {exc})", where=source, fix=FIX_CORRUPT
        ) from None


def load_model(path: str | os.PathLike[str]) -> ModelInfo:
    """:func:`load_model_bytes` + :func:`parse_model` in one call."""
    where = os.fspath(path)
    return parse_model(_read_file(where), where)
