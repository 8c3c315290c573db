"""Seeded hostile-input classes of issue 13, each case with the outcome it must have (bench/bench_fuzz.py).

Classes (``hostile_case(seed, index)`` -> :class:`HostileCase`, reproducible from its numbers):

- ``shared_tables``: a valid flatbuffer whose tensor table (with a long name) is referenced many times,
  optionally from a subgraph that is itself referenced many times; over the parser's budget it must be
  refused with one line, well under it it must parse;
- ``huge_constant``: an int8 FULLY_CONNECTED with 1.2-24 MiB of weights (over the default board's
  1 MiB flash), or a sparse file over the 64 MiB read bound: ``size`` and ``flash`` must fail and no
  firmware may be built (the firmware items skip), or the file is refused unread;
- ``overflow_shape``: an activation whose byte size reaches 2**32, or exceeds the board's RAM, in
  int8 / int16 / float32: ``arena`` must fail naming it;
- ``hostile_name``: custom op and tensor names made of NUL, newlines, ``*/``, ``??/``, backslashes,
  quotes, ``system(...)`` and long runs: the export must compile, run nothing, and every name must be
  clipped;
- ``hostile_baseline``: a report.json with a NaN / infinite / 5,000-digit / wrongly typed metric, deep
  nesting, a missing or unknown field (refused), no or renamed targets (a regression), or untouched
  (accepted, no regression);
- ``hostile_cache``: a run-cache ``result.json`` rewritten with garbage, deep nesting, non-finite or
  wrongly typed values: loading it must not raise.

:func:`run_case` classifies: ``ok:<class>:<what>`` or ``BUG:crash`` / ``BUG:silent_pass`` /
``BUG:hang`` / ``BUG:compile`` / ``BUG:injection``.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ("shared_tables", "huge_constant", "overflow_shape", "hostile_name", "hostile_baseline", "hostile_cache")


@dataclass
class HostileCase:
    cls: str
    what: str
    data: bytes  # the .tflite / report.json / result.json bytes (empty for sparse files)
    expect: str  # "refused", "parsed", "either", "flash_fail", "too_big", "arena_fail", "inert", "regression", "ok",
    params: dict[str, Any]


# --------------------------------------------------------------------------------------------------
# generators
# --------------------------------------------------------------------------------------------------


def _fc(rows: int, units: int, features: int, dtype: int, *, weights: bool = True, name: str = "out") -> bytes:
    import tflite_factory as factory

    g = factory.Graph()
    q = {"scale": (0.05,), "zero_point": (0,)} if dtype != factory.FLOAT32 else {}
    x = g.add(factory.Tensor("input", (rows, features), dtype, **q))  # type: ignore[arg-type]
    w_dtype = dtype if dtype != 7 else factory.INT8
    w = g.const("weights", np.ones((units, features), dtype=np.int8 if w_dtype == factory.INT8 else np.float32),
                w_dtype, **q)  # type: ignore[arg-type]
    y = g.add(factory.Tensor(name, (rows, units), dtype, **q))  # type: ignore[arg-type]
    g.ops.append(factory.Op(factory.OP["FULLY_CONNECTED"], [x, w], [y], factory.OPTION_TYPES["FullyConnectedOptions"]))
    g.inputs, g.outputs = [x], [y]
    return g.build()


_NAME_PIECES = ["\0", "\n", "\r", "\r\n", "*/", "/*", "//", "??/", "??=", "\\", "\\\n", '"', "'", "`",
                'system("touch {marker}");', "#include <stdlib.h>", "\u2028", "\u202e", "é", "\t", " ", "}", "{",
                "int main(){}", "#define X", "SignalFftAutoScale"]


def _hostile_name(rng: random.Random) -> str:
    parts = [rng.choice(_NAME_PIECES) for _ in range(rng.randint(1, 12))]
    if rng.random() < 0.15:
        parts.append("A" * rng.choice((300, 5000, 100_000)))
    return "".join(parts) or "x"


def _valid_report(labels: list[str]) -> dict[str, Any]:
    def target(label: str) -> dict[str, Any]:
        return {
            "label": label, "kind": "model", "spec": None, "spec_name": None, "mode": None, "board": "nrf52840",
            "model_path": label, "sha256": None, "size_bytes": 2928, "items": [],
            "metrics": {"size_bytes": 2928, "flash_bytes": 24000, "arena_bytes": 900, "accuracy_pct": None,
                        "accuracy_drop_pt": None, "latency_seconds": 0.001},
            "regression_thresholds": {"size_bytes": 0}, "model": None, "arena": None, "flash": None,
            "accuracy": None, "notes": [], "baseline": None,
        }

    return {"schema": "pytest-tinyml/report", "version": 1, "generated": "2026-01-01T00:00:00Z",
            "tool": {"name": "pytest-tinyml", "version": "0"},
            "summary": {"targets": len(labels), "passed": 0, "failed": 0, "skipped": 0, "error": 0},
            "targets": [target(label) for label in labels], "baseline": None}


_BASELINE_MUTATIONS = ("nan", "infinity", "neg_infinity", "1e999", "huge_int", "wrong_type", "deep", "missing_field",
                       "unknown_field", "empty_targets", "renamed", "control", "not_object", "bool_metric")


def _baseline_case(rng: random.Random) -> tuple[str, bytes, str]:
    what = rng.choice(_BASELINE_MUTATIONS)
    doc = _valid_report(["m.tflite"])
    metric = rng.choice(["size_bytes", "arena_bytes", "flash_bytes", "latency_seconds"])
    token = None
    expect = "refused"
    if what in ("nan", "infinity", "neg_infinity", "1e999", "huge_int"):
        token = {"nan": "NaN", "infinity": "Infinity", "neg_infinity": "-Infinity", "1e999": "1e999",
                 "huge_int": "9" * rng.choice((31, 5000, 100_000))}[what]
        doc["targets"][0]["metrics"][metric] = 123456789
    elif what == "wrong_type":
        doc["targets"][0]["metrics"][metric] = rng.choice(["small", [], {}, "NaN"])
    elif what == "bool_metric":
        doc["targets"][0]["metrics"][metric] = True
    elif what == "deep":
        depth = rng.choice((70, 1000, 200_000))
        text = json.dumps(doc).replace('"notes": []', '"notes": ' + "[" * depth + "]" * depth)
        return what, text.encode(), "refused"
    elif what == "missing_field":
        del doc["targets"][0][rng.choice(["metrics", "kind", "items"])]
    elif what == "unknown_field":
        doc["targets"][0]["metrics_extra"] = 1
    elif what == "empty_targets":
        doc["targets"] = []
        doc["summary"]["targets"] = 0
        expect = "regression"
    elif what == "renamed":
        doc = _valid_report(["m_renamed.tflite"])
        expect = "regression"
    elif what == "not_object":
        return what, json.dumps([doc]).encode(), "refused"
    else:
        expect = "ok"
    text = json.dumps(doc)
    if token is not None:
        text = text.replace("123456789", token)
    return what, text.encode(), expect


_CACHE_MUTATIONS = ("garbage", "deep", "nan", "wrong_type", "list", "huge_int", "missing", "empty", "utf8")


def _cache_case(rng: random.Random) -> tuple[str, bytes]:
    what = rng.choice(_CACHE_MUTATIONS)
    base: dict[str, Any] = {"arena_bytes": 1000, "stack_bytes": 100, "static_ram_bytes": 100, "text_bytes": 1,
                            "rodata_bytes": 1, "flash_bytes": 1, "instructions_per_inference": 10.0,
                            "machine": "mps2-an386", "core": "cortex-m4", "emulator": "qemu", "samples": 1,
                            "activation_bytes": 1, "persistent_bytes": 1, "model_bytes": 1, "instructions_min": 1,
                            "instructions_max": 1, "calibration_instructions": 1, "clock_hz": 1, "emulate_seconds": 1.0,
                            "seconds": 1.0, "elf_path": "/nonexistent/app.elf", "count": 1}
    if what == "garbage":
        return what, bytes(rng.randrange(256) for _ in range(rng.choice((1, 50, 3000))))
    if what == "deep":
        depth = rng.choice((1000, 200_000))
        return what, ("[" * depth + "]" * depth).encode()
    if what == "nan":
        base[rng.choice(list(base))] = float("nan")
        return what, json.dumps(base).encode()
    if what == "wrong_type":
        base[rng.choice(list(base))] = rng.choice(["x", [], {}, None, True])
        return what, json.dumps(base).encode()
    if what == "list":
        return what, b"[1, 2, 3]"
    if what == "huge_int":
        return what, json.dumps(base).replace("1000", "9" * 5000).encode()
    if what == "missing":
        del base[rng.choice(list(base))]
        return what, json.dumps(base).encode()
    if what == "utf8":
        return what, b"\xff\xfe{" + json.dumps(base).encode()
    return what, b""


def hostile_case(seed: int, index: int) -> HostileCase:
    rng = random.Random(f"hostile:{seed}:{index}")
    cls = CLASSES[index % len(CLASSES)]
    if cls == "shared_tables":
        import fuzz_mutate as fm

        from pytest_tinyml.analysis import _fb

        refs = rng.choice((4, 50, 500, 5_000, 20_000))
        name_len = rng.choice((1, 40, 1_000, 50_000, 300_000))
        sg = rng.choice((1, 1, 1, 4, 50, 2_000))
        data = fm.shared_tensor_model(refs, name_len, shared_subgraph=sg)
        decode = refs * sg * name_len
        visits = refs * sg
        budget = _fb.DECODE_FACTOR * len(data) + _fb.DECODE_SLACK
        tables = len(data) // _fb.TABLE_BYTES + _fb.TABLE_SLACK
        if decode > budget or visits > tables:
            expect = "refused"
        elif decode < budget // 2 and visits < tables // 2:
            expect = "parsed"
        else:
            expect = "either"
        return HostileCase(cls, f"refs={refs} name={name_len} subgraphs={sg}", data, expect,
                           {"refs": refs, "name_len": name_len, "sg": sg})
    if cls == "huge_constant":
        if rng.random() < 0.15:
            return HostileCase(cls, "sparse 65-600 MiB file", b"", "too_big",
                               {"sparse": rng.choice((65, 200, 600)) << 20})
        mib = rng.choice((1.2, 2, 5, 24))
        features = 1024
        units = int(mib * (1 << 20)) // features
        return HostileCase(cls, f"{mib} MiB weights", _fc(1, units, features, 9), "flash_fail", {"mib": mib})
    if cls == "overflow_shape":
        dtype, size = rng.choice(((9, 1), (7, 2), (0, 4)))  # int8, int16, float32
        if rng.random() < 0.7:
            total = (1 << 32) // size + rng.choice((0, 1, 1 << 20, 1 << 30))
            why = "overflows"
        else:
            total = rng.choice((300_000, 2_000_000, 100_000_000)) // size
            why = "larger than the RAM limit"
        units = rng.choice((16, 4096, 65536))  # the weights stay units x 1 (at most 64 Ki elements)
        rows = max(1, -(-total // units))  # < 2**31: every dimension fits the schema's int32
        data = _fc(rows, units, 1, dtype)
        return HostileCase(cls, f"{rows}x{units} dtype {dtype}", data, "arena_fail", {"why": why})
    # (every generator above keeps its own memory to a few tens of MB: the huge sizes are only claimed)
    if cls == "hostile_name":
        import tflite_factory as factory

        g = factory.Graph()
        prev = g.add(factory.Tensor(_hostile_name(rng), (1, 4), factory.FLOAT32))
        names = []
        for _ in range(rng.randint(1, 4)):
            name = _hostile_name(rng)
            names.append(name)
            nxt = g.add(factory.Tensor(_hostile_name(rng), (1, 4), factory.FLOAT32))
            g.ops.append(factory.Op(name, [prev], [nxt]))
            prev = nxt
        g.inputs, g.outputs = [0], [prev]
        g.description = _hostile_name(rng)
        return HostileCase(cls, f"{len(names)} hostile op names", g.build(), "inert", {})
    if cls == "hostile_baseline":
        what, data, expect = _baseline_case(rng)
        return HostileCase(cls, what, data, expect, {})
    what, data = _cache_case(rng)
    return HostileCase(cls, what, data, "ok", {})


# --------------------------------------------------------------------------------------------------
# running one case
# --------------------------------------------------------------------------------------------------

FAKE_RESOLVER_H = """#pragma once
typedef int TfLiteStatus;
enum { kTfLiteOk = 0 };
#define TF_LITE_ENSURE_STATUS(x) do { if ((x) != kTfLiteOk) return (x); } while (0)
namespace tflite { template <unsigned N> struct MicroMutableOpResolver {}; }
"""  # FAKE TFLM header: only what tinyml_op_resolver.h uses, so the host compiler can check the export

PROGRAM = """#include "tinyml_arena.h"
#include "tinyml_op_resolver.h"
#include "model_data.h"
int main() { TinyMLOpResolver r; return RegisterTinyMLOps(r) + (g_model_len == 0) + (TINYML_ARENA_SIZE == 0); }
"""


def _bug(kind: str, detail: str) -> tuple[str, str]:
    return f"BUG:{kind}", detail


def run_case(case: HostileCase, work: Path, *, compile_c: bool) -> tuple[str, str]:
    """Run one case; returns (kind, detail)."""
    try:
        return _RUNNERS[case.cls](case, work, compile_c)
    except Exception as exc:  # noqa: BLE001  (the point: nothing may escape)
        return _bug("crash", "".join(traceback.format_exception(exc))[-2000:])


def _one_line_ok(text: str) -> bool:
    return "\n" not in text and 0 < len(text) < 2000


def _run_shared(case: HostileCase, work: Path, _: bool) -> tuple[str, str]:
    from pytest_tinyml.analysis.model import parse_model
    from pytest_tinyml.errors import ModelFileError

    try:
        info = parse_model(case.data, "shared.tflite")
    except ModelFileError as exc:
        if not _one_line_ok(str(exc)):
            return _bug("multiline", str(exc)[:500])
        if case.expect == "parsed":
            return _bug("false_refusal", f"{case.what}: {exc}")
        return "ok:shared_tables:refused", ""
    if case.expect == "refused":
        return _bug("silent_pass", f"{case.what}: parsed {len(info.tensors)} tensors over the budget")
    return "ok:shared_tables:parsed", ""


def _measure(path: Path, work: Path) -> Any:
    import fuzz_harness as fh

    return fh.measurements_for(path, work / "cache")


def _evaluate(m: Any, names: tuple[str, ...]) -> dict[str, str]:
    import fuzz_harness as fh

    from pytest_tinyml.errors import NotEvaluable

    if not fh._CHECKS:
        fh._CHECKS.update(fh._checks())
    out = {}
    for name in names:
        try:
            verdict = fh._CHECKS[name].evaluate(m)
            out[name] = ("pass" if verdict.passed else "fail") + ":" + verdict.message[:300]
        except NotEvaluable as exc:
            out[name] = "skip:" + exc.reason[:300]
    return out


def _run_huge(case: HostileCase, work: Path, _: bool) -> tuple[str, str]:
    from pytest_tinyml.errors import ModelFileError

    path = work / "huge.tflite"
    if case.expect == "too_big":
        with open(path, "wb") as fh_:
            fh_.truncate(case.params["sparse"])
        try:
            m = _measure(path, work)
            m.model_info  # noqa: B018
        except ModelFileError as exc:
            return ("ok:huge_constant:refused_unread", "") if _one_line_ok(str(exc)) else _bug("multiline", str(exc))
        finally:
            path.unlink()
        return _bug("silent_pass", f"{case.params['sparse']:,}-byte file was read")
    path.write_bytes(case.data)
    m = _measure(path, work)
    res = _evaluate(m, ("size", "flash", "firmware_ram", "firmware_bitexact"))
    if not res["size"].startswith("fail") or not res["flash"].startswith("fail"):
        return _bug("silent_pass", f"{case.what}: {res}")
    for name in ("firmware_ram", "firmware_bitexact"):
        if not res[name].startswith("skip") or "no firmware was built" not in res[name]:
            return _bug("firmware_built", f"{case.what}: {name} {res[name]}")
    if (work / "cache" / "firmware").exists():
        return _bug("firmware_built", f"{case.what}: a firmware build directory appeared")
    return "ok:huge_constant:flash_fail_no_build", ""


def _run_overflow(case: HostileCase, work: Path, _: bool) -> tuple[str, str]:
    path = work / "overflow.tflite"
    path.write_bytes(case.data)
    m = _measure(path, work)
    res = _evaluate(m, ("arena",))["arena"]
    if not res.startswith("fail"):
        return _bug("silent_pass", f"{case.what}: arena {res}")
    if "tensor 'out'" not in res or case.params["why"] not in res:
        return _bug("unnamed", f"{case.what}: arena {res}")
    if len(res) > 400:
        return _bug("long_message", res[:500])
    return "ok:overflow_shape:arena_fail_named", ""


def _run_name(case: HostileCase, work: Path, compile_c: bool) -> tuple[str, str]:
    from pytest_tinyml.analysis.model import parse_model
    from pytest_tinyml.analysis.names import MAX_NAME_CHARS
    from pytest_tinyml.emulate.export import export

    info = parse_model(case.data, "names.tflite")
    for name in [*(op.name for op in info.ops), *(t.name for t in info.tensors)]:
        if len(name) > MAX_NAME_CHARS + 20:
            return _bug("unclipped", f"name of {len(name):,} chars")
    out = work / "export"
    shutil.rmtree(out, ignore_errors=True)
    res = export(case.data, out, arena_bytes=100, model_info=info)
    for header in (res.resolver, res.arena_header, res.model_h):
        text = header.read_text()
        if any(bad in text for bad in ("\0", "\\", "??", "\r", 'system("')) or "\u2028" in text:
            return _bug("injection", f"{header.name} holds unescaped text")
    if not compile_c:
        return "ok:hostile_name:inert_static", ""
    gxx = shutil.which("g++")
    if gxx is None:
        return "ok:hostile_name:inert_static(no g++)", ""
    fake = work / "fake" / "tensorflow" / "lite" / "micro"
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "micro_mutable_op_resolver.h").write_text(FAKE_RESOLVER_H)
    marker = work / "INJECTED"
    src = work / "main.cc"
    src.write_text(PROGRAM.replace("{marker}", str(marker)))
    exe = work / "main"
    gcc = shutil.which("gcc") or "gcc"
    obj = work / "model_data.o"
    for cmd in ([gcc, "-std=c11", "-trigraphs", "-Wall", "-Werror", "-c", str(res.model_c), "-o", str(obj)],
                [gxx, "-std=c++11", "-trigraphs", "-Wall", "-Werror", f"-I{out}", f"-I{work / 'fake'}", str(src),
                 str(obj), "-o", str(exe)]):
        build = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if build.returncode != 0:
            return _bug("compile", build.stderr[-1500:])
    subprocess.run([str(exe)], capture_output=True, timeout=30, cwd=work)
    if marker.exists():
        return _bug("injection", "the program ran the injected command")
    return "ok:hostile_name:compiled_inert", ""


def _run_baseline(case: HostileCase, work: Path, _: bool) -> tuple[str, str]:
    from pytest_tinyml.reports.baseline import BaselineError, compare, load_baseline
    from pytest_tinyml.reports.terminal import summary_lines  # noqa: F401  (imports cleanly)

    path = work / "base.json"
    path.write_bytes(case.data)
    try:
        doc = load_baseline(path)
    except BaselineError as exc:
        if not _one_line_ok(str(exc)):
            return _bug("multiline", str(exc)[:500])
        if case.expect != "refused":
            return _bug("false_refusal", f"{case.what}: {exc}")
        return f"ok:hostile_baseline:{case.what}:refused", ""
    if case.expect == "refused":
        return _bug("silent_pass", f"{case.what}: baseline accepted")
    comp = compare(_valid_report(["m.tflite"]), doc, str(path))
    json.dumps([d.to_dict() for ds in comp.deltas.values() for d in ds], allow_nan=False)
    if case.expect == "regression" and not comp.regressions:
        return _bug("silent_pass", f"{case.what}: no regression reported")
    if case.expect == "ok" and comp.regressions:
        return _bug("false_regression", f"{case.what}: {comp.regressions}")
    return f"ok:hostile_baseline:{case.what}:{'regression' if comp.regressions else 'compared'}", ""


def _run_cache(case: HostileCase, work: Path, _: bool) -> tuple[str, str]:
    import numpy as np

    run_cache = _run_cache_class()
    root = work / "runs"
    shutil.rmtree(root, ignore_errors=True)
    entry = root / "k"
    entry.mkdir(parents=True)
    np.savez(entry / "outputs.npz", np.zeros(3, np.int8))
    if case.what != "empty":
        (entry / "result.json").write_bytes(case.data)
    cache = run_cache(root)
    for method in ("load_firmware", "load_outputs"):
        hit = getattr(cache, method)("k")
        if hit is not None and method == "load_firmware":
            for name in ("arena_bytes", "instructions_per_inference", "seconds"):
                value = getattr(hit, name, 0)
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                    return _bug("silent_pass", f"{case.what}: cached {name}={value!r} accepted")
    return f"ok:hostile_cache:{case.what}", ""


def _run_cache_class() -> Any:
    try:
        from pytest_tinyml.measure import RunCache

        return RunCache
    except ImportError:  # after the restructure (issue 14) the cache lives in the pipeline package
        import importlib

        for mod in ("pytest_tinyml.emulate.runcache", "pytest_tinyml.pipeline.cache", "pytest_tinyml.cache"):
            try:
                return importlib.import_module(mod).RunCache
            except (ImportError, AttributeError):
                continue
        raise


_RUNNERS = {
    "shared_tables": _run_shared,
    "huge_constant": _run_huge,
    "overflow_shape": _run_overflow,
    "hostile_name": _run_name,
    "hostile_baseline": _run_baseline,
    "hostile_cache": _run_cache,
}


def cleanup(work: Path) -> None:
    for child in work.iterdir() if work.exists() else []:
        if child.name != "cache":
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                try:
                    os.unlink(child)
                except OSError:
                    pass
