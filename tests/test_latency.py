"""Latency from the executed instruction mix: the QEMU plugin, the cycle tables, the per-operator profile,
latency as information in every audit, and the new boards.

The firmware tests run the real plugin under the real QEMU on a small flatbuffer-built CNN
(tests/tflite_factory.py); they skip with the reason when the toolchain or a host C compiler is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from pytest_tinyml.analysis.model import parse_model
from pytest_tinyml.boards import board_from_mapping, builtin_boards
from pytest_tinyml.emulate import insn_plugin, toolchain_status
from pytest_tinyml.emulate.cycles import (
    CORE_TIMINGS,
    ZERO_WAIT,
    MemoryTiming,
    estimate_cycles,
    memory_timing,
    operator_profile,
)
from pytest_tinyml.emulate.insn_plugin import CLASSES, parse_counts, plugin_args
from pytest_tinyml.emulate.run import run_firmware
from pytest_tinyml.errors import SpecError

_status = toolchain_status()
needs_firmware = pytest.mark.skipif(
    not _status.ok or insn_plugin.host_compiler() is None,
    reason=f"needs arm-none-eabi-gcc, qemu-system-arm and a host C compiler (missing: {', '.join(_status.missing) or 'cc'})",
)


@pytest.fixture(scope="module")
def cnn_run(tflite_factory: ModuleType, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    if not _status.ok or insn_plugin.host_compiler() is None:
        pytest.skip("firmware toolchain or host C compiler missing")
    model = tflite_factory.int8_cnn(seed=3, height=16, width=16, filters=8, fc_units=16)
    rng = np.random.default_rng(0)
    samples = [rng.integers(-128, 128, size=(1, 16, 16, 1), dtype=np.int8) for _ in range(2)]
    cache = tmp_path_factory.mktemp("fw")
    board = next(b for b in builtin_boards() if b.name == "nucleo_l4r5zi")
    fw = run_firmware(model, samples, cache_dir=cache, flash_cache=memory_timing(board).plugin_cache)
    return model, fw, board


@needs_firmware
def test_plugin_counts_agree_with_systick_and_operators_add_up(cnn_run) -> None:  # type: ignore[no-untyped-def]
    model, fw, board = cnn_run
    counts = fw.instruction_counts
    assert counts is not None, fw.counts_note
    assert counts.inferences == 2
    # the plugin's executed-instruction total matches the SysTick count (resolution: 40 instructions per tick
    # on mps2-an386, plus the timer read and the marker instructions themselves)
    assert abs(counts.instructions - fw.instructions_per_inference) < 200
    info = parse_model(model, "cnn")
    assert len(counts.ops) == len(info.subgraphs[0].ops)
    prof = operator_profile(info, counts, "cortex-m4", memory_timing(board), board.clock_hz)
    assert [o["op"] for o in prof["operators"]] == [op.name for op in info.subgraphs[0].ops]
    # operators add up to the whole inference within 2 %
    assert abs(prof["operators_cycles"] - prof["total_cycles"]) <= 0.02 * prof["total_cycles"]
    ops_instr = sum(o["instructions"] for o in prof["operators"])
    assert abs(ops_instr - counts.instructions) <= 0.02 * counts.instructions
    conv = prof["operators"][0]
    assert conv["op"] == "CONV_2D" and conv["macs"] == info.subgraphs[0].ops[0].macs > 0
    assert conv["parameters"] > 0 and conv["activation_bytes"] > 0
    # the int8 kernels execute loads, multiplies and branches both ways
    for cls in ("load", "mul", "branch_taken", "branch_not_taken", "alu"):
        assert counts.total[cls] > 0, cls
    # the model sits in the ELF's read-only sections: weight reads hit flash
    assert 0 < counts.total["flash_misses"] <= counts.total["flash_reads"]


@needs_firmware
def test_flash_wait_states_cost_cycles(cnn_run) -> None:  # type: ignore[no-untyped-def]
    _, fw, board = cnn_run
    row = fw.instruction_counts.total
    zero = estimate_cycles(row, "cortex-m4", ZERO_WAIT)
    board_est = estimate_cycles(row, "cortex-m4", memory_timing(board))
    assert board_est.flash_wait_cycles == row["flash_misses"] * 5
    assert board_est.cycles == pytest.approx(zero.cycles + board_est.flash_wait_cycles)


@needs_firmware
def test_no_host_compiler_says_why(
    tflite_factory: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(insn_plugin, "host_compiler", lambda: None)
    model = tflite_factory.int8_cnn(seed=4)
    fw = run_firmware(model, [np.zeros((1, 8, 8, 1), np.int8)], cache_dir=tmp_path)
    assert fw.instruction_counts is None
    assert "no host C compiler" in fw.counts_note
    assert fw.instructions_per_inference > 0  # the total count still comes from SysTick
    from types import SimpleNamespace

    from pytest_tinyml.checks.firmware import latency_info

    board = next(b for b in builtin_boards() if b.name == "nucleo_l4r5zi")
    target = SimpleNamespace(board_core_emulated=True, firmware=fw, firmware_core="cortex-m4", board=board)
    info = latency_info(target)  # type: ignore[arg-type]
    assert info["profile"] is None and info["instruction_classes"] is None
    assert "no host C compiler" in info["method"] and "assumed 1.3 cycles/instruction" in info["method"]
    assert info["latency_seconds"] == pytest.approx(fw.instructions_per_inference * 1.3 / 120e6)


def test_cycle_arithmetic_follows_the_m4_table() -> None:
    row = {"alu": 10, "load": 4, "ldst_pipelined": 2, "branch_taken": 3, "branch_not_taken": 1, "ldm": 1,
           "ldm_regs": 4, "mul": 5, "flash_reads": 3, "flash_misses": 2}
    est = estimate_cycles(row, "cortex-m4", MemoryTiming(flash_wait_states=5, ram_wait_states=1))
    # 10x1 + 4x2 - 2 + 3x(1+P=3) + 1 + (1+4) + 5x1 = 10 + 8 - 2 + 9 + 1 + 5 + 5 = 36
    assert est.core_cycles == 36
    assert est.flash_wait_cycles == 10
    # RAM reads: 4 loads + 4 LDM registers - 3 flash reads = 5, one wait state each
    assert est.ram_wait_cycles == 5
    assert est.instructions == 10 + 4 + 3 + 1 + 1 + 5
    m0 = estimate_cycles(row, "cortex-m0plus")
    assert m0.core_cycles == 10 + 8 + 0 + 6 + 1 + 5 + 5  # no load pipelining, taken branch 2
    assert not CORE_TIMINGS["cortex-m33"].exact and "no per-instruction timing" in CORE_TIMINGS["cortex-m33"].source
    with pytest.raises(ValueError, match="no timing table"):
        estimate_cycles(row, "cortex-a53")


def _counts_text(rows: dict[str, list[int]], inferences: int = 1) -> str:
    lines = ["version 1", f"inferences {inferences}", "markers 4", "op_overflow 0", "classes " + " ".join(CLASSES)]
    lines += [f"{label} " + " ".join(map(str, values)) for label, values in rows.items()]
    return "\n".join(lines + ["end"]) + "\n"


def test_parse_counts_averages_and_rejects_damaged_files() -> None:
    n = len(CLASSES)
    good = _counts_text({"total": [4] * n, "overhead": [0] * n, "op 0": [2] * n, "op 1": [2] * n}, inferences=2)
    counts = parse_counts(good)
    assert counts.total["alu"] == 2 and len(counts.ops) == 2 and counts.ops[1]["load"] == 1
    bad = [
        good.replace("end\n", ""),  # the emulator died before the plugin wrote everything
        good.replace("classes alu", "classes xyz"),
        _counts_text({"total": [1] * (n - 1), "overhead": [0] * n}),
        _counts_text({"total": [1] * n, "overhead": [0] * n, "op 3": [0] * n}),
        _counts_text({"total": [-1] * n, "overhead": [0] * n}),
        _counts_text({"total": [1] * n, "overhead": [0] * n, "op 99999": [0] * n}),
        good.replace("inferences 2", "inferences two"),
        "rm -rf /\n",
        "x" * (5 << 20),
    ]
    for text in bad:
        with pytest.raises(ValueError):
            parse_counts(text)


def test_plugin_args_escape_commas(tmp_path: Path) -> None:
    args = plugin_args(Path("/a,b/p.so"), tmp_path / "o,ut.txt", flash=(0x10, 0x20), line_bytes=8, lines=32)
    assert args[0] == "-plugin"
    assert args[1].startswith("/a,,b/p.so,out=") and "o,,ut.txt" in args[1]
    assert "flash=10:20" in args[1] and "dline=8" in args[1] and "dlines=32" in args[1]


def test_boards_have_timing_and_reject_bad_values() -> None:
    boards = {b.name: b for b in builtin_boards()}
    l4 = boards["nucleo_l4r5zi"]
    assert (l4.core, l4.clock_hz, l4.flash_wait_states) == ("cortex-m4f", 120_000_000, 5)
    ra = boards["ek_ra6m4"]
    assert (ra.core, ra.clock_hz, ra.flash_wait_states, ra.ram_wait_states, ra.qemu) == (
        "cortex-m33", 200_000_000, 3, 1, "mps2-an505"
    )
    for name in ("nucleo_l4r5zi", "ek_ra6m4", "stm32u585", "nrf5340", "alif_e7_hp"):
        assert boards[name].source
    assert memory_timing(boards["nrf5340"]).flash_wait_states == 0  # not given: zero, and said so
    assert "zero assumed" in memory_timing(boards["nrf5340"]).source
    base = {"core": "cortex-m4f", "clock": "80MHz", "flash": "1MiB", "ram": "128KiB"}
    for bad in ({"flash_wait_states": -1}, {"flash_wait_states": "5"}, {"flash_cache_lines": 10**9}):
        with pytest.raises(SpecError, match="flash_"):
            board_from_mapping("x", {**base, **bad}, "test")


@needs_firmware
def test_audit_shows_latency_as_information_and_judges_it_with_a_limit(
    tflite_factory: ModuleType, pytester: pytest.Pytester
) -> None:
    pytester.path.joinpath("cnn.tflite").write_bytes(tflite_factory.int8_cnn(seed=5, height=12, width=12, filters=8))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--tinyml-model", "cnn.tflite", "--tinyml-board", "nucleo_l4r5zi",
        "--tinyml-report", "rep", timeout=600,
    )
    out = result.stdout.str()
    assert "estimated latency (information; no max_latency set)" in out
    assert "slowest operators" in out and "CONV_2D" in out
    assert not any(line.lstrip().startswith("latency ") for line in out.splitlines())  # no judged item
    report = json.loads((pytester.path / "rep" / "report.json").read_text())
    lat = report["targets"][0]["latency"]
    assert lat["judged"] is False and lat["seconds"] > 0
    ops = lat["profile"]["operators"]
    assert [o["op"] for o in ops][:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"]
    assert "class='profile'" in (pytester.path / "rep" / "report.html").read_text()
    assert "| # | operator |" in (pytester.path / "rep" / "report.md").read_text()

    pytester.path.joinpath("spec.yaml").write_text(
        "version: 1\nname: lat\nmodel: {tflite: cnn.tflite}\nboard: nucleo_l4r5zi\nconstraints:\n  max_latency: 1us\n"
    )
    # the project's runtime (the fallback: no TFLM sources here) does not judge max_latency: skipped with its
    # figure as information, never passed or failed on code that does not ship
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tinyml-spec", "spec.yaml", "-rs",
                                           "--tinyml-firmware-runtime", "tinyml", timeout=600)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([
        "*latency*1 ?s*-*SKIP*not judged*",  # the table shows the limit (1 µs), and no measured value
        "*estimated latency (information; the project's own runtime ran, max_latency is judged on real TFLM only)*",
        "*latency: not judged: the firmware ran the project's own runtime (--tinyml-firmware-runtime tinyml), "
        "not the TFLM you ship; its estimate, * per inference on nucleo_l4r5zi, is shown as information*",
    ])


@needs_firmware
def test_real_tflm_judges_max_latency(tflite_factory: ModuleType, pytester: pytest.Pytester) -> None:
    """With real TFLM (the runtime that ships) ``max_latency`` is judged. Needs TFLM sources (TFLM_ROOT or
    TINYML_TFLM_SOURCES); skips with the reason otherwise."""
    from pytest_tinyml.emulate.tflm_tree import tflm_tree
    from pytest_tinyml.errors import NotEvaluable

    try:
        tflm_tree(kernels="cmsis_nn", core="cortex-m4", offline=True)
    except NotEvaluable as exc:
        pytest.skip(f"real TFLM: {exc.reason}; to enable: {exc.enable}")
    pytester.path.joinpath("cnn.tflite").write_bytes(tflite_factory.int8_cnn(seed=5, height=12, width=12, filters=8))
    spec = "version: 1\nname: lat\nmodel: {tflite: cnn.tflite}\nboard: nucleo_l4r5zi\nconstraints:\n  max_latency: %s\n"
    pytester.path.joinpath("spec.yaml").write_text(spec % "1us")
    args = ("-p", "no:cacheprovider", "--tinyml-spec", "spec.yaml", "-k", "latency")
    result = pytester.runpytest_subprocess(*args, timeout=1200)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*latency: * > limit 1 *s (*cycles*[[]runtime tflm, cmsis_nn kernels[]]*",
                                 "*slowest operators: #0 CONV_2D*"])
    pytester.path.joinpath("spec.yaml").write_text(spec % "1s")
    result = pytester.runpytest_subprocess(*args, timeout=1200)
    result.assert_outcomes(passed=1)


@needs_firmware
def test_real_tflm_profiler_marks_every_operator(tflite_factory: ModuleType, tmp_path: Path) -> None:
    """Real TFLM (CMSIS-NN): TFLM's MicroProfilerInterface hooks mark the operators. Needs TFLM sources
    (TFLM_ROOT or TINYML_TFLM_SOURCES); skips with the reason otherwise."""
    from pytest_tinyml.emulate.tflm_tree import tflm_tree
    from pytest_tinyml.errors import NotEvaluable

    try:
        tree = tflm_tree(kernels="cmsis_nn", core="cortex-m4", offline=True)
    except NotEvaluable as exc:
        pytest.skip(f"real TFLM: {exc.reason}; to enable: {exc.enable}")
    model = tflite_factory.int8_cnn(seed=6, height=16, width=16, filters=8)
    fw = run_firmware(model, [np.zeros((1, 16, 16, 1), np.int8)], cache_dir=tmp_path, runtime="tflm", tflm_tree=tree)
    counts = fw.instruction_counts
    assert counts is not None, fw.counts_note
    info = parse_model(model, "cnn")
    assert len(counts.ops) == len(info.subgraphs[0].ops)
    prof = operator_profile(info, counts, "cortex-m4", ZERO_WAIT, 120_000_000)
    # operators + TFLM's interpreter loop between them = the whole inference (on this tiny model the loop is
    # a few percent; on the MLPerf Tiny models bench_latency.py measures operators at 99.9-100 %)
    assert prof["operators_cycles"] + prof["overhead_cycles"] == pytest.approx(prof["total_cycles"], rel=1e-9)
    assert prof["coverage"] > 0.9
    # SysTick brackets Invoke() from outside the markers (40 instructions per tick, timer overhead subtracted):
    # measured 356,756 (plugin) vs 356,440 (SysTick) on this model
    assert abs(counts.instructions - fw.instructions_per_inference) <= 0.005 * fw.instructions_per_inference
    assert counts.total["dsp_mac"] > 0  # CMSIS-NN's SMLAD inner loops


@needs_firmware
def test_cortex_m55_machine_is_bit_exact_and_counts_helium(
    tflite_factory: ModuleType, tmp_path: Path
) -> None:
    """QEMU 7.2's mps3-an547 (Cortex-M55 with Helium) runs the firmware for the M55 boards. Its SysTick does
    not count under the harness, so instructions per inference are the plugin's; Helium instructions (which
    QEMU's disassembler shows as ldc/stc or Neon-style mnemonics on q registers) are counted as such."""
    from pytest_tinyml.analysis import tflm

    if not MACHINES_OK("mps3-an547"):
        pytest.skip("qemu-system-arm has no mps3-an547 machine")
    model = tflite_factory.int8_cnn(seed=3, height=16, width=16, filters=8, fc_units=16)
    rng = np.random.default_rng(0)
    xs = [rng.integers(-128, 128, size=(1, 16, 16, 1), dtype=np.int8) for _ in range(3)]
    fw = run_firmware(model, xs, machine="mps3-an547", core="cortex-m55", cache_dir=tmp_path, runtime="tinyml")
    host = tflm.invoke(model, xs, num_outputs=1)
    for got, want in zip(fw.outputs, host, strict=True):
        assert np.array_equal(np.asarray(got).ravel(), np.asarray(want[0]).ravel())
    counts = fw.instruction_counts
    assert counts is not None, fw.counts_note
    assert fw.instructions_per_inference == counts.instructions > 0
    assert fw.calibration_instructions == 0  # a SysTick figure: unknown on this machine, not made up


