"""Guest-host protocol v1 (firmware/app/harness.h), the same for every emulator: the host writes an input
block (model + samples, CRC-checked by the firmware) into the board's flash after the firmware image; the
firmware answers on the board's UART with CRC-framed ``TM:`` lines and ends with ``TM:END``. This module
packs the block and decodes and checks the UART stream; it runs nothing.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_tinyml.emulate.errors import FirmwareError

if TYPE_CHECKING:
    from pytest_tinyml.emulate.runner import EmulatorRun

DTYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "float32": np.float32}
_KV = re.compile(r"(\w+)=(\S+)")


def io_specs(info: Any) -> tuple[list[Any], list[Any]]:
    return list(info.inputs), list(info.outputs)


def pack_inputs(inputs: list[Any], specs: list[Any]) -> bytes:
    chunks = []
    for n, sample in enumerate(inputs):
        arrays = list(sample) if isinstance(sample, (tuple, list)) else [sample]
        if len(arrays) != len(specs):
            raise ValueError(f"sample {n}: model has {len(specs)} inputs, got {len(arrays)} arrays")
        for spec, arr in zip(specs, arrays, strict=True):
            want = DTYPES.get(spec.dtype)
            a = np.asarray(arr)
            if want is None:
                raise ValueError(f"input tensor type {spec.dtype} is not supported by the firmware harness")
            if a.dtype != want:
                raise ValueError(f"sample {n}: input dtype {a.dtype}, model input {spec.name!r} wants {spec.dtype}")
            if a.size != int(np.prod(spec.shape)):
                raise ValueError(f"sample {n}: input has {a.size} elements, model input {spec.name!r} has shape {spec.shape}")
            chunks.append(np.ascontiguousarray(a).tobytes())
    return b"".join(chunks)


INPUT_MAGIC = 0x42494D54  # "TMIB"
INPUT_VERSION = 1
HEADER_BYTES = 64
_LINE = re.compile(rb"^(TM:[^\r\n]*) \*([0-9a-f]{8})$")
_HEXDATA = re.compile(r"^[0-9a-f]*$")


def input_block(model: bytes, samples: bytes, count: int, sample_bytes: int) -> bytes:
    """The input block the emulator writes into guest memory (layout: firmware/app/harness.h)."""
    model_off = HEADER_BYTES
    samples_off = model_off + ((len(model) + 15) & ~15)
    total = samples_off + len(samples)
    payload = model + bytes(samples_off - model_off - len(model)) + samples
    fields = [INPUT_MAGIC, INPUT_VERSION, HEADER_BYTES, total, model_off, len(model), samples_off, count,
              sample_bytes, zlib.crc32(payload), 0, 0, 0, 0, 0]
    head = b"".join(int(v).to_bytes(4, "little") for v in fields)
    return head + zlib.crc32(head).to_bytes(4, "little") + payload


@dataclass
class Protocol:
    tags: dict[str, dict[str, str]]
    data: bytes
    log: list[str]
    ended: bool


def parse_uart(raw: bytes, max_data: int) -> Protocol:
    """Decode the firmware's UART stream. Every ``TM:`` line must carry a valid CRC-32; output bytes are
    bounded by ``max_data``; free text (e.g. TFLM's log) is kept, at most 200 lines."""
    tags: dict[str, dict[str, str]] = {}
    data = bytearray()
    log: list[str] = []
    ended = False
    for n, line in enumerate(raw.split(b"\n")):
        line = line.rstrip(b"\r")
        if not line.startswith(b"TM:"):
            if line.strip():
                log.append(line[:300].decode("latin-1"))
                del log[:-200]
            continue
        m = _LINE.match(line)
        if m is None or zlib.crc32(m.group(1)) != int(m.group(2), 16):
            raise FirmwareError(
                f"UART line {n + 1} is garbled (no valid CRC-32): {line[:80].decode('latin-1')!r}",
                stage="protocol", output=log[-20:],
                fix="the firmware's output was corrupted; rerun, and report it if it repeats",
            )
        text = m.group(1)[3:].decode("latin-1")
        tag, _, rest = text.partition(" ")
        if tag == "D":
            if not _HEXDATA.match(rest) or len(rest) % 2:
                raise FirmwareError(f"UART line {n + 1}: bad output data", stage="protocol", output=log[-20:])
            if len(data) + len(rest) // 2 > max_data:
                raise FirmwareError(f"the firmware sent more than the expected {max_data} output bytes",
                                    stage="protocol", output=log[-20:])
            data += bytes.fromhex(rest)
            continue
        msg = ""
        if " msg=" in rest:
            rest, _, msg = rest.partition(" msg=")
        values = dict(_KV.findall(rest))
        if msg:
            values["msg"] = msg
        if tag == "FAULT":
            values["msg"] = rest
        log.append(text)
        del log[:-200]
        tags.setdefault(tag, values)  # the first of each tag counts
        if tag == "END":
            ended = True
            break
    if ended:
        end = tags["END"]
        if int(end.get("out_bytes", "-1")) != len(data) or int(end.get("out_crc", "0"), 16) != zlib.crc32(data):
            raise FirmwareError("the output bytes received do not match the firmware's count/CRC-32",
                                stage="protocol", output=log[-20:])
    return Protocol(tags, bytes(data), log, ended)




def raise_reported(proto: Protocol, run: EmulatorRun, log: list[str]) -> None:
    """Raise the FirmwareError the firmware reported (error, fault, TFLM abort), or the one its output implies
    (no end marker, no result)."""
    tags = proto.tags
    if "ERROR" in tags:
        e = tags["ERROR"]
        stage = e.get("stage", "emulate")
        op = e.get("opname", "-")
        where = f"op {e.get('op')} ({op})" if op != "-" else None
        raise FirmwareError(e.get("msg", "firmware reported an error"), stage=stage, output=log[-20:], where=where)
    if "FAULT" in tags:
        raise FirmwareError(f"CPU fault: {tags['FAULT'].get('msg', '')}", stage="invoke", output=log[-20:])
    if not proto.ended and any(line.strip() in ("HALTED",) for line in proto.log):
        raise FirmwareError(
            "the firmware aborted (TFLM's TFLITE_ABORT printed HALTED) before its end marker", stage="invoke",
            output=log[-20:], fix="see the TFLM log lines above; report the model if TFLM should run it",
        )
    if not proto.ended:
        tail = (log + run.stderr)[-20:]
        raise FirmwareError(
            f"the emulator stopped (exit code {run.returncode}) before the firmware's end marker", stage="emulate",
            output=tail,
        )
    if "RESULT" not in tags:
        raise FirmwareError(f"the firmware ended (status {tags['END'].get('status')}) without a result",
                            stage="emulate", output=log[-20:])


def split_outputs(raw: bytes, specs: list[Any], samples: int, lines: list[str]) -> list[tuple[np.ndarray, ...]]:
    dtypes = [np.dtype(DTYPES.get(s.dtype, np.int8)) for s in specs]
    sizes = [int(np.prod(s.shape)) * d.itemsize for s, d in zip(specs, dtypes, strict=True)]
    per_sample = sum(sizes)
    if len(raw) != per_sample * samples:
        raise FirmwareError(
            f"output file has {len(raw)} bytes, expected {samples} x {per_sample}", stage="io", output=lines[-20:]
        )
    result = []
    pos = 0
    for _ in range(samples):
        outs = []
        for spec, dt, size in zip(specs, dtypes, sizes, strict=True):
            outs.append(np.frombuffer(raw[pos : pos + size], dtype=dt).reshape(tuple(spec.shape)).copy())
            pos += size
        result.append(tuple(outs))
    return result
