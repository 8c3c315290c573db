"""Fuzz the audit path with mutated .tflite files and specs; every BUG counter must be 0.

    python bench/bench_fuzz.py                      # full: 20,000 model cases, 2,500 TFLM children, ...
    python bench/bench_fuzz.py --cases 500 --tflm 40 --firmware 5 --pytest 6 --specs 300   # quick

Stages (cases are ``(seed, index)`` -> bytes, reproducible with tests/fuzz_mutate.py):

1. parse: every model case through ``parse_model`` + the checks that need no child (size, int8_io), the
   flash estimate and the firmware input generation, in 2 worker processes, each case under a SIGALRM
   limit (a case over it is a hang);
2. TFLM: a seeded sample of the cases that parse through ``tflm.allocate`` (host TFLM in its child, per
   case timeout) + the tflm_ops and arena checks, 2 at a time; crashes of the child are counted as handled;
3. firmware: a sample of the cases TFLM allocates through the flash / firmware checks (QEMU);
4. pytest: a sample (TFLM crashes first, then parse errors and allocations) through
   ``pytest --tinyml-model case.tflite`` in a subprocess; spec cases through ``pytest --tinyml-spec``;
5. specs: mutated spec YAML through ``load_spec``;
6. issue-13 hostile classes (tests/fuzz_hostile.py, ``--hostile N``);
7. issue-19 supply-chain and edge classes (bench/fuzz_supply.py): ``redirect``, ``drip``, ``archive``,
   ``tamper``, ``names``, each case in its own process under a time bound, with its peak RSS; one table
   (class, cases, ok, crashes, hangs, silent passes, peak MB).

``--only CLASS[,CLASS...]`` runs only some of them: ``models`` (stages 1-5), ``hostile``, or the issue-19
class names (``supply`` for all five), e.g. ``python bench/bench_fuzz.py --only supply``.

Bases: the flatbuffer models of tests/tflite_factory.py and two TensorFlow-converted int8 models cached by
bench/_tf_models.py (generated once, in a child process). Cases classified as BUG are written to
``--out`` with their numbers.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

import fuzz_harness as fh  # noqa: E402
import fuzz_mutate as fm  # noqa: E402
import fuzz_supply as fs  # noqa: E402

GROUPS = ("models", "hostile", *fs.CLASSES)

_BASES: list[fm.Base] = []
_WORK: Path | None = None


def load_bases(with_tf: bool) -> list[fm.Base]:
    models = fm.factory_models()
    if with_tf:
        import _tf_models

        for name, path in _tf_models.ensure_models().items():
            models[name.removesuffix(".tflite")] = path.read_bytes()
    return fm.make_bases(models)


def _init_worker(with_tf: bool, work: str) -> None:
    global _BASES, _WORK
    _BASES = load_bases(with_tf)
    _WORK = Path(tempfile.mkdtemp(prefix="w-", dir=work))


def _parse_chunk(seed: int, indices: list[int]) -> list[tuple[int, str, str, str, str, bool]]:
    assert _WORK is not None
    out = []
    for i in indices:
        base, ops, data = fm.model_case(_BASES, seed, i)
        outcome, parsed = fh.audit_parse(data, _WORK / "case.tflite", _WORK / "cache", timeout=20.0)
        out.append((i, base, ops, outcome.kind, outcome.detail if outcome.bug else outcome.detail[:80], parsed))
    return out


def _spec_chunk(seed: int, indices: list[int]) -> list[tuple[int, str, str, str]]:
    assert _WORK is not None
    bases = [fm.SPEC_TFLITE, (REPO / "specs" / "mnist.yaml").read_text()]
    out = []
    for i in indices:
        ops, data = fm.spec_case(bases, seed, i)
        outcome = fh.load_spec_case(data, _WORK / "spec.yaml", timeout=20.0)
        out.append((i, ops, outcome.kind, outcome.detail))
    return out


def _hostile_chunk(seed: int, indices: list[int], compile_below: int) -> list[tuple[int, str, str, str, float]]:
    """Issue-13 classes (tests/fuzz_hostile.py), each case under a SIGALRM limit in this worker."""
    import fuzz_hostile as fz

    assert _WORK is not None
    work = _WORK / "hostile"
    work.mkdir(exist_ok=True)
    out = []
    for i in indices:
        case = fz.hostile_case(seed, i)
        t0 = time.perf_counter()
        try:
            with fh.time_limit(120.0):
                kind, detail = fz.run_case(case, work, compile_c=i < compile_below)
        except fh.CaseTimeout:
            kind, detail = "BUG:hang", f"{case.cls} {case.what}: more than 120 s"
        fz.cleanup(work)
        out.append((i, case.cls, kind, f"{case.cls} {case.what}: {detail}" if detail else "", time.perf_counter() - t0))
    return out


def _chunks(n: int, size: int) -> list[list[int]]:
    return [list(range(k, min(k + size, n))) for k in range(0, n, size)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20000, help="model cases (parse stage)")
    ap.add_argument("--tflm", type=int, default=2500, help="cases that parse sent to a TFLM child")
    ap.add_argument("--firmware", type=int, default=40, help="allocated cases run through the firmware checks")
    ap.add_argument("--pytest", type=int, default=30, help="model cases run through a pytest subprocess")
    ap.add_argument("--pytest-specs", type=int, default=10, help="spec cases run through a pytest subprocess")
    ap.add_argument("--specs", type=int, default=5000, help="spec cases through load_spec")
    ap.add_argument("--hostile", type=int, default=600, help="issue-13 hostile-class cases (tests/fuzz_hostile.py)")
    ap.add_argument("--hostile-compile", type=int, default=120,
                    help="hostile-name cases among the first N whose export is compiled and run with g++")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20.0, help="per-case TFLM child timeout, seconds")
    ap.add_argument("--no-tf", action="store_true", help="skip the TensorFlow-converted bases")
    ap.add_argument("--out", default=None, help="where BUG cases are written (default: a temp dir)")
    ap.add_argument("--only", default="", metavar="CLASS[,CLASS]",
                    help=f"run only these: {', '.join(GROUPS)}, or supply (the five issue-19 classes)")
    args = ap.parse_args()
    only = {c for part in args.only.split(",") if part for c in (fs.CLASSES if part == "supply" else (part,))}
    if only - set(GROUPS):
        ap.error(f"--only: unknown {', '.join(sorted(only - set(GROUPS)))}; known: {', '.join(GROUPS)}, supply")
    selected = only or set(GROUPS)
    if "models" not in selected:
        args.cases = args.specs = args.tflm = args.firmware = args.pytest = args.pytest_specs = 0
        args.no_tf = True
    if "hostile" not in selected:
        args.hostile = 0
    supply_classes = [c for c in fs.CLASSES if c in selected]
    if not {"models", "hostile"} & selected:
        return run_supply(supply_classes, Path(tempfile.mkdtemp(prefix="tinyml-fuzz-")), time.perf_counter())

    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="tinyml-fuzz-"))
    out_dir = Path(args.out) if args.out else work / "bugs"
    out_dir.mkdir(parents=True, exist_ok=True)
    bases = load_bases(not args.no_tf)
    cache = work / "cache"
    print(f"bases: {', '.join(f'{b.name} ({len(b.data):,} B)' for b in bases)}; seed {args.seed}; work dir {work}")

    bugs: list[tuple[str, str]] = []
    counters: dict[str, collections.Counter[str]] = {}

    def record_bug(stage: str, name: str, data: bytes | None, detail: str) -> None:
        bugs.append((f"{stage} {name}", detail))
        if data is not None:
            (out_dir / f"{stage}-{name}.bin").write_bytes(data)
        (out_dir / f"{stage}-{name}.txt").write_text(detail)

    # 1. parse -------------------------------------------------------------------------------------
    t = time.perf_counter()
    parse = collections.Counter[str]()
    mutations = collections.Counter[str]()
    parsed: list[int] = []
    with ProcessPoolExecutor(2, initializer=_init_worker, initargs=(not args.no_tf, str(work))) as pool:
        futures = [pool.submit(_parse_chunk, args.seed, c) for c in _chunks(args.cases, 200)]
        spec_futures = [pool.submit(_spec_chunk, args.seed, c) for c in _chunks(args.specs, 200)]
        for f in futures:
            for i, base, ops, kind, detail, ok in f.result():
                parse[kind] += 1
                for op in ops.split("+"):
                    mutations[op] += 1
                if ok:
                    parsed.append(i)
                if kind.startswith("BUG"):
                    record_bug("parse", f"{args.seed}-{i}", fm.model_case(bases, args.seed, i)[2],
                               f"{base} {ops}: {kind}\n{detail}")
        spec = collections.Counter[str]()
        spec_kinds = collections.Counter[str]()
        spec_ok: list[int] = []
        spec_err: list[int] = []
        for sf in spec_futures:
            for i, ops, kind, detail in sf.result():
                spec[kind] += 1
                spec_kinds[ops.split("+")[0]] += 1
                (spec_ok if kind == "spec_ok" else spec_err).append(i)
                if kind.startswith("BUG"):
                    record_bug("spec", f"{args.seed}-{i}", None, f"{ops}: {kind}\n{detail}")
    t_parse = time.perf_counter() - t
    counters["parse"] = parse
    counters["spec"] = spec

    # 1b. issue-13 hostile classes -----------------------------------------------------------------
    t = time.perf_counter()
    hostile = collections.Counter[str]()
    hostile_worst: dict[str, float] = {}
    with ProcessPoolExecutor(2, initializer=_init_worker, initargs=(False, str(work))) as pool:
        hfutures = [pool.submit(_hostile_chunk, args.seed, c, args.hostile_compile) for c in _chunks(args.hostile, 12)]
        for hf in hfutures:
            for i, cls, kind, detail, seconds in hf.result():
                hostile[kind] += 1
                hostile_worst[cls] = max(hostile_worst.get(cls, 0.0), seconds)
                if kind.startswith("BUG"):
                    import fuzz_hostile as fz

                    record_bug("hostile", f"{args.seed}-{i}", fz.hostile_case(args.seed, i).data[:1 << 20], f"{kind}\n{detail}")
    t_hostile = time.perf_counter() - t
    counters["hostile"] = hostile

    # 2. TFLM children -----------------------------------------------------------------------------
    t = time.perf_counter()
    rng = random.Random(args.seed)
    tflm_sample = sorted(rng.sample(parsed, min(args.tflm, len(parsed))))
    tflm = collections.Counter[str]()
    allocated: list[int] = []
    crashed: list[int] = []
    refused: list[int] = []

    def tflm_job(i: int) -> tuple[int, fh.Outcome]:
        _, _, data = fm.model_case(bases, args.seed, i)
        d = Path(tempfile.mkdtemp(prefix=f"t{i}-", dir=work))
        outcome = fh.audit_tflm(data, d / "case.tflite", cache, timeout=args.timeout,
                                export_dir=d / "export")
        import shutil

        shutil.rmtree(d, ignore_errors=True)
        return i, outcome

    with ThreadPoolExecutor(2) as ex:
        for i, outcome in ex.map(tflm_job, tflm_sample):
            tflm[outcome.kind] += 1
            if outcome.kind == "tflm_allocated":
                allocated.append(i)
            elif outcome.kind.startswith("tflm_crash") or outcome.kind == "tflm_timeout":
                crashed.append(i)
                (out_dir / f"handled-{outcome.kind}-{args.seed}-{i}.bin").write_bytes(
                    fm.model_case(bases, args.seed, i)[2])
            elif outcome.kind == "tflm_refused":
                refused.append(i)
            if outcome.bug:
                record_bug("tflm", f"{args.seed}-{i}", fm.model_case(bases, args.seed, i)[2],
                           f"{outcome.kind}\n{outcome.detail}")
    t_tflm = time.perf_counter() - t
    counters["tflm"] = tflm

    # 3. firmware checks (QEMU) ----------------------------------------------------------------------
    t = time.perf_counter()
    firmware = collections.Counter[str]()
    int8_allocated = [i for i in allocated if fm.model_case(bases, args.seed, i)[0].startswith(("int8", "tf_int8"))]
    for i in sorted(rng.sample(int8_allocated, min(args.firmware, len(int8_allocated)))):
        _, _, data = fm.model_case(bases, args.seed, i)
        outcome = fh.audit_firmware(data, work / "fw.tflite", cache)
        firmware[outcome.kind] += 1
        for check, verdict in re.findall(r"(\w+):(pass|fail|skip|error)", outcome.detail):
            firmware[f"  {check}:{verdict}"] += 1
        if outcome.bug:
            record_bug("firmware", f"{args.seed}-{i}", data, outcome.detail)
    t_fw = time.perf_counter() - t
    counters["firmware"] = firmware

    # 4. pytest subprocesses -------------------------------------------------------------------------
    t = time.perf_counter()
    not_parsed = [i for i in range(args.cases) if i not in set(parsed)]
    third = max(args.pytest // 3, 1)
    picks = crashed[:third]
    picks += rng.sample(not_parsed, min(third, len(not_parsed)))
    rest = [i for i in allocated + refused if i not in picks]
    picks += rng.sample(rest, min(args.pytest - len(picks), len(rest)))
    pytest_counts = collections.Counter[str]()
    pytest_dir = work / "pytest"
    pytest_dir.mkdir()
    (pytest_dir / "model.tflite").write_bytes(fm.factory_models()["int8_cnn"])
    ini = ["-o", f"tinyml_cache_dir={cache}"]

    def pytest_model(i: int) -> tuple[str, fh.Outcome, bytes]:
        _, _, data = fm.model_case(bases, args.seed, i)
        d = pytest_dir / f"m{i}"
        d.mkdir()
        (d / "case.tflite").write_bytes(data)
        outcome, text = fh.run_pytest(["--tinyml-model", "case.tflite", *ini], d)
        if outcome.bug:
            outcome.detail += "\n" + text[-3000:]
        return f"model-{args.seed}-{i}", outcome, data

    def pytest_spec(i: int) -> tuple[str, fh.Outcome, bytes]:
        _, data = fm.spec_case([fm.SPEC_TFLITE, (REPO / "specs" / "mnist.yaml").read_text()], args.seed, i)
        d = pytest_dir / f"s{i}"
        d.mkdir()
        (d / "model.tflite").write_bytes(fm.factory_models()["int8_cnn"])
        (d / "spec.yaml").write_bytes(data)
        outcome, text = fh.run_pytest(["--tinyml-spec", "spec.yaml", "--collect-only", *ini], d)
        if outcome.bug:
            outcome.detail += "\n" + text[-3000:]
        return f"spec-{args.seed}-{i}", outcome, data

    spec_picks = spec_err[: args.pytest_specs // 2] + spec_ok[: args.pytest_specs - args.pytest_specs // 2]
    with ThreadPoolExecutor(2) as ex:
        jobs = [ex.submit(pytest_model, i) for i in picks] + [ex.submit(pytest_spec, i) for i in spec_picks]
        for job in jobs:
            name, outcome, data = job.result()
            pytest_counts[outcome.kind] += 1
            if outcome.bug:
                record_bug("pytest", name, data, outcome.detail)
    t_pytest = time.perf_counter() - t
    counters["pytest"] = pytest_counts

    # 7. issue-19 classes ------------------------------------------------------------------------------
    supply = fs.run_classes(supply_classes, work) if supply_classes else []

    # summary ----------------------------------------------------------------------------------------
    wall = time.perf_counter() - t_start
    n_bug = {k: sum(v for kind, v in c.items() if kind.startswith("BUG")) for k, c in counters.items()}
    hangs = sum(v for c in counters.values() for kind, v in c.items() if kind == "BUG:hang")
    tracebacks = sum(v for c in counters.values() for kind, v in c.items()
                     if kind in ("BUG:traceback", "BUG:multiline"))
    crashes = counters["pytest"].get("BUG:pytest_crash", 0) + counters["hostile"].get("BUG:crash", 0)
    signals = {k.split(":", 1)[1]: v for k, v in tflm.items() if k.startswith("tflm_crash:")}

    def show(c: collections.Counter[str]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1]))

    print(f"model cases parsed/audited in-process: {args.cases:,} in {t_parse:.1f} s (with the spec cases); "
          f"{len(parsed):,} parse, {parse.get('model_error', 0):,} clean ModelFileError")
    print(f"  outcomes: {show(parse)}")
    print(f"  mutations used: {show(mutations)}")
    print(f"hostile classes (issue 13): {args.hostile:,} cases in {t_hostile:.1f} s; slowest case per class: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(hostile_worst.items())))
    print(f"  outcomes: {show(hostile)}")
    print(f"TFLM child allocations: {len(tflm_sample):,} of the {len(parsed):,} that parse, in {t_tflm:.1f} s "
          f"(2 at a time, timeout {args.timeout:g} s): {show(tflm)}")
    print(f"TFLM child crashes caught (handled): {sum(signals.values())} ({', '.join(f'{k} x{v}' for k, v in signals.items()) or 'none'}); "
          f"child timeouts (handled): {tflm.get('tflm_timeout', 0)}")
    print(f"firmware checks on allocated int8 mutants: {sum(v for k, v in firmware.items() if not k.startswith(' '))} "
          f"in {t_fw:.1f} s: {show(firmware)}")
    print(f"pytest subprocesses: {sum(pytest_counts.values())} ({len(picks)} models, {len(spec_picks)} specs) in "
          f"{t_pytest:.1f} s: {show(pytest_counts)}")
    print(f"spec cases through load_spec: {args.specs:,}: {show(spec)}; kinds: {show(spec_kinds)}")
    n_fw = sum(v for k, v in firmware.items() if not k.startswith(" "))
    n_pytest = sum(pytest_counts.values())
    print(f"cases run: {args.cases + args.hostile + len(tflm_sample) + n_fw + n_pytest + args.specs:,} "
          f"(model {args.cases:,} + hostile {args.hostile:,} + TFLM {len(tflm_sample):,} + firmware {n_fw} + "
          f"pytest {n_pytest} + spec {args.specs:,})")
    if supply:
        show_supply(supply, work)
    crashes += sum(o.kind == "crash" for o in supply)
    hangs += sum(o.kind == "hang" for o in supply)
    print(f"BUG crashes (pytest process, or an exception escaping a hostile or issue-19 case): {crashes}")
    print(f"BUG hangs: {hangs}")
    silent = sum(v for c in counters.values() for kind, v in c.items() if kind == "BUG:silent_pass")
    silent += sum(o.kind == "silent_pass" for o in supply)
    print(f"BUG silent passes: {silent}")
    print(f"BUG uncaught tracebacks / multi-line errors: {tracebacks}")
    n_supply = sum(o.kind != "ok" for o in supply)
    print(f"BUG total: {sum(n_bug.values()) + n_supply} (per stage: {n_bug}, issue-19 classes {n_supply}); "
          f"cases written to {out_dir}")
    print(f"wall time: {wall:.1f} s")
    for name, detail in bugs[:10]:
        print(f"--- {name}\n{detail[:1500]}")
    return 1 if bugs or n_supply else 0


def show_supply(outcomes: list[fs.Outcome], work: Path) -> None:
    for o in outcomes:
        if o.kind != "ok":
            print(f"--- BUG:{o.kind} {o.cls} {o.name} (python bench/fuzz_supply.py {o.cls} -v): {o.detail[:1500]}")
    print(f"issue-19 classes: {len(outcomes)} cases, each in its own process (peak MB: its peak RSS, or its "
          "pytest child's)")
    print(fs.table(outcomes))
    print(fs.heaviest(outcomes))
    print(f"  (a case process that only imports the modules peaks at {fs.baseline_mb(work):.0f} MB)")


def run_supply(classes: list[str], work: Path, t_start: float) -> int:
    """Only the issue-19 classes (``--only`` without models or hostile)."""
    outcomes = fs.run_classes(classes, work)
    show_supply(outcomes, work)
    bad = {k: sum(o.kind == k for o in outcomes) for k in ("crash", "hang", "silent_pass")}
    print(f"BUG crashes: {bad['crash']}; BUG hangs: {bad['hang']}; BUG silent passes: {bad['silent_pass']}")
    print(f"wall time: {time.perf_counter() - t_start:.1f} s")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 1 if any(bad.values()) else 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    raise SystemExit(main())
