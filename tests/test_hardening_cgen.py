"""Model-derived text in generated C is inert: hostile op names cannot inject code into exported headers."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from pytest_tinyml.analysis.model import parse_model
from pytest_tinyml.emulate.cgen import c_comment_text, c_identifier, c_string_literal
from pytest_tinyml.emulate.export import export

GXX = shutil.which("g++")


def hostile_names(marker: Path) -> list[str]:
    cmd = f'system("touch {marker}");'
    return [
        f'SignalFftAutoScale\0\n {cmd}\n//',  # NUL stops TFLM's strcmp; the newline ends the // comment
        f"EndsComment*/ {cmd} /*",  # closes the /* ops: */ comment in tinyml_arena.h
        f"Splice\\\n{cmd}",  # backslash-newline continues the // comment ... then the line after it
        f"Splice2\\\n\n{cmd}",
        f"Trigraph??/\n{cmd}",  # ??/ is a backslash with -trigraphs
        f"Quotes\"'\r{cmd}\r",
        "Bidi\u202e" + cmd,
        "X" * 5000,
    ]


def hostile_model(factory: ModuleType, names: list[str]) -> bytes:
    g = factory.Graph()
    prev = g.add(factory.Tensor("input", (1, 4), factory.FLOAT32))
    for i, name in enumerate(names):
        nxt = g.add(factory.Tensor(f"t{i}", (1, 4), factory.FLOAT32))
        g.ops.append(factory.Op(name, [prev], [nxt]))
        prev = nxt
    g.inputs, g.outputs = [0], [prev]
    return g.build()


# FAKE TFLM header (named as such): only what tinyml_op_resolver.h uses, so the host compiler can check
# and run the exported header without a tflite-micro checkout.
FAKE_RESOLVER_H = """
#pragma once
typedef int TfLiteStatus;
enum { kTfLiteOk = 0 };
#define TF_LITE_ENSURE_STATUS(x) do { if ((x) != kTfLiteOk) return (x); } while (0)
namespace tflite {
template <unsigned N> struct MicroMutableOpResolver {
  TfLiteStatus AddCustom(const char*, void*) { return kTfLiteOk; }
};
}
"""

PROGRAM = """
#include "tinyml_arena.h"
#include "tinyml_op_resolver.h"
#include <cstdio>
int main() {
  TinyMLOpResolver r;
  int status = RegisterTinyMLOps(r);
  std::printf("arena=%u status=%d\\n", (unsigned)TINYML_ARENA_SIZE, status);
  return 0;
}
"""


def test_comment_text_is_reduced_to_a_safe_set() -> None:
    for name in hostile_names(Path("/tmp/x")):
        text = c_comment_text(name)
        assert not any(bad in text for bad in ("\n", "\r", "\0", "\\", "*/", "/*", "//", "??", '"', "'"))
        assert text.isprintable() and text.isascii() and len(text) <= 140
    assert c_comment_text("X" * 5000).endswith("...(4880 more)")
    assert c_comment_text("CONV_2D") == "CONV_2D"


def test_string_literal_escapes_everything_outside_the_safe_set() -> None:
    lit = c_string_literal(b'a\0"\\\n??/\xff*/7')
    assert lit == '"a\\000\\042\\134\\012\\077\\077\\057\\377\\052\\0577"'
    assert c_identifier("a-b.tflite") == "a_b_tflite" and c_identifier("9x") == "_9x"
    assert c_identifier("...") == "model"


@pytest.mark.skipif(GXX is None, reason="host g++ not installed")
def test_string_literal_round_trips_through_the_compiler(tmp_path: Path) -> None:
    data = bytes(range(256)) + b"??/??=??(" + "é".encode()
    src = tmp_path / "lit.cc"
    src.write_text(
        "#include <cstdio>\nstatic const char s[] = " + c_string_literal(data) + ";\n"
        "int main() { std::fwrite(s, 1, sizeof(s) - 1, stdout); return 0; }\n"
    )
    exe = tmp_path / "lit"
    subprocess.run([GXX, "-std=c++11", "-trigraphs", "-Wall", "-Werror", str(src), "-o", str(exe)],  # type: ignore[list-item]
                   check=True,
                   capture_output=True, timeout=120)
    assert subprocess.run([str(exe)], capture_output=True, check=True, timeout=30).stdout == data


@pytest.mark.skipif(GXX is None, reason="host g++ not installed")
@pytest.mark.parametrize("std", ["-std=c++11", "-std=c++17"])
def test_exported_headers_of_hostile_names_compile_and_run_nothing(
    tflite_factory: ModuleType, tmp_path: Path, std: str
) -> None:
    marker = tmp_path / "INJECTED"
    names = hostile_names(marker)
    model = hostile_model(tflite_factory, names)
    parsed = parse_model(model, "hostile.tflite")
    # first defence: the parser makes names printable (no NUL, newline or bidi override survives) ...
    assert not any(ch in op.name for op in parsed.ops for ch in "\0\n\r\u202e")
    # ... second defence, tested on its own: the export defuses the raw names too
    (sg,) = parsed.subgraphs
    raw_ops = type(sg.ops)(dataclasses.replace(op, name=name) for op, name in zip(sg.ops, names, strict=True))
    info = dataclasses.replace(parsed, subgraphs=(dataclasses.replace(sg, ops=raw_ops),))
    assert any("\0" in op.name for op in info.ops)
    out = tmp_path / "export"
    result = export(model, out, arena_bytes=1234, model_info=info)
    for header in (result.resolver, result.arena_header, result.model_h):
        text = header.read_text()
        assert 'system("' not in text, header
        assert "\0" not in text and "\\" not in text and "??" not in text, header
    fake = tmp_path / "fake_tflm" / "tensorflow" / "lite" / "micro"
    fake.mkdir(parents=True)
    (fake / "micro_mutable_op_resolver.h").write_text(FAKE_RESOLVER_H)
    src = tmp_path / "main.cc"
    src.write_text(PROGRAM)
    exe = tmp_path / "main"
    flags = [std, "-trigraphs", "-Wall", "-Wextra", "-Werror", "-Wcomment", f"-I{out}", f"-I{tmp_path / 'fake_tflm'}"]
    build = subprocess.run([GXX, *flags, str(src), "-o", str(exe)],  # type: ignore[list-item]
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert run.stdout == "arena=1234 status=0\n"
    assert not marker.exists()
    # the model C file carries the bytes only as hex numbers
    assert 'system("' not in result.model_c.read_text()
