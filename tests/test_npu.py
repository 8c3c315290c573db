"""Ethos-U NPU targets (issue 21): boards with an ``npu:``, Arm's Vela run for real on models the tests build,
the npu_* items, and Vela-compiled models on a plain Cortex-M board. No fake Vela: without ethos-u-vela the
Vela tests skip and say which extra installs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pytest_tinyml.analysis.model import parse_model
from pytest_tinyml.analysis.vela import (
    NPU_EXTRA,
    VelaResult,
    compile_for_npu,
    compiled_model_facts,
    parse_fallbacks,
    vela_available,
)
from pytest_tinyml.boards import board_from_mapping, builtin_boards
from pytest_tinyml.checks.npu import (
    NPU_LIMITS,
    judge_npu_flash,
    judge_npu_latency,
    judge_npu_ops,
    judge_npu_sram,
)
from pytest_tinyml.errors import NotEvaluable, SpecError
from pytest_tinyml.reports.baseline import load_report

needs_vela = pytest.mark.skipif(vela_available() is None,
                                reason=f"Arm's Vela is not installed: {NPU_EXTRA}")

U55 = {"accelerator": "ethos-u55-128", "system_config": "Ethos_U55_High_End_Embedded", "memory_mode": "Shared_Sram"}


def _vela_cli(tmp_path: Path, model: bytes) -> bytes:
    """The model compiled by Vela's own command line (ethos-u55-128, Vela's defaults): ``m_vela.tflite``."""
    (tmp_path / "m.tflite").write_bytes(model)
    subprocess.run([sys.executable, "-c", "import sys; from ethosu.vela.vela import main; sys.exit(main())",
                    "m.tflite", "--output-dir", "out", "--accelerator-config", "ethos-u55-128"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=300)
    return (tmp_path / "out" / "m_vela.tflite").read_bytes()


def _u55(model: bytes) -> VelaResult:
    return compile_for_npu(model, accelerator=U55["accelerator"], system_config=U55["system_config"],
                           memory_mode=U55["memory_mode"])


def test_npu_boards_carry_their_vela_configuration() -> None:
    boards = {b.name: b for b in builtin_boards()}
    hp, he, u65 = boards["alif_e7_hp"].npu, boards["alif_e7_he"].npu, boards["imx93_m33"].npu
    assert hp is not None and he is not None and u65 is not None
    assert (hp.accelerator, he.accelerator, u65.accelerator) == ("ethos-u55-256", "ethos-u55-128", "ethos-u65-256")
    assert hp.sram_bytes == 1 << 20 and he.sram_bytes == 256 << 10 and u65.memory_mode == "Dedicated_Sram_384KB"
    assert all(n.source for n in (hp, he, u65))
    assert boards["stm32f405"].npu is None and "npu" not in boards["stm32f405"].to_dict()


def test_the_board_list_names_each_npu() -> None:
    from pytest_tinyml.boards import BoardRegistry
    from pytest_tinyml.reports.terminal import board_lines

    lines = board_lines(BoardRegistry(builtin_boards()))
    assert any(line.startswith("alif_e7_hp: Arm Ethos-U NPU ethos-u55-256 at 400 MHz") for line in lines)
    assert any(line.startswith("imx93_m33: Arm Ethos-U NPU ethos-u65-256") for line in lines)
    assert not any(line.startswith("stm32f405:") for line in lines)


def test_a_board_with_an_unknown_accelerator_is_refused_naming_the_ones_vela_knows() -> None:
    data = {"core": "cortex-m55", "clock": "100MHz", "flash": "1MiB", "ram": "256KiB",
            "npu": {**U55, "accelerator": "ethos-u99", "clock": "100MHz", "sram": "128KiB", "flash": "1MiB"}}
    with pytest.raises(SpecError, match="ethos-u99.*") as err:
        board_from_mapping("x", data)
    assert "ethos-u55-128" in str(err.value.fix)


def test_cpu_fallback_lines_of_both_vela_formats_are_read_with_their_reason() -> None:
    text = ("Warning (supported operators) operator: DEQUANTIZE, ofm: 'probs_float'\nReason: Unsupported opType\n\n"
            "Warning: CONV_2D 'conv/out' is not supported on the NPU. Placing on CPU instead\n"
            " - Stride values for both width and height must be in the range [1, 3]\n   Op has stride WxH as: 4x4\n\n"
            "Network summary for model\n")
    found = parse_fallbacks(text)
    assert [(f.op, f.tensor) for f in found] == [("DEQUANTIZE", "probs_float"), ("CONV_2D", "conv/out")]
    assert found[0].reason == "Unsupported opType"
    assert "range [1, 3]" in found[1].reason and "4x4" in found[1].reason


@needs_vela
def test_vela_places_every_operator_of_an_int8_cnn_on_the_npu(tflite_factory: ModuleType) -> None:
    v = _u55(tflite_factory.int8_cnn(0))
    assert v.cpu_ops == 0 and not v.fallbacks and v.npu_ops > 0 and v.cpu_op_types == ()
    assert 0 < v.sram_bytes < 4096 and v.flash_bytes > 0 and v.compiled_model_bytes > v.flash_bytes
    assert v.cycles_total > 0 and v.macs > 0
    assert {layer.original_op for layer in v.layers} >= {"Conv2D", "DepthwiseConv2D", "FullyConnected"}
    npu = next(b for b in builtin_boards() if b.name == "alif_e7_he").npu
    assert judge_npu_ops(v, npu).passed
    assert judge_npu_sram(v, npu, 1000, 0).passed and not judge_npu_sram(v, npu, 16, 0).passed
    assert judge_npu_flash(v, npu, 1 << 20, 0).passed and not judge_npu_flash(v, npu, 100, 0).passed
    info = judge_npu_latency(v, npu, None)
    assert info.passed and info.limit == "information" and NPU_LIMITS in info.message
    assert info.measured == pytest.approx(v.cycles_total / 160e6)
    assert len(info.extra["layers"]) == len(v.layers)
    assert not judge_npu_latency(v, npu, 1e-9).passed


@needs_vela
def test_a_model_built_to_need_a_cpu_fallback_gets_vela_s_reason(tflite_factory: ModuleType) -> None:
    v = _u55(tflite_factory.int8_cnn(0, float_output=True))
    assert v.cpu_ops == 1 and v.cpu_op_types == ("DEQUANTIZE",)
    assert [(f.op, f.tensor, f.reason) for f in v.fallbacks] == [("DEQUANTIZE", "probs_float", "Unsupported opType")]
    npu = next(b for b in builtin_boards() if b.name == "alif_e7_hp").npu
    verdict = judge_npu_ops(v, npu)
    assert not verdict.passed and verdict.measured == 1
    assert "CPU fallback: DEQUANTIZE (probs_float): Unsupported opType" in verdict.details


@needs_vela
def test_vela_compiles_at_the_board_s_npu_clock(tflite_factory: ModuleType) -> None:
    model = tflite_factory.int8_cnn(0)
    default = _u55(model)
    board = compile_for_npu(model, accelerator=U55["accelerator"], system_config=U55["system_config"],
                            memory_mode=U55["memory_mode"], clock_hz=160_000_000)
    assert default.vela_clock_hz == 500e6 and board.vela_clock_hz == 160e6  # Vela's own summary says so
    assert board.inference_seconds == pytest.approx(board.cycles_total / 160e6, rel=1e-3)


@needs_vela
def test_an_ethos_u65_configuration_compiles(tflite_factory: ModuleType) -> None:
    v = compile_for_npu(tflite_factory.int8_cnn(0), accelerator="ethos-u65-256", system_config="Ethos_U65_High_End",
                        memory_mode="Dedicated_Sram_384KB")
    assert v.cpu_ops == 0 and v.sram_bytes > 0 and v.compiled_model_bytes > 0


@needs_vela
def test_audit_on_an_npu_board_runs_cpu_and_npu_items(tflite_factory: ModuleType, pytester: pytest.Pytester,
                                                      run_pytest) -> None:  # type: ignore[no-untyped-def]
    (pytester.path / "mixed.tflite").write_bytes(tflite_factory.int8_cnn(0, float_output=True))
    result = run_pytest("--tinyml-model=mixed.tflite", "--tinyml-board", "alif_e7_hp", "-m", "not firmware",
                        "--tinyml-report", "report")
    outcomes = run_pytest.outcomes(result)
    assert outcomes["mixed.tflite::tflm_ops"] == "PASSED"  # the CPU part (DEQUANTIZE) runs with TFLM
    assert outcomes["mixed.tflite::npu_ops"] == "FAILED"
    assert outcomes["mixed.tflite::npu_sram"] == outcomes["mixed.tflite::npu_flash"] == "PASSED"
    assert outcomes["mixed.tflite::npu_latency"] == "PASSED"
    text = result.stdout.str()
    assert "CPU fallback: DEQUANTIZE (probs_float): Unsupported opType" in text
    report = (pytester.path / "report" / "report.json").read_text()
    assert "npu_latency" in report and "original_op" in report and "not checked bit-exact" in report
    md = (pytester.path / "report" / "report.md").read_text()
    assert "NPU latency, Vela's estimate" in md and "| 0 | Conv2D | Conv2D |" in md
    assert "NPU latency, Vela&#x27;s estimate" in (pytester.path / "report" / "report.html").read_text()
    # tflm_ops judged the operators Vela left on the CPU, and says which ran where
    doc = load_report(pytester.path / "report" / "report.json")  # report.schema.json allows the npu section
    (target,) = doc["targets"]
    npu = target["npu"]
    assert npu["estimate"] == "Vela's estimate (no NPU emulator ran)" and "not checked bit-exact" in npu["limits_note"]
    assert npu["accelerator"] == "ethos-u55-256" and npu["judged"] is False and npu["seconds"] > 0
    assert [x["original_op"] for x in npu["layers"]][:1] == ["Conv2D"] and any(x["cycles"] > 0 for x in npu["layers"])
    assert npu["placement"]["cpu"] == {"DEQUANTIZE": 1} and npu["placement"]["npu"]["CONV_2D"] >= 1
    assert npu["cpu_fallbacks"] == [{"op": "DEQUANTIZE", "tensor": "probs_float", "reason": "Unsupported opType"}]
    items = {i["check"]: i for i in target["items"]}
    message = items["tflm_ops"]["message"]
    assert message.startswith("tflm_ops: on alif_e7_hp the NPU runs") and "the CPU runs 1 with TFLM (DEQUANTIZE)" in message
    assert items["tflm_ops"]["extra"]["placement"] == items["npu_ops"]["extra"]["placement"] == npu["placement"]
    assert items["tflm_ops"]["extra"]["judged_on_cpu"] == ["DEQUANTIZE"]
    assert "Ran where: NPU CONV_2D" in md and "CPU (TFLM) DEQUANTIZE" in md
    assert "Per NPU operation (Vela's estimate (no NPU emulator ran)):" in md
    assert "Ran where: NPU CONV_2D" in (pytester.path / "report" / "report.html").read_text()


@needs_vela
def test_no_npu_items_on_a_board_without_an_npu(tflite_factory: ModuleType, pytester: pytest.Pytester,
                                                run_pytest) -> None:  # type: ignore[no-untyped-def]
    (pytester.path / "m.tflite").write_bytes(tflite_factory.int8_cnn(0))
    result = run_pytest("--tinyml-model=m.tflite", "--tinyml-board", "stm32f405", "-m", "not firmware")
    assert not any("npu" in nodeid for nodeid in run_pytest.outcomes(result))


@needs_vela
def test_a_vela_compiled_model_on_a_plain_board_needs_an_ethos_u_npu(
    tflite_factory: ModuleType, pytester: pytest.Pytester, tmp_path: Path, run_pytest  # type: ignore[no-untyped-def]
) -> None:
    (pytester.path / "compiled.tflite").write_bytes(_vela_cli(tmp_path, tflite_factory.int8_cnn(0)))
    result = run_pytest("--tinyml-model=compiled.tflite", "-k", "tflm_ops")
    assert run_pytest.outcomes(result)["compiled.tflite::tflm_ops"] == "FAILED"
    text = result.stdout.str()
    assert "compiled by Arm's Vela for an Ethos-U NPU" in text and "alif_e7_hp" in text
    assert "tflm_ops: the model needs an Arm Ethos-U NPU" in text and "custom operator 'ethos-u' x1" in text
    assert "has none; boards with one:" in text
    for board in builtin_boards():
        if board.npu is not None:
            assert f"{board.name} ({board.npu.accelerator})" in text


@needs_vela
def test_a_vela_compiled_model_on_an_npu_board_is_judged_from_its_ethos_u_operator(
    tflite_factory: ModuleType, tmp_path: Path
) -> None:
    model = tflite_factory.int8_cnn(0, float_output=True)
    vela = _u55(model)
    compiled = _vela_cli(tmp_path, model)
    facts = compiled_model_facts(parse_model(compiled, "compiled"), len(compiled), accelerator=U55["accelerator"],
                                 system_config=U55["system_config"], memory_mode=U55["memory_mode"])
    assert facts.precompiled and facts.npu_ops == 1 and facts.cpu_op_types == ("DEQUANTIZE",)
    assert facts.cpu_op_counts == (("DEQUANTIZE", 1),) and facts.vela_version.endswith("(compiled before this run)")
    assert (facts.sram_bytes, facts.flash_bytes) == (vela.sram_bytes, vela.flash_bytes)  # Vela's own figures
    npu = next(b for b in builtin_boards() if b.name == "alif_e7_he").npu
    verdict = judge_npu_ops(facts, npu)
    assert not verdict.passed and "not stored in the file" in verdict.details[0]
    with pytest.raises(NotEvaluable, match="not stored"):
        judge_npu_latency(facts, npu, None)


def test_without_vela_the_npu_measurement_skips_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_tinyml.analysis import vela as vela_module

    monkeypatch.setattr(vela_module, "vela_available", lambda: None)
    with pytest.raises(NotEvaluable) as err:
        vela_module.require_vela()
    assert "pytest-tinyml[npu]" in err.value.enable and "not installed" in err.value.reason


@needs_vela
def test_tflm_ops_of_a_vela_compiled_model_on_an_npu_board_judges_its_cpu_part(
    tflite_factory: ModuleType, pytester: pytest.Pytester, tmp_path: Path, run_pytest  # type: ignore[no-untyped-def]
) -> None:
    (pytester.path / "compiled.tflite").write_bytes(_vela_cli(tmp_path, tflite_factory.int8_cnn(0, float_output=True)))
    result = run_pytest("--tinyml-model=compiled.tflite", "--tinyml-board", "alif_e7_he", "-m", "not firmware")
    outcomes = run_pytest.outcomes(result)  # skips are listed as "SKIPPED [1] file:line: item: reason"
    assert outcomes["compiled.tflite::npu_sram"] == outcomes["compiled.tflite::npu_flash"] == "PASSED"
    assert outcomes["compiled.tflite::npu_ops"] == "FAILED"
    text = result.stdout.str()
    assert "tflm_ops: the model was compiled by Vela" in text and "npu_latency: the model was compiled by Vela" in text
    assert "operators left on the CPU (DEQUANTIZE) all have TFLM kernels" in text


@needs_vela
def test_max_latency_of_a_spec_judges_vela_s_estimate(tflite_factory: ModuleType, pytester: pytest.Pytester,
                                                      run_pytest) -> None:  # type: ignore[no-untyped-def]
    (pytester.path / "cnn.tflite").write_bytes(tflite_factory.int8_cnn(0))
    (pytester.path / "npu.yaml").write_text(
        "version: 1\nname: npu_cnn\nmodel:\n  tflite: cnn.tflite\nboard: alif_e7_he\n"
        "constraints:\n  ops: tflm\n  max_latency: 1us\n  firmware: {enabled: false}\n")
    result = run_pytest("--tinyml-spec", "npu.yaml")
    outcomes = run_pytest.outcomes(result)
    assert outcomes["npu.yaml::npu_latency"] == "FAILED" and outcomes["npu.yaml::npu_ops"] == "PASSED"
    assert "limit 0.001 ms: Vela's estimate" in result.stdout.str()


@needs_vela
def test_a_compiled_model_on_a_plain_board_names_the_operators_vela_left_on_the_cpu(
    tflite_factory: ModuleType, pytester: pytest.Pytester, tmp_path: Path, run_pytest  # type: ignore[no-untyped-def]
) -> None:
    (pytester.path / "compiled.tflite").write_bytes(_vela_cli(tmp_path, tflite_factory.int8_cnn(0, float_output=True)))
    result = run_pytest("--tinyml-model=compiled.tflite", "--tinyml-board", "stm32f405", "-k", "tflm_ops")
    assert run_pytest.outcomes(result)["compiled.tflite::tflm_ops"] == "FAILED"
    text = result.stdout.str()
    assert "tflm_ops: the model needs an Arm Ethos-U NPU" in text
    assert "operators Vela left on the CPU: DEQUANTIZE" in text


@needs_vela
def test_tflm_ops_on_an_npu_board_judges_only_the_operators_vela_leaves_on_the_cpu(
    tflite_factory: ModuleType,
) -> None:
    from dataclasses import replace

    from pytest_tinyml.analysis import tflm
    from pytest_tinyml.analysis.vela import placement
    from pytest_tinyml.checks.ops import judge_cpu_part
    from pytest_tinyml.kinds import OpStatus

    model = tflite_factory.int8_cnn(0, float_output=True)
    info = parse_model(model, "mixed")
    where = placement(info, _u55(model))  # Vela for real: DEQUANTIZE stays on the CPU
    assert where["cpu"] == {"DEQUANTIZE": 1} and "DEQUANTIZE" not in where["npu"] and where["npu"]
    alloc = tflm.allocate(model, timeout=120)
    report = tflm.tflm_op_report(info, alloc)
    names = [op.name for op in info.ops]
    assert judge_cpu_part(alloc, report, names, where, "alif_e7_hp").passed

    def lacking(op: str) -> list:  # type: ignore[type-arg]
        return [replace(r, status=OpStatus.UNSUPPORTED, reason=f"TFLM has no kernel for builtin op {op}")
                if r.op == op else r for r in report]

    on_npu = sorted(where["npu"])[0]  # an operator Vela put on the NPU: TFLM need not run it
    verdict = judge_cpu_part(alloc, lacking(on_npu), names, where, "alif_e7_hp")
    assert verdict.passed and any(d.startswith(f"note: {on_npu} runs on the NPU") for d in verdict.details)
    verdict = judge_cpu_part(alloc, lacking("DEQUANTIZE"), names, where, "alif_e7_hp")  # the CPU must run it
    assert not verdict.passed and verdict.measured == 1
    assert verdict.details[0].startswith("DEQUANTIZE x1: unsupported") and "(on the CPU)" in verdict.details[0]
    assert "the CPU runs 1 with TFLM (DEQUANTIZE)" in verdict.message
    assert verdict.extra["placement"] == where


@needs_vela
def test_shards_split_by_item_merge_into_the_one_run_s_npu_section(
    tflite_factory: ModuleType, pytester: pytest.Pytester, run_pytest  # type: ignore[no-untyped-def]
) -> None:
    import os
    import re

    (pytester.path / "cnn.tflite").write_bytes(tflite_factory.int8_cnn(0))
    pytester.makeini("[pytest]\n")
    common = ("--tinyml-model=cnn.tflite", "--tinyml-board", "alif_e7_he", "-m", "not firmware",
              "-o", "tinyml_cache_dir=cache")
    assert run_pytest(*common, "--tinyml-report", "all", report=None).ret == 0
    for shard, keep in (("s1", "npu_latency or size"), ("s2", "not (npu_latency or size)")):
        assert run_pytest(*common, "-k", keep, "--tinyml-report", shard, report=None).ret == 0
    s1 = load_report(pytester.path / "s1" / "report.json")["targets"][0]["npu"]
    assert s1["placement"] is None and s1["layers"]  # this shard ran npu_latency, not npu_ops
    repo = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "pytest_tinyml.cli", "merge", "joined", "s1", "s2"],
                          cwd=pytester.path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    stamp = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")
    for name in ("report.json", "report.md", "report.html"):
        joined, whole = (stamp.sub(b"", (pytester.path / d / name).read_bytes()) for d in ("joined", "all"))
        assert joined == whole, name
    npu = load_report(pytester.path / "joined" / "report.json")["targets"][0]["npu"]
    assert npu["placement"] == {"npu": npu["placement"]["npu"], "cpu": {}} and npu["layers"] == s1["layers"]


def _emulates_the_m55() -> bool:
    import shutil

    from pytest_tinyml.emulate import insn_plugin
    from pytest_tinyml.emulate.toolchain import toolchain_status

    if not toolchain_status().ok or insn_plugin.host_compiler() is None or shutil.which("qemu-system-arm") is None:
        return False
    out = subprocess.run(["qemu-system-arm", "-M", "help"], capture_output=True, text=True, check=False).stdout
    return any(line.split(" ", 1)[0] == "mps3-an547" for line in out.splitlines())


@needs_vela
def test_a_model_with_a_cpu_fallback_gets_the_cpu_only_firmware_run_and_vela_s_npu_estimate(
    tflite_factory: ModuleType, pytester: pytest.Pytester, run_pytest  # type: ignore[no-untyped-def]
) -> None:
    if not _emulates_the_m55():
        pytest.skip("needs arm-none-eabi-gcc, a host C compiler and qemu-system-arm with the mps3-an547 machine")
    (pytester.path / "mixed.tflite").write_bytes(tflite_factory.int8_cnn(0, float_output=True))
    result = run_pytest("--tinyml-model=mixed.tflite", "--tinyml-board", "alif_e7_he", "-k",
                        "firmware_bitexact or npu_latency", "--tinyml-firmware-runtime", "tinyml",
                        "--tinyml-firmware-samples", "2", "-o", "tinyml_cache_dir=c", "--tinyml-report", "rep")
    outcomes = run_pytest.outcomes(result)
    assert outcomes["mixed.tflite::firmware_bitexact"] == outcomes["mixed.tflite::npu_latency"] == "PASSED"
    (target,) = load_report(pytester.path / "rep" / "report.json")["targets"]
    cpu, npu = target["latency"], target["npu"]  # both sets of numbers: the CPU-only run and Vela's NPU estimate
    assert cpu["seconds"] > 0 and cpu["core"] == "cortex-m55" and npu["seconds"] > 0
    assert cpu["ran_where"].startswith("CPU-only run: the firmware ran every operator on the cortex-m55 (emulated)")
    assert "Vela puts CONV_2D" in cpu["ran_where"] and cpu["ran_where"].endswith("leaves DEQUANTIZE on the CPU")
    items = {i["check"]: i for i in target["items"]}
    assert f"ran where: {cpu['ran_where']}" in items["firmware_bitexact"]["details"]
    assert f"Ran where: {cpu['ran_where']}" in (pytester.path / "rep" / "report.md").read_text()
    assert "CPU-only run: the firmware ran every operator" in result.stdout.str()
