"""Firmware API: toolchain detection, unsupported ops, errors, caching, export, backends.

Models are written directly as flatbuffers (tests/tflite_factory.py), so no TensorFlow is needed here.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from pytest_tinyml.emulate import (
    CORES,
    FirmwareError,
    export,
    firmware_dir,
    latency_estimate,
    run_firmware,
    toolchain_status,
    unsupported_ops,
)
from pytest_tinyml.emulate.build import elf_section_sizes, model_c_source
from pytest_tinyml.emulate.export import tflm_method
from pytest_tinyml.emulate.policy import RUNTIME_ENV, resolve_runtime
from pytest_tinyml.emulate.tflm_tree import TFLM_ENV, TflmTree, tflm_tree
from pytest_tinyml.errors import NotEvaluable, TinyMLError

needs_toolchain = pytest.mark.skipif(
    not toolchain_status().ok,
    reason=f"firmware toolchain missing ({', '.join(toolchain_status().missing)}); to enable: {toolchain_status().hint}",
)


@pytest.fixture(scope="session")
def firmware_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "firmware-cache"


def _host_tflm(model: bytes, samples: list[np.ndarray]) -> list[np.ndarray]:
    from pytest_tinyml.analysis.tflm import invoke

    return invoke(model, samples, timeout=300)


def _int8_samples(shape: tuple[int, ...], n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, size=shape, dtype=np.int8) for _ in range(n)]


def _requantize_model(tf_: ModuleType, seed: int) -> bytes:
    """int8 -> int8 QUANTIZE with random scales and zero points (a requantization)."""
    rng = np.random.default_rng(seed)
    g = tf_.Graph()
    x = g.add(tf_.Tensor("x", (1, 37), tf_.INT8, scale=(float(rng.uniform(0.001, 0.5)),),
                         zero_point=(int(rng.integers(-128, 128)),)))
    y = g.add(tf_.Tensor("y", (1, 37), tf_.INT8, scale=(float(rng.uniform(0.001, 0.5)),),
                         zero_point=(int(rng.integers(-128, 128)),)))
    g.ops.append(tf_.Op(tf_.OP["QUANTIZE"], [x], [y]))
    g.inputs, g.outputs = [x], [y]
    return g.build()


def _softmax_model(tf_: ModuleType, seed: int, beta: float) -> bytes:
    rng = np.random.default_rng(seed)
    g = tf_.Graph()
    x = g.add(tf_.Tensor("x", (1, 23), tf_.INT8, scale=(float(rng.uniform(0.01, 0.5)),),
                         zero_point=(int(rng.integers(-50, 50)),)))
    y = g.add(tf_.Tensor("y", (1, 23), tf_.INT8, scale=(1 / 256,), zero_point=(-128,)))
    g.ops.append(tf_.Op(tf_.OP["SOFTMAX"], [x], [y], tf_.OPTION_TYPES["SoftmaxOptions"], [(0, "f", beta)]))
    g.inputs, g.outputs = [x], [y]
    return g.build()


# ------------------------------------------------------------------------------------ no toolchain needed
def test_toolchain_status_reports_missing_tools_with_apt_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    status = toolchain_status()
    assert not status.ok
    assert set(status.missing) == {"arm-none-eabi-gcc", "qemu-system-arm"}
    assert "apt-get install" in status.hint and "qemu-system-arm" in status.hint
    renode = toolchain_status("renode")
    assert "renode" in renode.missing and "renode" in renode.hint.lower()


def test_run_firmware_without_toolchain_is_not_evaluable(
    tflite_factory: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NotEvaluable) as info:
        run_firmware(tflite_factory.int8_cnn(), _int8_samples((1, 8, 8, 1), 1, 0), cache_dir=tmp_path)
    assert "arm-none-eabi-gcc" in info.value.reason
    assert "apt-get" in info.value.enable


def test_unsupported_ops_names_float_custom_and_hybrid_ops(tflite_factory: ModuleType) -> None:
    assert unsupported_ops(tflite_factory.int8_cnn()) == []
    assert unsupported_ops(tflite_factory.float_fc()) == ["FULLY_CONNECTED[float32]"]
    assert unsupported_ops(tflite_factory.custom_op_model("MyFancyOp")) == ["MyFancyOp"]
    assert unsupported_ops(tflite_factory.dynamic_range_conv()) == ["CONV_2D[float32]"]
    from pytest_tinyml.analysis.model import parse_model

    assert unsupported_ops(parse_model(tflite_factory.float_fc(), "x")) == ["FULLY_CONNECTED[float32]"]


def test_latency_estimate_uses_core_cpi_table() -> None:
    est = latency_estimate(1_000_000, "cortex-m4", 100_000_000)
    assert est.cpi == CORES["cortex-m4"].cpi
    assert est.seconds == pytest.approx(1_000_000 * est.cpi / 100e6)
    assert "CPI" in est.method
    assert latency_estimate(1e6, "cortex-m7", 100_000_000).seconds < est.seconds
    with pytest.raises(ValueError):
        latency_estimate(1, "cortex-a53", 1)


def test_firmware_dir_finds_the_sources() -> None:
    fw = firmware_dir()
    assert (fw / "runtime" / "tm_runtime.c").is_file()
    assert (fw / "boards" / "mps2-an386.ld").is_file()


def test_model_c_source_is_aligned_and_byte_exact() -> None:
    data = bytes(range(256)) * 3 + b"\x01"
    src = model_c_source(data, "g_model")
    assert "_Alignas(16)" in src and "alignas(16)" in src
    assert f"g_model_len = {len(data)}u" in src
    body = src[src.index("{") + 1 : src.index("};")]
    assert bytes(int(v, 16) for v in body.replace("\n", "").split(",") if v.strip()) == data


def test_export_writes_array_resolver_and_arena(tflite_factory: ModuleType, tmp_path: Path) -> None:
    model = tflite_factory.int8_cnn()
    res = export(model, tmp_path / "out", arena_bytes=12345)
    resolver = res.resolver.read_text()
    for method in ("AddConv2D", "AddDepthwiseConv2D", "AddMaxPool2D", "AddReshape", "AddFullyConnected", "AddSoftmax"):
        assert f"resolver.{method}()" in resolver
    assert "MicroMutableOpResolver<6>" in resolver
    assert "#define TINYML_ARENA_SIZE 12345u" in res.arena_header.read_text()
    assert "g_model_len" in res.model_h.read_text()
    custom = export(tflite_factory.custom_op_model("MyFancyOp"), tmp_path / "c", arena_bytes=1)
    assert "AddCustom" in custom.resolver.read_text()
    assert tflm_method("CONV_2D") == "Conv2D" and tflm_method("PADV2") == "PadV2" and tflm_method("NOPE") is None


@needs_toolchain
def test_exported_array_compiles_16_byte_aligned(tflite_factory: ModuleType, tmp_path: Path) -> None:
    model = tflite_factory.int8_cnn()
    res = export(model, tmp_path, arena_bytes=100)
    obj = tmp_path / "m.o"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-c", str(res.model_c), "-o", str(obj)], check=True)
    out = subprocess.run(["arm-none-eabi-readelf", "-S", "-W", str(obj)], capture_output=True, text=True, check=True).stdout
    rodata = next(line for line in out.splitlines() if ".rodata" in line and ".rel" not in line)
    assert int(rodata.split()[-1]) >= 16  # section alignment (last column)


# ------------------------------------------------------------------------------------ with the toolchain
@needs_toolchain
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_requantize_int8_to_int8_matches_tflm(
    tflite_factory: ModuleType, seed: int, firmware_cache: Path
) -> None:
    model = _requantize_model(tflite_factory, seed)
    samples = _int8_samples((1, 37), 8, seed)
    want = _host_tflm(model, samples)
    got = run_firmware(model, samples, cache_dir=firmware_cache).outputs
    assert [g.tobytes() for g in got] == [np.asarray(w).tobytes() for w in want]


@needs_toolchain
@pytest.mark.parametrize("beta", [0.25, 1.0, 3.0])
def test_softmax_beta_matches_tflm(tflite_factory: ModuleType, beta: float, firmware_cache: Path) -> None:
    model = _softmax_model(tflite_factory, int(beta * 4), beta)
    samples = _int8_samples((1, 23), 8, 7)
    want = _host_tflm(model, samples)
    got = run_firmware(model, samples, cache_dir=firmware_cache).outputs
    assert [g.tobytes() for g in got] == [np.asarray(w).tobytes() for w in want]


@needs_toolchain
def test_factory_cnn_result_fields_cache_and_calibration(
    tflite_factory: ModuleType, firmware_cache: Path
) -> None:
    model = tflite_factory.int8_cnn(seed=5, fc_units=16)
    samples = _int8_samples((1, 8, 8, 1), 12, 5)
    want = _host_tflm(model, samples)
    first = run_firmware(model, samples, cache_dir=firmware_cache)
    second = run_firmware(model, samples, cache_dir=firmware_cache)
    assert [g.tobytes() for g in first.outputs] == [np.asarray(w).tobytes() for w in want]
    assert second.build_cached  # one firmware per board: the model travels in the input block, not the ELF
    other = run_firmware(tflite_factory.int8_cnn(seed=6, fc_units=16), samples[:1], cache_dir=firmware_cache)
    assert other.build_cached and other.elf_path == first.elf_path
    assert "-semihosting" not in first.emulator_command and "loader,file=" in first.emulator_command
    assert second.seconds < 2.0
    assert second.instructions_per_inference == first.instructions_per_inference  # -icount is deterministic
    # the 200,000-instruction calibration loop measures within one SysTick tick (40 instructions at 25 MHz)
    assert abs(first.calibration_instructions - 200_000) <= 80
    sizes = elf_section_sizes(first.elf_path)
    assert first.text_bytes >= sizes[".text"]
    assert first.rodata_bytes >= len(model)
    assert first.flash_bytes == first.text_bytes + first.rodata_bytes + sizes[".data"]
    assert first.static_ram_bytes == sizes[".data"] + sizes[".bss"]
    assert first.arena_bytes == first.activation_bytes + first.persistent_bytes
    # activations: conv out 6x6x4 and depthwise out 6x6x4 are alive together (>= 2 x 144 bytes)
    assert first.activation_bytes >= 2 * 144
    assert first.latency is not None and first.latency.seconds > 0


@needs_toolchain
def test_unsupported_op_is_not_evaluable_before_building(tflite_factory: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(NotEvaluable) as info:
        run_firmware(tflite_factory.float_fc(), [np.zeros((1, 16), np.float32)], cache_dir=tmp_path)
    assert "FULLY_CONNECTED[float32]" in info.value.reason
    assert not list(tmp_path.glob("lib-*"))  # nothing was built


@needs_toolchain
def test_timeout_raises_firmware_error(tflite_factory: ModuleType, firmware_cache: Path) -> None:
    model = tflite_factory.int8_cnn(seed=1, height=32, width=32, filters=16)
    with pytest.raises(FirmwareError) as info:
        run_firmware(model, _int8_samples((1, 32, 32, 1), 400, 1), cache_dir=firmware_cache, timeout=0.2)
    assert info.value.stage == "timeout"
    assert isinstance(info.value, TinyMLError)


@needs_toolchain
def test_model_too_big_for_board_ram_is_reported(tflite_factory: ModuleType, firmware_cache: Path) -> None:
    model = tflite_factory.int8_cnn(seed=2, height=120, width=120, filters=8)  # 118x118x8 int8 x2 tensors > 128 KB
    with pytest.raises(FirmwareError) as info:
        run_firmware(model, _int8_samples((1, 120, 120, 1), 1, 2), machine="netduinoplus2", cache_dir=firmware_cache)
    assert info.value.stage == "init"
    assert "arena too small" in str(info.value) and "short by" in str(info.value)
    ok = run_firmware(model, _int8_samples((1, 120, 120, 1), 1, 2), machine="mps2-an386", cache_dir=firmware_cache)
    assert ok.arena_bytes > 128 * 1024


@needs_toolchain
def test_m0plus_code_runs_bit_exact_on_the_m4_machine(
    tflite_factory: ModuleType, firmware_cache: Path
) -> None:
    model = tflite_factory.int8_cnn(seed=3)
    samples = _int8_samples((1, 8, 8, 1), 4, 3)
    m4 = run_firmware(model, samples, cache_dir=firmware_cache)
    m0 = run_firmware(model, samples, core="cortex-m0plus", cache_dir=firmware_cache)
    assert [o.tobytes() for o in m0.outputs] == [o.tobytes() for o in m4.outputs]
    assert m0.instructions_per_inference != m4.instructions_per_inference  # different instruction set


def test_core_machine_mismatch_is_not_evaluable(tflite_factory: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(NotEvaluable):
        run_firmware(tflite_factory.int8_cnn(), _int8_samples((1, 8, 8, 1), 1, 0), core="cortex-m7", machine="netduinoplus2",
                     cache_dir=tmp_path)


# ------------------------------------------------------------------------------------ real TFLM (opt-in)
def test_runtime_switch_argument_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    assert resolve_runtime() == "tinyml"
    monkeypatch.setenv(RUNTIME_ENV, "tflm")
    assert resolve_runtime() == "tflm"
    assert resolve_runtime("tinyml") == "tinyml"  # the argument wins
    monkeypatch.setenv(RUNTIME_ENV, "cmsis")
    with pytest.raises(ValueError, match="cmsis"):
        resolve_runtime()


def test_tflm_tree_says_exactly_what_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(TFLM_ENV, raising=False)
    monkeypatch.delenv("TINYML_TFLM_SOURCES", raising=False)  # a developer's local source cache
    with pytest.raises(NotEvaluable) as unset:
        tflm_tree()
    assert "TFLM_ROOT is not set" in unset.value.reason and "third_party_downloads" in unset.value.enable
    monkeypatch.setenv(TFLM_ENV, str(tmp_path))
    with pytest.raises(NotEvaluable) as not_tflm:
        tflm_tree()
    assert "not a tflite-micro checkout" in not_tflm.value.reason
    micro = tmp_path / "tensorflow" / "lite" / "micro"
    micro.mkdir(parents=True)
    (micro / "micro_interpreter.h").write_text("// stub\n")
    with pytest.raises(NotEvaluable) as no_downloads:
        tflm_tree()
    assert "flatbuffers, gemmlowp, ruy" in no_downloads.value.reason


@needs_toolchain
def test_tflm_runtime_without_tflm_root_is_not_evaluable(
    tflite_factory: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(TFLM_ENV, raising=False)
    monkeypatch.delenv("TINYML_TFLM_SOURCES", raising=False)  # a developer's local source cache
    with pytest.raises(NotEvaluable) as info:
        run_firmware(tflite_factory.int8_cnn(), _int8_samples((1, 8, 8, 1), 1, 0), cache_dir=tmp_path, runtime="tflm")
    assert "TFLM_ROOT" in info.value.reason
    assert not list(tmp_path.iterdir())  # nothing was built


def _real_tflm_or_skip() -> TflmTree:
    try:
        return tflm_tree()
    except NotEvaluable as exc:
        pytest.skip(f"real TFLM build: {exc.reason}; to enable: {exc.enable}")


@needs_toolchain
def test_tflm_link_takes_what_the_resolver_registers(tflite_factory: ModuleType, firmware_cache: Path) -> None:
    """The TFLM library holds every kernel; a model's link takes only what its resolver registers (the
    link map names the library members it pulled)."""
    from pytest_tinyml._util.toolcache import ToolCache
    from pytest_tinyml.emulate.tflm_build import build_tflm_app

    tree = _real_tflm_or_skip()
    model = tflite_factory.int8_cnn(seed=6, fc_units=12)  # CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, FC, SOFTMAX
    built = build_tflm_app(model, "mps2-an386", "cortex-m4", firmware_cache, tools=ToolCache(firmware_cache / "tools"),
                           tree=tree)
    text = (built.elf.parent / "app.map").read_text(errors="replace")
    pulled = {m.rsplit("__", 1)[-1][:-2] + ".cc" for m in re.findall(r"libtflm\.a\(([^)]+\.o)\)", text)}
    assert {"conv.cc", "conv_common.cc", "pooling.cc", "pooling_common.cc", "softmax.cc", "kernel_util.cc"} <= pulled
    assert "add.cc" not in pulled and "svdf.cc" not in pulled
    assert "micro_interpreter.cc" in pulled and "test_helpers.cc" not in pulled


@needs_toolchain
def test_real_tflm_firmware_equals_tinyml_runtime_and_host(
    tflite_factory: ModuleType, firmware_cache: Path
) -> None:
    """The export() files built against real TFLM (TFLM_ROOT) and run under QEMU give the same bytes as the
    project's runtime and host TFLM; an arena below TFLM's need fails in AllocateTensors."""
    _real_tflm_or_skip()
    model = tflite_factory.int8_cnn(seed=6, fc_units=12)
    samples = _int8_samples((1, 8, 8, 1), 10, 6)
    want = [np.asarray(w).tobytes() for w in _host_tflm(model, samples)]
    ours = run_firmware(model, samples, cache_dir=firmware_cache)
    real = run_firmware(model, samples, cache_dir=firmware_cache, runtime="tflm", timeout=600)
    assert real.runtime == "tflm" and ours.runtime == "tinyml"
    assert [o.tobytes() for o in real.outputs] == want
    assert [o.tobytes() for o in ours.outputs] == want
    assert real.arena_bytes > ours.activation_bytes  # arena_used_bytes(): activations + TFLM bookkeeping
    assert real.instructions_per_inference > 0 and real.stack_bytes > 0
    with pytest.raises(FirmwareError) as small:
        run_firmware(model, samples[:1], cache_dir=firmware_cache, runtime="tflm", arena_bytes=256)
    assert small.value.stage == "init" and "AllocateTensors" in str(small.value)