@needs_firmware
def test_cortex_m55_real_tflm_helium_kernels_are_bit_exact_and_counted(
    tflite_factory: ModuleType, tmp_path: Path
) -> None:
    """Real TFLM with CMSIS-NN's Helium kernels on mps3-an547. Needs TFLM sources (TFLM_ROOT or
    TINYML_TFLM_SOURCES); skips with the reason otherwise."""
    from pytest_tinyml.analysis import tflm
    from pytest_tinyml.emulate.tflm_tree import tflm_tree
    from pytest_tinyml.errors import NotEvaluable

    try:
        tree = tflm_tree(kernels="cmsis_nn", core="cortex-m55", offline=True)
    except NotEvaluable as exc:
        pytest.skip(f"real TFLM: {exc.reason}; to enable: {exc.enable}")
    model = tflite_factory.int8_cnn(seed=3, height=16, width=16, filters=8, fc_units=16)
    rng = np.random.default_rng(0)
    xs = [rng.integers(-128, 128, size=(1, 16, 16, 1), dtype=np.int8) for _ in range(3)]
    host = tflm.invoke(model, xs, num_outputs=1)
    fw = run_firmware(model, xs, machine="mps3-an547", core="cortex-m55", cache_dir=tmp_path, runtime="tflm",
                      tflm_tree=tree)
    for got, want in zip(fw.outputs, host, strict=True):
        assert np.array_equal(np.asarray(got).ravel(), np.asarray(want[0]).ravel())
    counts = fw.instruction_counts
    assert counts is not None and counts.total.get("mve", 0) > 0  # CMSIS-NN's Helium paths, counted as such
    est = estimate_cycles(counts.total, "cortex-m55", ZERO_WAIT)
    assert est.by_class["mve"] == 2 * counts.total["mve"] and not CORE_TIMINGS["cortex-m55"].exact


def MACHINES_OK(machine: str) -> bool:  # noqa: N802 - reads like the other module-level guards
    import subprocess

    out = subprocess.run(["qemu-system-arm", "-M", "help"], capture_output=True, text=True, check=False).stdout
    return any(line.split(" ", 1)[0] == machine for line in out.splitlines())
