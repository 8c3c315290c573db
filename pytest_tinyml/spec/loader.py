"""Load a spec file: safe YAML with locations, JSON Schema validation, units, then typed objects.

Every problem becomes one :class:`SpecError` line ``file:line:col: field.path: what was expected`` with
the fix or a did-you-mean.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pytest_tinyml._util.files import NotRegularFile, not_regular, read_regular
from pytest_tinyml.errors import SpecError
from pytest_tinyml.spec.model import (
    Constraints,
    DatasetSpec,
    FirmwareSpec,
    Limit,
    ModelRef,
    QuantizationSpec,
    RegressionSpec,
    Spec,
    TrainingSpec,
)
from pytest_tinyml.spec.schema import SCHEMA
from pytest_tinyml.spec.units import UnitError, parse_percent, parse_points, parse_size, parse_time

MAX_SPEC_BYTES = 1024 * 1024
MAX_NODES = 20000
Path_ = tuple[str | int, ...]


class _Locator:
    """Turns a composed YAML node tree into plain data, recording ``(line, col)`` per field path."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.locations: dict[Path_, tuple[int, int]] = {}
        self.count = 0

    def convert(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise SpecError(
                f"more than {MAX_NODES} YAML nodes (alias expansion?)",
                where=self.source,
                fix="write a small spec without anchors that expand recursively",
            )
        self.locations.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._scalar(key_node)
                if not isinstance(key, str):
                    raise SpecError(
                        f"mapping key {key!r} is not a string",
                        where=self._mark(key_node),
                        fix="quote the key",
                    )
                if key in out:
                    raise SpecError(f"duplicate key {key!r}", where=self._mark(key_node), fix="keep one")
                self.locations[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = self.convert(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise SpecError("a mapping or list cannot be a key", where=self._mark(node), fix="use a string key")
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            # e.g. an integer of 5,000 digits (Python refuses to convert it): name the line
            raise SpecError(
                f"cannot read the value {str(node.value)[:40]!r}{'...' if len(str(node.value)) > 40 else ''}: "
                f"{str(exc)[:120]}",
                where=self._mark(node),
                fix="write a plain number or size with a unit, e.g. 50KiB",
            ) from None
        finally:
            loader.dispose()

    def _mark(self, node: yaml.Node) -> str:
        return f"{self.source}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def parse_yaml(text: str, source: str) -> tuple[Any, dict[Path_, tuple[int, int]]]:
    """Safe-load YAML text into data plus locations; syntax errors name the line and column.

    Nesting deeper than libyaml's limit (1000 levels, counting the document's top collection) is one error
    whatever the PyYAML version: ``file:line:col: YAML nesting is too deep`` at the collection that goes
    past the limit. PyYAML >= 6.0.4 (libyaml) refuses it while scanning; older versions overflow Python's
    stack while composing, and the events (read without recursion) then name the place.
    """
    max_depth = 1000
    too_deep = "YAML nesting is too deep"

    def deep_place() -> str:
        depth, deepest, where = 0, 0, source
        try:
            for event in yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
                    mark = event.start_mark
                    if depth > deepest and mark is not None:
                        deepest = depth
                        where = f"{source}:{mark.line + 1}:{mark.column + 1}"
                    if depth > max_depth:
                        break
                elif isinstance(event, yaml.CollectionEndEvent):
                    depth -= 1
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            if mark is not None and "nesting depth" in str(exc.problem):
                where = f"{source}:{mark.line + 1}:{mark.column + 1}"
        except (yaml.YAMLError, RecursionError):
            pass
        return where

    try:
        # libyaml's safe composer when PyYAML has it: about 5x faster on a 400 KB hostile spec (1.5 s instead
        # of 7.9 s), with the same nodes and marks; the pure-Python safe one otherwise.
        node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        if "nesting depth" in str(exc.problem):  # PyYAML >= 6.0.4: libyaml's own limit
            raise SpecError(too_deep, where=where, fix="flatten the spec") from None
        raise SpecError(f"YAML syntax error: {exc.problem or exc}", where=where, fix="fix the YAML syntax") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"YAML error: {exc}", where=source, fix="fix the YAML syntax") from None
    except RecursionError:  # e.g. thousands of nested [ [ [ ... (found by bench/bench_fuzz.py)
        raise SpecError(too_deep, where=deep_place(), fix="flatten the spec") from None
    if node is None:
        raise SpecError("the spec is empty", where=source, fix="write at least version, name and model")
    locator = _Locator(source)
    try:
        data = locator.convert(node, ())
    except RecursionError:
        raise SpecError(too_deep, where=deep_place(), fix="flatten the spec") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        raise SpecError(f"cannot read a value: {str(exc)[:160]}", where=source, fix="fix the YAML value") from None
    return data, locator.locations


def _schema_at(path: Path_) -> dict[str, Any]:
    schema: dict[str, Any] = SCHEMA
    for part in path:
        if isinstance(part, int):
            schema = schema.get("items", {})
        else:
            schema = schema.get("properties", {}).get(part, {})
    return schema


def _fmt_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class _Ctx:
    def __init__(self, source: str, locations: dict[Path_, tuple[int, int]]) -> None:
        self.source = source
        self.locations = locations

    def where(self, path: Path_) -> str:
        key = path
        while key and key not in self.locations:
            key = key[:-1]
        line, col = self.locations.get(key, (1, 1))
        return f"{self.source}:{line}:{col}"

    def error(self, path: Path_, message: str, fix: str | None = None) -> SpecError:
        return SpecError(f"{_fmt_path(path)}: {message}", where=self.where(path), fix=fix)


def _schema_error(ctx: _Ctx, error: jsonschema.ValidationError) -> SpecError:
    path: Path_ = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(_schema_at(path).get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        key = extra[0] if extra else "?"
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
        return ctx.error((*path, key), f"unknown key {key!r}", hint)
    if error.validator == "required":
        return ctx.error(path, error.message, "add the field (see README, spec reference)")
    if error.validator == "enum":
        options = ", ".join(map(str, error.validator_value))
        close = difflib.get_close_matches(str(error.instance), [str(v) for v in error.validator_value], n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"use one of: {options}"
        return ctx.error(path, f"{error.instance!r} is not one of {options}", hint)
    if error.validator == "const" and path == ("version",):
        return ctx.error(path, f"version {error.instance!r} is not supported", "write version: 1")
    if error.validator == "type":
        want = error.validator_value
        want_text = " or ".join(want) if isinstance(want, list) else want
        return ctx.error(path, f"expected {want_text}, got {type(error.instance).__name__} {error.instance!r}")
    description = _schema_at(path).get("description")
    return ctx.error(path, error.message, description)


def validate(data: Any, ctx: _Ctx, *, model_required: bool = True) -> None:
    if not isinstance(data, dict):
        raise SpecError("the spec must be a mapping", where=ctx.source, fix="start with 'version: 1'")
    schema = SCHEMA if model_required else {**SCHEMA, "required": [k for k in SCHEMA["required"] if k != "model"]}
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(list(e.absolute_path)), e.path))
    if errors:
        # the deepest error is the most specific; required/unknown at top level first
        best = jsonschema.exceptions.best_match(errors)
        raise _schema_error(ctx, best)


def _unit(ctx: _Ctx, path: Path_, parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except UnitError as exc:
        raise ctx.error(path, str(exc)) from None
    except (OverflowError, ValueError, TypeError) as exc:  # any other bad number: still this field's error
        raise ctx.error(path, f"not a usable value ({type(exc).__name__}: {str(exc)[:120]})") from None


def _limit(ctx: _Ctx, path: Path_, value: Any) -> Limit:
    if isinstance(value, str) and value.strip().lower() in ("board", "fits_board", "fits board"):
        return Limit(board=True)
    return Limit(board=False, size=_unit(ctx, path, parse_size, value))


def _model_ref(ctx: _Ctx, data: dict[str, Any], base: Path) -> ModelRef:
    kinds = [k for k in ("builder", "keras", "saved_model", "tflite") if k in data]
    if len(kinds) != 1:
        raise ctx.error(
            ("model",),
            "name exactly one of builder, keras, saved_model, tflite" + (f" (found {', '.join(kinds)})" if kinds else ""),
            "e.g. model: {builder: models.mnist_cnn:build}",
        )
    kind = kinds[0]
    value = data[kind]
    if "args" in data and kind != "builder":
        raise ctx.error(("model", "args"), "args are only for builders")
    if kind == "builder":
        return ModelRef("builder", value, None, dict(data.get("args", {})))
    path = Path(value)
    if not path.is_absolute():
        path = base / path
    if kind == "tflite" and path.suffix.lower() != ".tflite":
        raise ctx.error(("model", "tflite"), f"{value!r} does not end in .tflite", "name a .tflite file")
    if kind == "keras" and path.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        raise ctx.error(("model", "keras"), f"{value!r} is not a .keras or .h5 file", "for a directory use saved_model:")
    if not path.exists():
        raise ctx.error(("model", kind), f"{path} does not exist", "check the path (relative to the spec file)")
    if kind == "saved_model" and not path.is_dir():
        raise ctx.error(("model", kind), f"{path} is not a SavedModel directory")
    if kind in ("tflite", "keras") and path.is_dir():
        raise ctx.error(("model", kind), f"{path} is a directory, not a file")
    return ModelRef(kind, value, path)


def build_spec(
    data: dict[str, Any], path: Path, locations: dict[Path_, tuple[int, int]], *, model_required: bool = True
) -> Spec:
    source = str(path)
    ctx = _Ctx(source, locations)
    validate(data, ctx, model_required=model_required)
    base = path.parent
    # a spec that only sets constraints and board for --tinyml-model audits may leave the model out
    model = _model_ref(ctx, data["model"], base) if "model" in data else ModelRef("none", "")

    ds = data.get("dataset")
    dataset = None
    if ds is not None:
        cache_dir = ds.get("cache_dir")
        dataset = DatasetSpec(
            name=ds["name"],
            preprocess=ds.get("preprocess", "x/255"),
            validation=float(ds.get("validation", 0.1)),
            test=ds.get("test"),
            limit=ds.get("limit"),
            seed=int(ds.get("seed", 0)),
            cache_dir=(base / cache_dir) if cache_dir else None,
            augment=dict(ds.get("augment", {})),
            args=dict(ds.get("args", {})),
        )
        if isinstance(dataset.test, float) and not 0 < dataset.test < 1:
            raise ctx.error(("dataset", "test"), "a fraction must be between 0 and 1; a count must be whole")

    tr = data.get("training", {})
    training = TrainingSpec(
        epochs=tr.get("epochs", 10),
        batch_size=tr.get("batch_size", 128),
        optimizer=tr.get("optimizer", "adam"),
        learning_rate=tr.get("learning_rate"),
        early_stopping=tr.get("early_stopping", 3),
        loss_from_logits=tr.get("loss_from_logits"),
        seed=tr.get("seed", 0),
    )
    q = data.get("quantization", {})
    if "mode" in q and "modes" in q:
        raise ctx.error(("quantization",), "give mode or modes, not both")
    modes = tuple(q["modes"]) if "modes" in q else (q.get("mode", "int8"),)
    quantization = QuantizationSpec(
        modes=modes,
        representative_samples=q.get("representative_samples", 400),
        qat_epochs=q.get("qat_epochs", 2),
    )
    if model.kind == "tflite" and ("quantization" in data or "training" in data):
        key = "quantization" if "quantization" in data else "training"
        raise ctx.error((key,), "a .tflite model is not trained or converted", f"remove '{key}'")

    c = data.get("constraints", {})
    fw = c.get("firmware")
    rg = c.get("regression", {})
    constraints = Constraints(
        max_size=_unit(ctx, ("constraints", "max_size"), parse_size, c["max_size"]) if "max_size" in c else None,
        io_dtype=c.get("io_dtype"),
        ops=c.get("ops"),
        max_accuracy_drop=(
            _unit(ctx, ("constraints", "max_accuracy_drop"), parse_points, c["max_accuracy_drop"])
            if "max_accuracy_drop" in c
            else None
        ),
        min_accuracy=(
            _unit(ctx, ("constraints", "min_accuracy"), parse_percent, c["min_accuracy"]) if "min_accuracy" in c else None
        ),
        arena=_limit(ctx, ("constraints", "arena"), c["arena"]) if "arena" in c else None,
        flash=_limit(ctx, ("constraints", "flash"), c["flash"]) if "flash" in c else None,
        ram_reserve=_unit(ctx, ("constraints", "ram_reserve"), parse_size, c["ram_reserve"]) if "ram_reserve" in c else None,
        max_latency=_unit(ctx, ("constraints", "max_latency"), parse_time, c["max_latency"]) if "max_latency" in c else None,
        firmware=(
            FirmwareSpec(
                samples=fw.get("samples", 1000),
                machine=fw.get("machine"),
                emulator=fw.get("emulator"),
                enabled=fw.get("enabled", True),
                kernels=fw.get("kernels"),
            )
            if fw is not None
            else None
        ),
        regression=RegressionSpec(
            size_bytes=_unit(ctx, ("constraints", "regression", "size"), parse_size, rg["size"]).bytes if "size" in rg else None,
            accuracy_points=(
                _unit(ctx, ("constraints", "regression", "accuracy"), parse_points, rg["accuracy"]) if "accuracy" in rg else None
            ),
            arena_bytes=(
                _unit(ctx, ("constraints", "regression", "arena"), parse_size, rg["arena"]).bytes if "arena" in rg else None
            ),
            latency_seconds=(
                _unit(ctx, ("constraints", "regression", "latency"), parse_time, rg["latency"]) if "latency" in rg else None
            ),
        ),
    )
    if (constraints.max_accuracy_drop is not None or constraints.min_accuracy is not None) and dataset is None:
        key = "max_accuracy_drop" if constraints.max_accuracy_drop is not None else "min_accuracy"
        raise ctx.error(("constraints", key), "an accuracy constraint needs a dataset", "add a 'dataset:' section")
    if model.kind not in ("tflite", "none") and dataset is None:
        raise ctx.error(("model", model.kind), "building a model needs a dataset", "add a 'dataset:' section")
    return Spec(
        path=path,
        name=data["name"],
        model=model,
        dataset=dataset,
        training=training,
        quantization=quantization,
        board=data.get("board"),
        constraints=constraints,
        raw=data,
        locations=locations,
        description=data.get("description", ""),
    )


def load_spec(path: str | Path, *, model_required: bool = True) -> Spec:
    """Read, validate and type a spec file. Raises :class:`SpecError` with file:line:col.

    ``model_required=False`` (a spec whose constraints and board apply to ``--tinyml-model`` audits)
    accepts a spec without ``model:``; its ``model.kind`` is then ``"none"``."""
    p = Path(path)
    source = str(p)
    if not p.exists():
        raise SpecError("spec file not found", where=source, fix="check the path given to --tinyml-spec")
    if p.is_dir():
        raise SpecError("is a directory, not a spec file", where=source, fix="name a .yaml file")
    kind = not_regular(p)
    if kind is not None:  # a FIFO would block the read, /dev/zero never end it
        raise SpecError(f"not a regular file: {kind}", where=source, fix="name the spec YAML file itself")
    try:
        size = p.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"spec is {size:,} bytes; specs are at most {MAX_SPEC_BYTES:,}", where=source)
        raw = read_regular(p, MAX_SPEC_BYTES + 1)
        if len(raw) > MAX_SPEC_BYTES:  # grew since the stat
            raise SpecError(f"spec is over {MAX_SPEC_BYTES:,} bytes; specs are at most {MAX_SPEC_BYTES:,}", where=source)
    except NotRegularFile as exc:
        raise SpecError(f"not a regular file: {exc.kind}", where=source, fix="name the spec YAML file itself") from None
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror}", where=source) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text (byte offset {exc.start})", where=source, fix="save the spec as UTF-8") from None
    data, locations = parse_yaml(text, source)
    try:
        return build_spec(data, p, locations, model_required=model_required)
    except SpecError:
        raise
    except (OverflowError, ValueError, TypeError, RecursionError) as exc:
        # A value no field check anticipated: this spec fails on its own (its ::spec item), the session goes on.
        raise SpecError(
            f"invalid value ({type(exc).__name__}: {str(exc)[:160]})",
            where=source,
            fix="check the spec's numbers and sizes against README (units, ranges)",
        ) from None
