"""Node ids, markers and everyday pytest use of tinyml items (pytester, tiny real .tflite files).

Models outside the rootdir used to get the node id ``::size`` (no file part): ``--dist loadfile`` then ran
half the items and exited 0. Every item must run, under its own id, however the models are given (the
``-n 2 --dist loadfile`` run is in test_reports_plugin.py, with the reports it writes).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PytestRunner

pytest_plugins = ["pytester"]

AUDIT_ITEMS = ("size", "int8_io", "tflm_ops", "arena", "flash")  # the audit items that need no firmware


@pytest.fixture
def outside(tflite_factory: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three models in a directory that is not under the pytester rootdir."""
    root = tmp_path_factory.mktemp("outside_models")
    for i, filters in enumerate((4, 4, 16)):
        (root / f"m{i}.tflite").write_bytes(tflite_factory.int8_cnn(i, filters=filters))
    return root


def statuses(result: pytest.RunResult) -> dict[str, str]:
    out = {}
    for line in result.outlines:
        for word in ("PASSED", "FAILED", "SKIPPED", "ERROR"):
            if line.startswith(word + " "):
                out[line.split(" ", 1)[1].split(" - ")[0]] = word
    return out


def test_node_id_on_the_command_line_selects_one_item(
    run_pytest: PytestRunner, pytester: pytest.Pytester, outside: Path
) -> None:
    pytester.makeini("[pytest]\n")
    model = (outside / "m1.tflite").as_posix()
    # with the model as the only argument pytest would pick a rootdir above it; pin it here
    result = run_pytest("-p", "no:cacheprovider", "--rootdir", str(pytester.path), f"{model}::arena", cache=True)
    assert statuses(result) == {f"{model}::arena": "PASSED"}, result.stdout.str()


def test_spec_without_model_gives_constraints_and_board_and_lf_reruns_failures(run_pytest: PytestRunner,
    pytester: pytest.Pytester, outside: Path
) -> None:
    pytester.makeini("[pytest]\n")
    spec = pytester.path / "limits.yaml"
    spec.write_text("version: 1\nname: limits\nboard: stm32f405\nconstraints: {max_size: 4000B, arena: board}\n")
    models = str(outside / "*.tflite")
    first = run_pytest("--tinyml-spec", "limits.yaml", "--tinyml-model", models, "-k", "size or arena", cache=True)
    seen = statuses(first)
    big = f"{(outside / 'm2.tflite').as_posix()}::size"
    assert seen[big] == "FAILED" and len(seen) == 6, first.stdout.str()
    assert [k for k, v in seen.items() if v == "FAILED"] == [big]
    first.stdout.fnmatch_lines(["*(board stm32f405)*"])
    again = run_pytest("--lf", "--tinyml-spec", "limits.yaml", "--tinyml-model", models, cache=True)
    assert statuses(again) == {big: "FAILED"}, again.stdout.str()
    # the same spec alone has no model to judge: its ::spec item says so
    alone = run_pytest("-p", "no:cacheprovider", "--tinyml-spec", "limits.yaml", cache=True)
    alone.stdout.fnmatch_lines(["*limits.yaml:1:1*'model' is a required property*"])
    assert alone.ret == 1


def test_not_firmware_deselects_firmware_items_and_runs_no_firmware(
    run_pytest: PytestRunner, tflite_factory: ModuleType, pytester: pytest.Pytester
) -> None:
    (pytester.path / "m.tflite").write_bytes(tflite_factory.int8_cnn(0))
    cache = pytester.path / "cache"
    result = run_pytest("-p", "no:cacheprovider", "--tinyml-model", "m.tflite", "-m", "not firmware",
                 "-o", f"tinyml_cache_dir={cache}", cache=True)
    assert statuses(result) == {f"m.tflite::{n}": "PASSED" for n in AUDIT_ITEMS}, result.stdout.str()
    result.stdout.fnmatch_lines(["*5 passed, 2 deselected*"])
    # nothing was compiled or emulated: no firmware build directory, no run-cache entry
    assert not (cache / "firmware").exists() and not (cache / "runs").exists(), sorted(cache.rglob("*"))
    result = run_pytest("-p", "no:cacheprovider", "--tinyml-model", "m.tflite", "--collect-only", "-q",
                 "-m", "firmware", cache=True)
    assert [line for line in result.outlines if "::" in line] == ["m.tflite::firmware_bitexact",
                                                                   "m.tflite::firmware_ram"]


