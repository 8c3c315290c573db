"""A bounds-checked reader for FlatBuffers tables, used to walk ``.tflite`` files safely.

Every read validates its offset against the buffer length before touching the bytes, so a hostile or
truncated file produces :class:`FlatbufferError` (with the offending offset and what was being read)
instead of a ``struct.error``, garbage values, a hang, or a huge allocation. Vector lengths are checked
against the bytes that remain.

That alone does not bound the work: flatbuffer tables can be shared, so one tensor table with a long name
referenced N times from the tensors vector costs N x (name length) when decoded, and one subgraph
referenced N times costs N x its size (a 100 KB file once took 415 MB). Every :class:`Reader` therefore
carries a budget proportional to the file size: the bytes it decodes (strings and scalar vectors) may not
exceed ``DECODE_FACTOR`` x the file size + ``DECODE_SLACK``, and the tables it opens may not exceed one
per ``TABLE_BYTES`` bytes of file + ``TABLE_SLACK`` (an unshared file references each table through a
4-byte offset and a table starts with a 4-byte vtable offset, so it stays inside both). Over budget, :class:`BudgetError` names what was being read
and where.

Only the FlatBuffers wire format is implemented here (tables, vtables, vectors, strings, scalars); the
TFLite schema knowledge (which slot holds which field) lives in :mod:`pytest_tinyml.analysis.schema` and
:mod:`pytest_tinyml.analysis.walker`.
"""

from __future__ import annotations

import struct

_SCALARS = {
    "b": 1,
    "B": 1,
    "h": 2,
    "H": 2,
    "i": 4,
    "I": 4,
    "q": 8,
    "Q": 8,
    "f": 4,
    "d": 8,
    "?": 1,
}


class FlatbufferError(Exception):
    """The buffer is not a well-formed flatbuffer at ``offset`` while reading ``what``."""

    def __init__(self, what: str, offset: int, problem: str) -> None:
        self.what = what
        self.offset = offset
        self.problem = problem
        super().__init__(f"{problem} at byte offset {offset} while reading {what}")


#: Decoded bytes allowed per byte of file, plus a constant (see the module docstring).
DECODE_FACTOR = 4
DECODE_SLACK = 1 << 20
#: One table visit allowed per this many bytes of file, plus a constant.
TABLE_BYTES = 8
TABLE_SLACK = 1024


class BudgetError(FlatbufferError):
    """Decoding the file would take more work or memory than its size justifies (shared tables)."""


class Reader:
    """Bounds-checked access to a flatbuffer held in ``data``, with a work budget of O(file size)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.decode_budget = DECODE_FACTOR * self.size + DECODE_SLACK
        self.table_budget = self.size // TABLE_BYTES + TABLE_SLACK
        self.decoded = 0
        self.tables_opened = 0

    def charge(self, nbytes: int, pos: int, what: str) -> None:
        """Count ``nbytes`` decoded at ``pos``; :class:`BudgetError` once the file's budget is spent."""
        self.decoded += nbytes
        if self.decoded > self.decode_budget:
            raise BudgetError(
                what,
                pos,
                f"decoding needs more than {self.decode_budget:,} bytes for a {self.size:,}-byte file "
                "(tables or strings shared many times over)",
            )

    def _check(self, pos: int, nbytes: int, what: str) -> None:
        if pos < 0 or pos + nbytes > self.size:
            raise FlatbufferError(what, pos, f"offset points past the end of the file ({self.size} bytes)")

    def scalar(self, fmt: str, pos: int, what: str) -> int | float | bool:
        self._check(pos, _SCALARS[fmt], what)
        value: int | float | bool = struct.unpack_from("<" + fmt, self.data, pos)[0]
        return value

    def u32(self, pos: int, what: str) -> int:
        self._check(pos, 4, what)
        value: int = struct.unpack_from("<I", self.data, pos)[0]
        return value

    def root(self, what: str = "root table") -> Table:
        return self.table_at(self.u32(0, what), what)

    def table_at(self, pos: int, what: str) -> Table:
        """The table at absolute position ``pos`` with its vtable validated."""
        self._check(pos, 4, what)
        self.tables_opened += 1
        if self.tables_opened > self.table_budget:
            raise BudgetError(
                what,
                pos,
                f"more than {self.table_budget:,} table visits for a {self.size:,}-byte file "
                "(tables shared many times over)",
            )
        soffset: int = struct.unpack_from("<i", self.data, pos)[0]
        vt = pos - soffset
        if vt < 0 or vt + 4 > self.size:
            raise FlatbufferError(what, pos, f"vtable offset {vt} is outside the file ({self.size} bytes)")
        vt_len, table_len = struct.unpack_from("<HH", self.data, vt)
        if vt_len < 4 or vt_len % 2:
            raise FlatbufferError(what, vt, f"invalid vtable length {vt_len}")
        if vt + vt_len > self.size:
            raise FlatbufferError(what, vt, f"vtable of {vt_len} bytes runs past the end of the file")
        if table_len < 4 or pos + table_len > self.size:
            raise FlatbufferError(what, pos, f"table of {table_len} bytes runs past the end of the file")
        return Table(self, pos, vt, vt_len, table_len, what)


