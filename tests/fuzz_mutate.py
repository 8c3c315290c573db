"""Seeded, structure-aware mutators for ``.tflite`` files and spec YAML (hardening tests and bench/bench_fuzz.py).

Nothing here is random unless seeded: :func:`model_case` and :func:`spec_case` turn ``(seed, index)`` into
the same bytes in every process, so a failing case is reproduced from its numbers alone.

Model mutations know the TFLite flatbuffer layout (found by :func:`field_map`, an independent walker over
a *valid* model, so it does not reuse the reader under test): they overwrite shape values with 2^31-1
or negatives, point tensor / buffer / opcode indices out of range, set vector lengths to huge values,
aim offsets at themselves or at an enclosing table (cycles), corrupt vtables, splice regions of another
model in, change the magic, truncate, and flip bits.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

# -------------------------------------------------------------------------------------------------
# Field map of a valid TFLite flatbuffer
# -------------------------------------------------------------------------------------------------

# (slot -> kind) per table type, from the TFLite schema.
Layout = dict[int, tuple[str, str | None]]
_MODEL: Layout = {1: ("tables", "opcode"), 2: ("tables", "subgraph"), 3: ("string", None), 4: ("tables", "buffer"),
          5: ("ints", "metadata_buffer"), 6: ("tables", "metadata"), 7: ("tables", "signature")}
_OPCODE: Layout = {1: ("string", None)}
_SUBGRAPH: Layout = {0: ("tables", "tensor"), 1: ("ints", "tensor_index"), 2: ("ints", "tensor_index"),
             3: ("tables", "operator"), 4: ("string", None)}
_TENSOR: Layout = {0: ("ints", "shape"), 3: ("string", None), 4: ("table", "quantization"), 6: ("table", "sparsity"),
           7: ("ints", "shape")}
_QUANT: Layout = {0: ("floats", "minmax"), 1: ("floats", "minmax"), 2: ("floats", "scale"), 3: ("longs", "zero_point")}
_OPERATOR: Layout = {1: ("ints", "tensor_index"), 2: ("ints", "tensor_index"), 4: ("table", "options"),
             5: ("bytes", "custom_options"), 8: ("ints", "tensor_index")}
_BUFFER: Layout = {0: ("bytes", "buffer_data")}
_METADATA: Layout = {}
_OPTIONS: Layout = {}
_LAYOUTS: dict[str, Layout] = {"model": _MODEL, "opcode": _OPCODE, "subgraph": _SUBGRAPH, "tensor": _TENSOR,
            "quantization": _QUANT, "operator": _OPERATOR, "buffer": _BUFFER, "metadata": _METADATA,
            "options": _OPTIONS, "signature": {}, "sparsity": {}}
# scalar fields worth aiming at: (table kind, slot) -> (struct format, name)
_SCALARS = {("opcode", 0): ("b", "deprecated_builtin_code"), ("opcode", 2): ("i", "opcode_version"),
            ("opcode", 3): ("i", "builtin_code"), ("tensor", 1): ("b", "tensor_type"),
            ("tensor", 2): ("I", "buffer_index"), ("tensor", 5): ("?", "is_variable"),
            ("quantization", 6): ("i", "quantized_dimension"), ("operator", 0): ("I", "opcode_index"),
            ("operator", 3): ("B", "options_type"), ("buffer", 1): ("Q", "buffer_offset"),
            ("buffer", 2): ("Q", "buffer_size"), ("model", 0): ("I", "schema_version")}


@dataclass
class FieldMap:
    """Byte positions of the interesting parts of one valid model."""

    tables: list[tuple[int, str, int]] = field(default_factory=list)  # (table pos, kind, parent table pos)
    vtables: list[int] = field(default_factory=list)
    offsets: list[tuple[int, int]] = field(default_factory=list)  # (position of a uoffset, its parent table)
    vector_lengths: list[tuple[int, str]] = field(default_factory=list)  # (position of the u32 length, kind)
    ints: dict[str, list[int]] = field(default_factory=dict)  # kind -> positions of int32 elements
    scalars: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # name -> (pos, fmt)
    floats: dict[str, list[int]] = field(default_factory=dict)
    longs: dict[str, list[int]] = field(default_factory=dict)
    shapes: list[list[int]] = field(default_factory=list)  # int32 positions of each shape vector
    counts: dict[str, int] = field(default_factory=dict)  # tensors / buffers / opcodes


def _u32(data: bytes, pos: int) -> int:
    value: int = struct.unpack_from("<I", data, pos)[0]
    return value


def field_map(data: bytes) -> FieldMap:
    """Positions of tables, offsets, vector lengths and typed fields of a well-formed TFLite model."""
    fm = FieldMap()

    def add(store: dict[str, list[int]], key: str, pos: int) -> None:
        store.setdefault(key, []).append(pos)

    def table(pos: int, kind: str, parent: int) -> None:
        fm.tables.append((pos, kind, parent))
        fm.counts[kind] = fm.counts.get(kind, 0) + 1
        vt = pos - struct.unpack_from("<i", data, pos)[0]
        fm.vtables.append(vt)
        vt_len = struct.unpack_from("<H", data, vt)[0]
        n_slots = (vt_len - 4) // 2
        for slot in range(n_slots):
            off = struct.unpack_from("<H", data, vt + 4 + 2 * slot)[0]
            if not off:
                continue
            fpos = pos + off
            scalar = _SCALARS.get((kind, slot))
            if scalar is not None:
                fm.scalars.setdefault(scalar[1], []).append((fpos, scalar[0]))
                continue
            layout = _LAYOUTS.get(kind, {}).get(slot)
            if kind == "options" or layout is None:
                if kind == "options":
                    fm.scalars.setdefault("option_scalar", []).append((fpos, "i" if off % 4 == 0 else "b"))
                continue
            how, sub = layout
            fm.offsets.append((fpos, pos))
            target = fpos + _u32(data, fpos)
            if how == "table":
                table(target, str(sub), pos)
                continue
            length = _u32(data, target)
            fm.vector_lengths.append((target, how if sub is None else str(sub)))
            start = target + 4
            if how == "tables":
                for i in range(length):
                    elem = start + 4 * i
                    fm.offsets.append((elem, pos))
                    table(elem + _u32(data, elem), str(sub), pos)
            elif how == "ints":
                positions = [start + 4 * i for i in range(length)]
                for p in positions:
                    add(fm.ints, str(sub), p)
                if sub == "shape":
                    fm.shapes.append(positions)
            elif how == "floats":
                for i in range(length):
                    add(fm.floats, str(sub), start + 4 * i)
            elif how == "longs":
                for i in range(length):
                    add(fm.longs, str(sub), start + 8 * i)

    root = _u32(data, 0)
    fm.offsets.append((0, -1))
    table(root, "model", -1)
    return fm


# -------------------------------------------------------------------------------------------------
# Model mutations
# -------------------------------------------------------------------------------------------------

INT32_INTERESTING = (0, 1, -1, 2, 3, 4, 255, 256, 65535, 65536, 2**30, 2**31 - 1, -(2**31), -2, 1 << 24)
U32_INTERESTING = (0, 1, 2, 4, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFC, 0x10000, 0x1000000)


@dataclass
class Mutable:
    data: bytearray
    fm: FieldMap
    rng: random.Random
    donors: list[bytes]
    ops: list[str] = field(default_factory=list)

    def put(self, fmt: str, pos: int, value: int | float) -> None:
        size = struct.calcsize("<" + fmt)
        if 0 <= pos and pos + size <= len(self.data):
            if fmt in "bhiq":
                bits = 8 * size
                value = ((int(value) + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))
            elif fmt in "BHIQ?":
                value = int(value) % (1 << (8 * size))
                if fmt == "?":
                    value = bool(value)
            struct.pack_into("<" + fmt, self.data, pos, value)


def _interesting_int(m: Mutable, count: int) -> int:
    r = m.rng.random()
    if r < 0.5:
        return m.rng.choice(INT32_INTERESTING)
    if r < 0.8:
        return count + m.rng.randint(-1, 2)
    return m.rng.randint(-(2**31), 2**31 - 1)


def mut_bitflip(m: Mutable) -> None:
    for _ in range(m.rng.randint(1, 8)):
        pos = m.rng.randrange(len(m.data))
        m.data[pos] ^= 1 << m.rng.randrange(8)


def mut_bytes(m: Mutable) -> None:
    pos = m.rng.randrange(len(m.data))
    n = m.rng.randint(1, 16)
    fill = m.rng.choice([None, 0x00, 0xFF, 0x7F, 0x80])
    for i in range(pos, min(pos + n, len(m.data))):
        m.data[i] = m.rng.randrange(256) if fill is None else fill


def mut_truncate(m: Mutable) -> None:
    r = m.rng.random()
    if r < 0.2:
        cut = m.rng.randint(0, 24)
    elif r < 0.5:
        cut = len(m.data) - m.rng.randint(1, 64)
    else:
        cut = m.rng.randrange(len(m.data))
    del m.data[max(cut, 0):]


def mut_shape(m: Mutable) -> None:
    if not m.fm.shapes:
        return mut_bitflip(m)
    shape = m.rng.choice(m.fm.shapes)
    choice = m.rng.random()
    for i, pos in enumerate(shape):
        if choice < 0.3:  # every dimension huge: the element count overflows 64 bits
            m.put("i", pos, 2**31 - 1)
        elif choice < 0.5:
            m.put("i", pos, m.rng.choice((-1, -2, -(2**31), 0)))
        elif m.rng.random() < 0.5 or i == len(shape) - 1:
            m.put("i", pos, m.rng.choice((2**31 - 1, -1, 0, 1 << 20, 65536, -(2**31))))
    return None


def mut_index(m: Mutable) -> None:
    kind = m.rng.choice(["tensor_index", "buffer_index", "opcode_index", "builtin_code", "tensor_type",
                         "quantized_dimension", "deprecated_builtin_code", "option_scalar", "options_type",
                         "opcode_version", "is_variable", "schema_version"])
    counts = {"tensor_index": m.fm.counts.get("tensor", 0), "buffer_index": m.fm.counts.get("buffer", 0),
              "opcode_index": m.fm.counts.get("opcode", 0), "builtin_code": 210, "tensor_type": 20,
              "deprecated_builtin_code": 127, "options_type": 130}
    if kind == "tensor_index":
        positions = [(p, "i") for p in m.fm.ints.get("tensor_index", [])]
    else:
        positions = m.fm.scalars.get(kind, [])
    if not positions:
        return mut_bitflip(m)
    for _ in range(m.rng.randint(1, 3)):
        pos, fmt = m.rng.choice(positions)
        m.put(fmt, pos, _interesting_int(m, counts.get(kind, 4)))
    return None


def mut_vector_length(m: Mutable) -> None:
    if not m.fm.vector_lengths:
        return mut_bitflip(m)
    pos, _ = m.rng.choice(m.fm.vector_lengths)
    if pos + 4 > len(m.data):  # an earlier mutation truncated the file
        return mut_bitflip(m)
    remaining = len(m.data) - pos - 4
    m.put("I", pos, m.rng.choice(U32_INTERESTING + (remaining // 4 + 1, remaining + 1, remaining // 4,
                                                    _u32(bytes(m.data), pos) + 1)))
    return None


def mut_offset(m: Mutable) -> None:
    """Aim a uoffset at itself, at its own or an enclosing table (a cycle), at its vtable, or past EOF."""
    if not m.fm.offsets:
        return mut_bitflip(m)
    pos, parent = m.rng.choice(m.fm.offsets)
    tables = [t[0] for t in m.fm.tables]
    r = m.rng.random()
    if r < 0.25:
        target = pos  # uoffset 0: points at itself
    elif r < 0.5 and parent >= 0:
        target = parent  # back to the table holding it: a cycle
    elif r < 0.7:
        target = m.rng.choice(tables)  # any table, often an ancestor
    elif r < 0.8:
        target = m.rng.choice(m.fm.vtables)
    else:
        target = pos + m.rng.choice(U32_INTERESTING)
    m.put("I", pos, (target - pos) % (1 << 32))
    return None


def mut_vtable(m: Mutable) -> None:
    table_pos, _, _ = m.rng.choice(m.fm.tables)
    r = m.rng.random()
    if r < 0.3:
        m.put("i", table_pos, m.rng.choice((0, 1, -1, 4, 2**31 - 1, -(2**31), -4, table_pos, table_pos + 2)))
    else:
        vt = table_pos - struct.unpack_from("<i", m.data, table_pos)[0] if table_pos + 4 <= len(m.data) else -1
        if 0 <= vt and vt + 4 <= len(m.data):
            what = m.rng.randrange(3)
            if what == 0:
                m.put("H", vt, m.rng.choice((0, 1, 2, 3, 5, 0xFFFF, 0xFFFE, 200)))
            elif what == 1:
                m.put("H", vt + 2, m.rng.choice((0, 1, 3, 0xFFFF, 4)))
            else:
                n = min(struct.unpack_from("<H", m.data, vt)[0], 64)
                slot = m.rng.randrange(max((n - 4) // 2, 1))
                m.put("H", vt + 4 + 2 * slot, m.rng.choice((0, 1, 2, 3, 0xFFFF, 0xFFFC, 4)))


def mut_float(m: Mutable) -> None:
    kinds = [k for k in ("scale", "minmax") if m.fm.floats.get(k)] + (["zero_point"] if m.fm.longs else [])
    if not kinds:
        return mut_bitflip(m)
    kind = m.rng.choice(kinds)
    if kind == "zero_point":
        pos = m.rng.choice(m.fm.longs["zero_point"])
        m.put("q", pos, m.rng.choice((2**63 - 1, -(2**63), 128, -129, 1 << 40, -1)))
    else:
        pos = m.rng.choice(m.fm.floats[kind])
        m.put("f", pos, m.rng.choice((float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 3.4e38, 1e-45,
                                      1e-12)))
    return None


def mut_splice(m: Mutable) -> None:
    """Copy a region of another model (or of this one) over, or into, this one."""
    donor = m.rng.choice(m.donors) if m.donors else bytes(m.data)
    if len(donor) < 8 or len(m.data) < 8:
        return mut_bitflip(m)
    n = m.rng.randint(4, min(512, len(donor)))
    src = m.rng.randrange(len(donor) - n + 1)
    dst = m.rng.randrange(len(m.data))
    chunk = donor[src:src + n]
    if m.rng.random() < 0.6:
        m.data[dst:dst + n] = chunk  # overwrite (may extend the file)
    else:
        m.data[dst:dst] = chunk  # insert: every later offset is shifted
    return None


def mut_insert_delete(m: Mutable) -> None:
    pos = m.rng.randrange(len(m.data))
    n = m.rng.choice((1, 2, 3, 4, 8, 16, 100))
    if m.rng.random() < 0.5:
        del m.data[pos:pos + n]
    else:
        m.data[pos:pos] = bytes(m.rng.randrange(256) for _ in range(n))


def mut_magic(m: Mutable) -> None:
    r = m.rng.random()
    if r < 0.4:
        m.data[4:8] = m.rng.choice((b"TFL2", b"TFL4", b"tfl3", b"\0\0\0\0", b"ONNX", b"TFL3"[::-1]))
    elif r < 0.6:
        m.data[0:0] = struct.pack("<I", len(m.data))  # size-prefixed flatbuffer
    elif r < 0.8:
        m.data[0:4] = m.rng.choice((b"PK\x03\x04", b"\x89HDF", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff"))
    else:
        m.put("I", 0, m.rng.choice((0, 4, 8, len(m.data), len(m.data) - 4, 0xFFFFFFFF, 2**31)))


MUTATORS: dict[str, Callable[[Mutable], None]] = {
    "bitflip": mut_bitflip,
    "bytes": mut_bytes,
    "truncate": mut_truncate,
    "shape": mut_shape,
    "index": mut_index,
    "vector_length": mut_vector_length,
    "offset": mut_offset,
    "vtable": mut_vtable,
    "float": mut_float,
    "splice": mut_splice,
    "insert_delete": mut_insert_delete,
    "magic": mut_magic,
}
# structure-aware mutations are favoured: they reach past the header checks
_WEIGHTS = {"bitflip": 3, "bytes": 2, "truncate": 1, "shape": 4, "index": 5, "vector_length": 3, "offset": 3,
            "vtable": 2, "float": 2, "splice": 2, "insert_delete": 1, "magic": 1}


def _special(rng: random.Random, base: bytes) -> tuple[bytes, str]:
    """Whole-file oddities: empty, tiny, zeros, random bytes, a doubled model."""
    kind = rng.randrange(6)
    if kind == 0:
        return b"", "empty"
    if kind == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 15))), "tiny"
    if kind == 2:
        return bytes(rng.choice((16, 64, 4096))), "zeros"
    if kind == 3:
        return bytes(rng.randrange(256) for _ in range(rng.choice((16, 100, 2000)))), "random"
    if kind == 4:
        return base + base, "doubled"
    return base[:8] + bytes(len(base) - 8), "header_only"


@dataclass(frozen=True)
class Base:
    name: str
    data: bytes
    fm: FieldMap


def make_bases(models: dict[str, bytes]) -> list[Base]:
    return [Base(name, data, field_map(data)) for name, data in models.items()]


def factory_models() -> dict[str, bytes]:
    """The flatbuffer-built models of tests/tflite_factory.py (no TensorFlow)."""
    import tflite_factory as factory

    return {
        "int8_cnn": factory.int8_cnn(),
        "int8_cnn_fc": factory.int8_cnn(1, fc_units=6),
        "dynamic_range_fc": factory.dynamic_range_fc(),
        "custom_op": factory.custom_op_model(),
        "float16_fc": factory.float16_fc(),
        "dynamic_range_conv": factory.dynamic_range_conv(),
    }


def model_case(bases: list[Base], seed: int, index: int) -> tuple[str, str, bytes]:
    """Case ``index`` of run ``seed``: (base name, mutations applied, bytes)."""
    rng = random.Random(f"model:{seed}:{index}")
    base = bases[index % len(bases)]
    if rng.random() < 0.02:
        data, what = _special(rng, base.data)
        return base.name, what, data
    m = Mutable(bytearray(base.data), base.fm, rng, [b.data for b in bases if b is not base])
    names = list(_WEIGHTS)
    weights = [_WEIGHTS[n] for n in names]
    for name in rng.choices(names, weights, k=rng.choice((1, 1, 1, 2, 3))):
        if len(m.data) < 8:
            break
        MUTATORS[name](m)
        m.ops.append(name)
    return base.name, "+".join(m.ops) or "none", bytes(m.data)


# -------------------------------------------------------------------------------------------------
# Spec mutations
# -------------------------------------------------------------------------------------------------

SPEC_TFLITE = """\
version: 1
name: fuzz_audit
description: a spec whose model is a .tflite file
model:
  tflite: model.tflite