def test_boards_listing(run_pytest: PytestRunner, pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        'def pytest_tinyml_boards():\n'
        '    return [("my_board", {"core": "cortex-m33", "clock": "150MHz", "flash": "2MiB", "ram": "512KiB",'
        ' "source": "test"})]\n'
    )
    result = run_pytest("-p", "no:cacheprovider", "--tinyml-boards", cache=True)
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "board*core*clock*flash*RAM*emulators",
        "*arduino_nano_33_ble_sense*cortex-m4f*64 MHz*1,048,576 B*262,144 B*qemu mps2-an386*",
        "*my_board*cortex-m33*150 MHz*2,097,152 B*524,288 B*-*",
    ])
    # Renode 1.15.1's Cortex-M7 model gave outputs different from host TFLM: the listing says those are refused
    result.stdout.fnmatch_lines(["stm32f746 *renode platforms/cpus/stm32f746.repl (refused for cortex-m7 builds)"])
    result.stdout.fnmatch_lines(["stm32f405 *renode platforms/cpus/stm32f4.repl"])
    assert "stm32f4.repl (refused" not in result.stdout.str()
    assert "collected" not in result.stdout.str()
    help_text = "".join(run_pytest("--help", cache=True).stdout.str().split())  # argparse wraps at hyphens and spaces
    assert "--tinyml-boardslists" in help_text
    assert "elseRenodewhen`renode`isonPATH" in help_text
    for name in ("TINYML_OFFLINE", "TFLM_ROOT", "TINYML_TFLM_SOURCES"):
        assert name in help_text


def test_rootdir_taken_from_a_model_outside_is_warned_once(
    run_pytest: PytestRunner,
    tflite_factory: ModuleType,
    pytester: pytest.Pytester,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """pytest fixes the rootdir before entry-point plugins add their options, so ``--tinyml-model PATH``
    (space form) to a model outside the project makes the model's folder the rootdir and the project's ini
    is ignored. One warning says so and how to avoid it; the ``=`` form and --rootdir give no warning."""
    outside = tmp_path_factory.mktemp("elsewhere")
    (outside / "m.tflite").write_bytes(tflite_factory.int8_cnn(0))
    pytester.makeini("[pytest]\nmarkers =\n    project_marker: ours\n")
    common = ("-p", "no:cacheprovider", "-m", "not firmware", "-k", "size")
    spaced = run_pytest(*common, "--tinyml-model", str(outside / "m.tflite"), cache=True)
    assert spaced.ret == 0, spaced.stdout.str()
    said = [ln for ln in spaced.outlines if "pytest took its rootdir" in ln]
    assert len(said) == 1, spaced.stdout.str()
    assert f"write '--tinyml-model={outside / 'm.tflite'}' or pass --rootdir" in said[0]
    rootdir = next(ln for ln in spaced.outlines if ln.startswith("rootdir: "))
    assert str(pytester.path) not in rootdir and "configfile" not in rootdir, rootdir  # what the warning is about
    for args in (("--tinyml-model=" + str(outside / "m.tflite"),),
                 ("--rootdir", str(pytester.path), "--tinyml-model", str(outside / "m.tflite"))):
        fine = run_pytest(*common, *args, cache=True)
        assert fine.ret == 0 and "pytest took its rootdir" not in fine.stdout.str(), fine.stdout.str()
        assert f"rootdir: {pytester.path}" in fine.stdout.str()
