"""Layer-by-layer localization of a firmware/host mismatch (emulate/localize.py), with host TFLM."""

from __future__ import annotations

from types import ModuleType

import numpy as np

from pytest_tinyml.analysis import tflm
from pytest_tinyml.analysis.model import parse_model
from pytest_tinyml.emulate.localize import first_divergence, with_intermediate_outputs


def _host(model: bytes, sample: object, n: int) -> tuple[np.ndarray, ...]:
    return tuple(tflm.invoke(model, [sample], num_outputs=n)[0])


def test_debug_model_keeps_the_output_and_exposes_every_op(tflite_factory: ModuleType) -> None:
    model = tflite_factory.int8_cnn(seed=3, fc_units=12)
    debug, added = with_intermediate_outputs(model)
    info, dinfo = parse_model(model, "m"), parse_model(debug, "d")
    assert len(dinfo.outputs) == len(info.outputs) + len(added)
    assert [a.op_name for a in added] == [op.name for op in info.ops][: len(added)]
    sample = np.random.default_rng(0).integers(-128, 128, (1, 8, 8, 1), dtype=np.int8)
    original = tflm.invoke(model, [sample])[0]
    everything = _host(debug, sample, len(dinfo.outputs))
    assert everything[0].tobytes() == original.tobytes()  # the model's own output did not move or change


def test_first_divergence_names_the_operator(tflite_factory: ModuleType) -> None:
    model = tflite_factory.int8_cnn(seed=4, fc_units=12)
    sample = np.random.default_rng(1).integers(-128, 128, (1, 8, 8, 1), dtype=np.int8)
    _, added = with_intermediate_outputs(model)
    victim = added[2]  # FAKE target: host TFLM with one LSB flipped in the third op's output

    def fake_target(debug: bytes, s: object) -> tuple[np.ndarray, ...]:
        outs = [o.copy() for o in _host(debug, s, len(added) + 1)]
        flat = outs[victim.output_position].reshape(-1)
        flat[0] = flat[0] + 1 if flat[0] < 127 else flat[0] - 1
        return tuple(outs)

    found = first_divergence(model, sample, fake_target, _host)
    assert found.op is not None and found.op.op_index == victim.op_index and found.differing == 1
    assert f"#{victim.op_index} {victim.op_name}" in found.describe()
    same = first_divergence(model, sample, lambda d, s: _host(d, s, len(added) + 1), _host)
    assert same.op is None and "every intermediate tensor matched" in same.describe()