board: stm32f405
constraints:
  max_size: 50KiB
  io_dtype: int8
  ops: tflm
  arena: board
  flash: board
  max_latency: 1ms
  firmware: {samples: 4}
"""

_VALUES = ("[]", "{}", "null", "~", "-1", "0", "1e308", "1e999", "-1e999", ".nan", ".inf", "-.inf",
           "99999999999999999999999999999999999999", "0x7fffffff", "0o777", "-5KiB", "50 GiB", "1e-300ms",
           "9999999999999TiB", "12.5.3", "'50KiB'", '"\\u202e50KiB"', "é✓💥", "yes", "no", "2001-12-14",
           "!!binary AAAA", "!!python/object/apply:os.system ['echo pwned']", "!!python/name:os.system",
           "!!set {a, b}", "!!omap [a: 1]", "*undefined", "&a [*a]", "? complex key", "|\n  block\n  text",
           ">-\n  folded", "'unterminated", '"bad \\x escape"', "[1, [2, [3, [4]]]]", "{a: {b: {c: {}}}}",
           "!!float 1", "!!int x", "!!str", "- a\n- b", "'%'", "100%", "150%", "-3%", "0.5pt", "1ms 2ms",
           "\t", "''", "x" * 5000)
_CHARS = ":-[]{}&*!|>'\"%@`#,?\t\n \\\x00\x7f\u00e9\u202e\ud7ff\U0001f4a5\ufeff0123456789"


def _deep(n: int, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return "version: 1\nname: deep\nmodel: " + "[" * n + "]" * n + "\n"
    text = "version: 1\nname: deep\nmodel:\n"
    for i in range(min(n, 400)):
        text += "  " * (i + 1) + "a:\n"
    return text + "  " * (min(n, 400) + 1) + "b: 1\n"


def _alias_bomb(levels: int) -> str:
    lines = ["version: 1", "name: bomb", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        refs = ", ".join(f"*a{i - 1}" for _ in range(9))
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append(f"model: {{tflite: *a{levels - 1}}}")
    return "\n".join(lines) + "\n"


def _special_spec(rng: random.Random) -> bytes:
    kind = rng.randrange(12)
    if kind == 0:
        return _deep(rng.choice((50, 1000, 5000, 20000)), rng).encode()
    if kind == 1:
        return _alias_bomb(rng.choice((3, 6, 9, 12))).encode()
    if kind == 2:
        return b"version: 1\nname: rec\nmodel: &m {tflite: x.tflite, args: *m}\nrec: &r [*r]\n"
    if kind == 3:
        return bytes(rng.randrange(256) for _ in range(rng.choice((10, 300, 3000))))
    if kind == 4:
        return b"\xef\xbb\xbf" + SPEC_TFLITE.encode()  # BOM
    if kind == 5:
        return SPEC_TFLITE.encode().replace(b"\n", b"\r\n")
    if kind == 6:
        return SPEC_TFLITE.encode() + b"---\n" + SPEC_TFLITE.encode()  # two documents
    if kind == 7:
        return b"# only a comment\n" if rng.random() < 0.5 else b""
    if kind == 8:
        return ("version: 1\nname: many\n" + "".join(f"k{i}: {i}\n" for i in range(30000))).encode()
    if kind == 9:
        return b"version: 1\nname: big\ndescription: " + b"x" * (1024 * 1024 + 10) + b"\n"
    if kind == 10:
        return SPEC_TFLITE.encode()[:-20] + b"\xff\xfe\xc0\x80"  # invalid UTF-8
    return ("version: 1\nname: " + "\U0001f4a5" * 300 + "\nmodel: {tflite: m\u00e9\u202e.tflite}\n").encode()


def spec_case(bases: list[str], seed: int, index: int) -> tuple[str, bytes]:
    """Spec case ``index``: (mutations applied, YAML bytes)."""
    rng = random.Random(f"spec:{seed}:{index}")
    if rng.random() < 0.1:
        data = _special_spec(rng)
        return "special", data
    text = bases[index % len(bases)]
    ops = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        lines = text.split("\n")
        r = rng.random()
        if r < 0.45:  # replace a value
            candidates = [i for i, line in enumerate(lines) if ":" in line]
            if candidates:
                i = rng.choice(candidates)
                key, _, _ = lines[i].partition(":")
                lines[i] = f"{key}: {rng.choice(_VALUES)}"
            ops.append("value")
        elif r < 0.6:  # line edits
            if lines:
                i = rng.randrange(len(lines))
                what = rng.randrange(4)
                if what == 0:
                    del lines[i]
                elif what == 1:
                    lines.insert(i, lines[i])
                elif what == 2:
                    lines[i] = " " * rng.choice((1, 3, 8)) + lines[i]
                else:
                    j = rng.randrange(len(lines))
                    lines[i], lines[j] = lines[j], lines[i]
            ops.append("line")
        elif r < 0.8:  # characters
            chars = list("\n".join(lines))
            for _ in range(rng.randint(1, 6)):
                pos = rng.randrange(len(chars) + 1)
                c = rng.choice(_CHARS)
                if rng.random() < 0.4 and chars:
                    del chars[min(pos, len(chars) - 1)]
                elif rng.random() < 0.5:
                    chars.insert(pos, c)
                elif pos < len(chars):
                    chars[pos] = c
            lines = "".join(chars).split("\n")
            ops.append("chars")
        else:  # add a key with a hostile value, at top level or nested
            indent = rng.choice(("", "  "))
            lines.insert(rng.randrange(len(lines) + 1),
                         f"{indent}{rng.choice(('extra', 'version', 'model', 'constraints', 'board', 'maxsize'))}: "
                         f"{rng.choice(_VALUES)}")
            ops.append("key")
        text = "\n".join(lines)
    return "+".join(ops), text.encode("utf-8", errors="surrogatepass")


# -------------------------------------------------------------------------------------------------
# Crafted amplification files (issue 13): valid flatbuffers whose tables are shared many times over
# -------------------------------------------------------------------------------------------------


def shared_tensor_model(refs: int, name_len: int, *, shared_subgraph: int = 1) -> bytes:
    """A TFLite flatbuffer whose subgraph's tensors vector holds ``refs`` offsets to ONE tensor table
    with a ``name_len``-byte name (and, with ``shared_subgraph`` > 1, whose subgraphs vector holds that
    many offsets to one subgraph). The file is about ``4 * refs + name_len`` bytes; a parser without a
    budget decodes ``refs * name_len`` bytes (x ``shared_subgraph``)."""
    import flatbuffers

    b = flatbuffers.Builder(4 * refs + name_len + 1024)
    b.StartObject(3)
    empty_buffer = b.EndObject()
    name = b.CreateString("N" * name_len)
    b.StartVector(4, 2, 4)
    b.PrependInt32(4)
    b.PrependInt32(1)
    shape = b.EndVector()
    b.StartObject(8)
    b.PrependUOffsetTRelativeSlot(0, shape, 0)
    b.PrependInt8Slot(1, 9, 0)  # INT8
    b.PrependUOffsetTRelativeSlot(3, name, 0)
    tensor = b.EndObject()
    b.StartVector(4, refs, 4)
    for _ in range(refs):
        b.PrependUOffsetTRelative(tensor)
    tensors = b.EndVector()
    io = []
    for _ in range(2):
        b.StartVector(4, 1, 4)
        b.PrependInt32(0)
        io.append(b.EndVector())
    b.StartObject(5)
    b.PrependUOffsetTRelativeSlot(0, tensors, 0)
    b.PrependUOffsetTRelativeSlot(1, io[0], 0)
    b.PrependUOffsetTRelativeSlot(2, io[1], 0)
    subgraph = b.EndObject()
    b.StartVector(4, shared_subgraph, 4)
    for _ in range(shared_subgraph):
        b.PrependUOffsetTRelative(subgraph)
    subgraphs = b.EndVector()
    b.StartVector(4, 1, 4)
    b.PrependUOffsetTRelative(empty_buffer)
    buffers = b.EndVector()
    b.StartObject(8)
    b.PrependUint32Slot(0, 3, 0)
    b.PrependUOffsetTRelativeSlot(2, subgraphs, 0)
    b.PrependUOffsetTRelativeSlot(4, buffers, 0)
    model = b.EndObject()
    b.Finish(model, file_identifier=b"TFL3")
    return bytes(b.Output())