class Table:
    """One flatbuffer table; fields are addressed by their schema slot number (0-based)."""

    __slots__ = ("reader", "pos", "vt", "vt_len", "table_len", "what")

    def __init__(self, reader: Reader, pos: int, vt: int, vt_len: int, table_len: int, what: str) -> None:
        self.reader = reader
        self.pos = pos
        self.vt = vt
        self.vt_len = vt_len
        self.table_len = table_len
        self.what = what

    def _field(self, slot: int, size: int, what: str) -> int:
        """Absolute position of the field in ``slot``, or 0 when it is absent."""
        entry = 4 + 2 * slot
        if entry + 2 > self.vt_len:
            return 0
        off: int = struct.unpack_from("<H", self.reader.data, self.vt + entry)[0]
        if off == 0:
            return 0
        if off + size > self.table_len:
            raise FlatbufferError(
                f"{self.what} {what}",
                self.pos + off,
                f"field lies outside its table ({self.table_len} bytes)",
            )
        return self.pos + off

    def has(self, slot: int) -> bool:
        return self._field(slot, 0, "field") != 0

    def scalar(self, slot: int, fmt: str, default: int | float | bool, what: str) -> int | float | bool:
        pos = self._field(slot, _SCALARS[fmt], what)
        if not pos:
            return default
        return self.reader.scalar(fmt, pos, f"{self.what} {what}")

    def integer(self, slot: int, fmt: str, default: int, what: str) -> int:
        return int(self.scalar(slot, fmt, default, what))

    def _indirect(self, slot: int, what: str) -> int:
        pos = self._field(slot, 4, what)
        if not pos:
            return 0
        target = pos + self.reader.u32(pos, f"{self.what} {what}")
        self.reader._check(target, 4, f"{self.what} {what}")
        return target

    def table(self, slot: int, what: str) -> Table | None:
        target = self._indirect(slot, what)
        if not target:
            return None
        return self.reader.table_at(target, f"{self.what} {what}")

    def vector(self, slot: int, elem_size: int, what: str) -> tuple[int, int]:
        """``(start, length)`` of a vector field; ``(0, 0)`` when absent. Length is bounded by the file."""
        target = self._indirect(slot, what)
        if not target:
            return 0, 0
        length = self.reader.u32(target, f"{self.what} {what} length")
        start = target + 4
        if length * elem_size > self.reader.size - start:
            raise FlatbufferError(
                f"{self.what} {what}",
                target,
                f"vector claims {length} elements of {elem_size} bytes, more than the "
                f"{max(self.reader.size - start, 0)} bytes left in the file",
            )
        return start, length

    def scalars(self, slot: int, fmt: str, what: str) -> tuple[int | float, ...] | None:
        start, length = self.vector(slot, _SCALARS[fmt], what)
        if not start:
            return None
        self.reader.charge(length * _SCALARS[fmt], start, f"{self.what} {what}")
        values: tuple[int | float, ...] = struct.unpack_from(f"<{length}{fmt}", self.reader.data, start)
        return values

    def ints(self, slot: int, fmt: str, what: str) -> tuple[int, ...] | None:
        values = self.scalars(slot, fmt, what)
        return None if values is None else tuple(int(v) for v in values)

    def floats(self, slot: int, what: str) -> tuple[float, ...] | None:
        values = self.scalars(slot, "f", what)
        return None if values is None else tuple(float(v) for v in values)

    def string(self, slot: int, what: str) -> str | None:
        start, length = self.vector(slot, 1, what)
        if not start:
            return None
        self.reader.charge(length, start, f"{self.what} {what}")
        raw = self.reader.data[start : start + length]
        return raw.decode("utf-8", errors="replace")

    def tables(self, slot: int, what: str) -> list[Table]:
        """A vector of tables; each element is validated (the count is bounded by the file size)."""
        start, length = self.vector(slot, 4, what)
        self.reader.charge(4 * length, start, f"{self.what} {what}")
        result = []
        for i in range(length):
            elem = start + 4 * i
            target = elem + self.reader.u32(elem, f"{self.what} {what}[{i}]")
            result.append(self.reader.table_at(target, f"{what}[{i}]"))
        return result
