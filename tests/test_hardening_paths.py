"""Spec and model paths as hostile input (issue 19 items 6 and 8).

A literal path that exists wins over glob interpretation (``model[v2].tflite``); a spec or model that is not
a regular file (FIFO, device, socket, a symlink to one) fails its own item naming it and what it is, and the
other files of the run are still judged; nothing ever waits on a FIFO. The timeouts read from the ini file
say their accepted range.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tinyml import invocation
from pytest_tinyml._util.files import NotRegularFile, not_regular, read_regular, target_key
from pytest_tinyml.errors import SpecError
from pytest_tinyml.options import RunOptions
from pytest_tinyml.spec import load_spec

if TYPE_CHECKING:
    from conftest import PytestRunner

AUDIT = ("size", "int8_io", "tflm_ops", "arena", "flash")
NOT_FIRMWARE = ["-m", "not firmware", "-rA"]


def lines_starting(out: str, word: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith(word + " ")]


def odd_files(where: Path, suffix: str) -> dict[str, str]:
    """A FIFO, a symlink to /dev/zero and a socket named ``*suffix`` in ``where``: name -> what it is."""
    os.mkfifo(where / f"fifo{suffix}")
    (where / f"zero{suffix}").symlink_to("/dev/zero")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(where / f"sock{suffix}"))
    sock.close()
    return {
        f"fifo{suffix}": "a FIFO (named pipe)",
        f"zero{suffix}": "a symbolic link to /dev/zero, a character device",
        f"sock{suffix}": "a socket",
    }


def test_literal_path_with_brackets_wins_over_the_glob(tflite_factory: ModuleType, run_pytest: PytestRunner, tmp_path: Path) -> None:
    (tmp_path / "model[v2].tflite").write_bytes(tflite_factory.int8_cnn(1))
    (tmp_path / "model2.tflite").write_bytes(tflite_factory.int8_cnn(2))  # what the glob model[v2].tflite would match
    (tmp_path / "test_other.py").write_text("def test_not_asked_for():\n    raise AssertionError\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    outcome, out = run_pytest.checked(["--tinyml-model", "model[v2].tflite", *NOT_FIRMWARE], tmp_path)
    assert outcome.kind == "pytest_exit_0", out
    assert lines_starting(out, "PASSED") == [f"PASSED model[v2].tflite::{name}" for name in AUDIT], out
    assert "model2" not in out and "test_other" not in out


def test_bracket_path_next_to_a_plain_one_collects_each_once(tflite_factory: ModuleType, run_pytest: PytestRunner, tmp_path: Path) -> None:
    (tmp_path / "model[v2].tflite").write_bytes(tflite_factory.int8_cnn(1))
    (tmp_path / "good.tflite").write_bytes(tflite_factory.int8_cnn(0))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    outcome, out = run_pytest.checked(["--tinyml-model", "model[v2].tflite", "--tinyml-model", "good.tflite",
                                  *NOT_FIRMWARE], tmp_path)
    assert outcome.kind == "pytest_exit_0", out
    passed = lines_starting(out, "PASSED")
    assert sorted(passed) == sorted([f"PASSED good.tflite::{n}" for n in AUDIT]
                                    + [f"PASSED model[v2].tflite::{n}" for n in AUDIT]), out


def test_models_that_are_not_regular_files_fail_their_own_item(tflite_factory: ModuleType, run_pytest: PytestRunner, tmp_path: Path) -> None:
    (tmp_path / "good.tflite").write_bytes(tflite_factory.int8_cnn(0))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    kinds = odd_files(tmp_path, ".tflite")
    start = time.monotonic()
    for args in (["--tinyml-model", "*.tflite"], [a for name in ["good.tflite", *kinds] for a in ("--tinyml-model", name)],
                 ["good.tflite", *kinds]):  # named as test paths on the command line
        outcome, out = run_pytest.checked([*args, *NOT_FIRMWARE], tmp_path, timeout=120)
        assert outcome.kind == "pytest_exit_1", out
        assert sorted(lines_starting(out, "PASSED")) == sorted(f"PASSED good.tflite::{n}" for n in AUDIT), out
        failed = lines_starting(out, "FAILED")
        assert len(failed) == len(kinds), out
        for name, kind in kinds.items():
            assert f"{name}: not a regular file: {kind} (fix: pass the .tflite file itself)" in out, out
            assert any(ln.startswith(f"FAILED {name}::model - {name}: not a regular file") for ln in failed), out
    assert time.monotonic() - start < 110  # nothing waited on the FIFO


def test_a_fifo_model_in_a_python_package_fails_its_own_item(tflite_factory: ModuleType, run_pytest: PytestRunner, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "test_a.py").write_text("def test_a():\n    pass\n")
    (pkg / "good.tflite").write_bytes(tflite_factory.int8_cnn(0))
    os.mkfifo(pkg / "fifo.tflite")
    outcome, out = run_pytest.checked(["pkg", "--tinyml-model", "pkg/*.tflite", *NOT_FIRMWARE], tmp_path, timeout=120)
    assert outcome.kind == "pytest_exit_1", out
    assert "PASSED pkg/test_a.py::test_a" in out and "PASSED pkg/good.tflite::size" in out
    assert "FAILED pkg/fifo.tflite::model - pkg/fifo.tflite: not a regular file: a FIFO" in out, out


def test_specs_that_are_not_regular_files_fail_their_own_item(tflite_factory: ModuleType, run_pytest: PytestRunner, tmp_path: Path) -> None:
    (tmp_path / "good.tflite").write_bytes(tflite_factory.int8_cnn(0))
    (tmp_path / "good.yaml").write_text("version: 1\nname: good\nmodel: {tflite: good.tflite}\n"
                                        "constraints: {max_size: 40000B}\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    kinds = odd_files(tmp_path, ".yaml")
    outcome, out = run_pytest.checked(["--tinyml-spec", "*.yaml", "-rA"], tmp_path, timeout=120)
    assert outcome.kind == "pytest_exit_1", out
    assert lines_starting(out, "PASSED") == ["PASSED good.yaml::size"], out
    for name, kind in kinds.items():
        assert f"{name}: not a regular file: {kind} (fix: name the spec YAML file itself)" in out, out
        assert any(ln.startswith(f"FAILED {name}::spec - ") for ln in out.splitlines()), out


def test_a_fifo_spec_for_models_fails_their_items_without_waiting(tflite_factory: ModuleType, run_pytest: PytestRunner, tmp_path: Path) -> None:
    (tmp_path / "good.tflite").write_bytes(tflite_factory.int8_cnn(0))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    os.mkfifo(tmp_path / "limits.yaml")
    outcome, out = run_pytest.checked(["--tinyml-spec", "limits.yaml", "--tinyml-model", "good.tflite", "-rA"], tmp_path,
                                 timeout=120)
    assert outcome.kind == "pytest_exit_1", out
    assert "limits.yaml: not a regular file: a FIFO (named pipe) (fix: name the spec YAML file itself)" in out, out


def test_usage_errors_show_the_pattern_escaped(run_pytest: PytestRunner, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    outcome, out = run_pytest.checked(["--tinyml-model", "nope\x1b[2J*.tflite"], tmp_path)
    assert outcome.kind == "pytest_exit_4", out
    assert ("ERROR: --tinyml-model nope\\x1b[2J*.tflite: the pattern matches no file (fix: check the pattern)"
            in out.splitlines()), out
    outcome, out = run_pytest.checked(["--tinyml-model", "x" * 5000 + "*.tflite"], tmp_path)  # too long to stat
    assert outcome.kind == "pytest_exit_4", out
    assert "the pattern matches no file" in out


def test_file_checks_never_open_or_wait(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "gone").symlink_to(tmp_path / "missing")
    (tmp_path / "file").write_bytes(b"abc")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    assert not_regular(tmp_path / "file") is None and not_regular(tmp_path / "link") is None
    assert not_regular(tmp_path / "fifo") == "a FIFO (named pipe)"
    assert not_regular(tmp_path / "zero") == "a symbolic link to /dev/zero, a character device"
    assert not_regular(tmp_path / "gone") == f"a symbolic link to {tmp_path / 'missing'}, which does not exist"
    assert not_regular(tmp_path) == "a directory"
    with pytest.raises(NotRegularFile, match="a FIFO"):
        read_regular(tmp_path / "fifo", 10)  # O_NONBLOCK: no writer, no wait
    with pytest.raises(NotRegularFile, match="a character device"):
        read_regular(tmp_path / "zero", 10)
    assert read_regular(tmp_path / "link", 2) == b"ab"
    assert target_key(tmp_path / "link") == (tmp_path / "file").resolve()
    assert target_key(tmp_path / "zero") == tmp_path.resolve() / "zero"  # the link the user named, not /dev/zero
    with pytest.raises(SpecError) as err:
        load_spec(tmp_path / "fifo")
    assert str(err.value) == (f"{tmp_path / 'fifo'}: not a regular file: a FIFO (named pipe) "
                              "(fix: name the spec YAML file itself)")


# --- item 8: the timeouts of the ini file -----------------------------------------------------------
class _Config:
    def __init__(self, **ini: str) -> None:
        self.ini = ini

    def getini(self, name: str) -> Any:
        return self.ini[name]


@pytest.mark.parametrize(("text", "seconds"), [("300", 300.0), ("90s", 90.0), ("5min", 300.0), ("1.5h", 5400.0),
                                               (" 2 min ", 120.0), ("1e3", 1000.0), ("0.5", 0.5)])
def test_emulator_timeout_takes_seconds_with_units(text: str, seconds: float) -> None:
    config: Any = _Config(tinyml_emulator_timeout=text)
    assert invocation.emulator_timeout(config) == seconds


@pytest.mark.parametrize("text", ["soon", "0", "-5", "1e7", "inf", "nan", "10m", "5 parsecs", ""])
def test_timeouts_outside_their_range_say_the_range(text: str) -> None:
    for name in ("tinyml_emulator_timeout", "tinyml_tflm_timeout"):
        config: Any = _Config(**{name: text})
        with pytest.raises(pytest.UsageError) as err:
            invocation.ini_seconds(config, name)
        assert str(err.value) == (f"{name} = {text!r}: expected a positive number of seconds below 10,000,000, "
                                  "optionally with a unit s, min or h (e.g. 60, 90s, 5min)")


def test_emulator_timeout_reaches_the_run_options(run_pytest: PytestRunner, tmp_path: Path) -> None:
    assert RunOptions(cache_dir=tmp_path).emulator_timeout == 300.0
    (tmp_path / "test_seen.py").write_text(
        "from pytest_tinyml.session import SESSION_KEY\n"
        "def test_seen(request):\n"
        "    print('EMULATOR_TIMEOUT', request.config.stash[SESSION_KEY].options.emulator_timeout)\n"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\ntinyml_emulator_timeout = 10min\n")
    outcome, out = run_pytest.checked(["-s", "test_seen.py"], tmp_path)
    assert outcome.kind == "pytest_exit_0", out
    assert "EMULATOR_TIMEOUT 600.0" in out
    (tmp_path / "pytest.ini").write_text("[pytest]\ntinyml_emulator_timeout = later\n")
    outcome, out = run_pytest.checked(["test_seen.py"], tmp_path)
    assert outcome.kind == "pytest_exit_4", out
    assert ("ERROR: tinyml_emulator_timeout = 'later': expected a positive number of seconds below 10,000,000, "
            "optionally with a unit s, min or h (e.g. 60, 90s, 5min)") in out


@pytest.mark.firmware
def test_an_emulator_run_past_the_ini_limit_fails_naming_the_option(
    tflite_factory: ModuleType, run_pytest: PytestRunner, tmp_path: Path
) -> None:
    from pytest_tinyml.emulate import toolchain_status

    if not toolchain_status().ok:
        pytest.skip(f"firmware toolchain missing; to enable: {toolchain_status().hint}")
    (tmp_path / "slow.tflite").write_bytes(tflite_factory.int8_cnn(seed=1, height=32, width=32, filters=16))
    (tmp_path / "pytest.ini").write_text(
        f"[pytest]\ntinyml_emulator_timeout = 0.2s\ntinyml_cache_dir = {tmp_path / 'c'}\n")
    outcome, out = run_pytest.checked(["--tinyml-model", "slow.tflite", "--tinyml-firmware-runtime", "tinyml",
                                       "--tinyml-firmware-samples", "400", "-rA", "-k", "firmware_bitexact"],
                                      tmp_path, timeout=300)
    assert outcome.kind == "pytest_exit_1", out
    assert "emulator did not finish within 0.2 s" in out
    assert "raise ini tinyml_emulator_timeout (now 0.2 s" in out


def test_a_baseline_that_is_not_a_regular_file_is_one_line_without_waiting(tflite_factory: ModuleType, run_pytest: PytestRunner, tmp_path: Path) -> None:
    (tmp_path / "good.tflite").write_bytes(tflite_factory.int8_cnn(0))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    for name, kind in (("fifo.json", "a FIFO (named pipe)"), ("zero.json", "a symbolic link to /dev/zero, a character device")):
        outcome, out = run_pytest.checked(["--tinyml-model", "good.tflite", "--tinyml-baseline", name], tmp_path, timeout=60)
        assert outcome.kind == "pytest_exit_4", out
        assert f"ERROR: {name}: not a regular file: {kind} (fix: pass a report.json written by --tinyml-report, or drop " \
               "--tinyml-baseline)" in out, out
