"""Reports a reviewer reads: terminal summary, report.json, report.md, report.html, baseline comparison.

Entry point: :func:`finish`, called once on the controller from ``pytest_sessionfinish``. It never
raises for a missing measurement, a broken chart or an unwritable directory: what went wrong is returned
in :attr:`Outcome.errors` (one line each) for the plugin to print, and sections that could not be
produced are left out with a note in the report itself.

Files written to ``report_dir``:

- ``report.json``: the report document (schema ``pytest-tinyml/report`` version 1, described by
  ``report.schema.json`` next to this module);
- ``report.md``: a comparison table across targets, then failures first with fixes (a section only for
  targets with a failure); posts as a pull-request comment;
- ``report.html``: one self-contained page with charts (needs matplotlib; without it, no charts).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_tinyml.reports._format import one_line
from pytest_tinyml.reports.baseline import BaselineError, Comparison, annotate, compare, load_baseline
from pytest_tinyml.reports.collect import SCHEMA_ID, SCHEMA_VERSION, build_report

__all__ = [
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "BaselineError",
    "Comparison",
    "Outcome",
    "build_report",
    "check_baseline",
    "finish",
    "load_baseline",
    "schema",
]

log = logging.getLogger(__name__)

SCHEMA_FILE = Path(__file__).with_name("report.schema.json")


@dataclass
class Outcome:
    """What :func:`finish` did.

    ``regressions``: one line per metric that regressed beyond ``constraints.regression`` against the
    baseline (non-empty: the plugin fails the run). ``errors``: one line per problem with the reports
    themselves (unreadable baseline, unwritable directory); the plugin prints them and fails the run.
    ``notes``: sections left out (e.g. no matplotlib), informational. ``comparison``: the baseline
    comparison for the terminal summary. ``report``: the report document.
    """

    regressions: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    comparison: Comparison | None = None
    report: dict[str, Any] | None = None


def schema() -> dict[str, Any]:
    """The JSON Schema of ``report.json``."""
    result: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return result


def check_baseline(path: str | os.PathLike[str]) -> str | None:
    """None if ``path`` is a readable baseline report, else the one-line error (for an early UsageError)."""
    try:
        load_baseline(path)
    except BaselineError as exc:
        return str(exc)
    return None


def _write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_reports(
    report: dict[str, Any], report_dir: Path, *, plots: bool = True
) -> tuple[list[Path], list[str], list[str]]:
    """Write report.json, report.md and report.html; returns (written, errors, notes)."""
    from pytest_tinyml.reports.html import render_html
    from pytest_tinyml.reports.markdown import render_markdown

    written: list[Path] = []
    errors: list[str] = []
    notes: list[str] = []
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return (
            written,
            [
                f"{report_dir}: cannot create the report directory: {exc.strerror or exc} (fix: pass a writable --tinyml-report DIR)"
            ],
            notes,
        )

    def render_json() -> str:
        return json.dumps(report, indent=1, ensure_ascii=False, allow_nan=False) + "\n"

    def render_page() -> str:
        page, page_notes = render_html(report, plots=plots)
        notes.extend(page_notes)
        return page

    for name, render in (
        ("report.json", render_json),
        ("report.md", lambda: render_markdown(report)),
        ("report.html", render_page),
    ):
        path = report_dir / name
        try:
            text = render()
        except Exception as exc:  # noqa: BLE001 - one broken renderer must not cost the others
            log.warning("pytest-tinyml: rendering %s failed", name, exc_info=True)
            errors.append(f"{path}: not written: {type(exc).__name__}: {one_line(exc, 200)}")
            continue
        try:
            _write(path, text)
        except OSError as exc:
            errors.append(
                f"{path}: cannot write: {exc.strerror or exc} (fix: pass a writable --tinyml-report DIR)"
            )
            continue
        written.append(path)
    return written, errors, notes


def finish(session: Any, *, report_dir: Path | None, baseline: Path | None, plots: bool = True) -> Outcome:
    """Build the report for ``session``, compare it with ``baseline`` and write it to ``report_dir``.

    ``session``: :class:`pytest_tinyml.session.TinyMLSession` (or anything with ``.results``, a list of
    :class:`pytest_tinyml.records.ItemRecord`, and optionally ``.checks``). Either argument may be None.
    Never raises for bad input or missing measurements.
    """
    outcome = Outcome()
    try:
        report = build_report(session)
    except Exception as exc:  # noqa: BLE001 - the run's verdicts stand even if the report fails
        log.warning("pytest-tinyml: building the report failed", exc_info=True)
        outcome.errors.append(f"report not written: {type(exc).__name__}: {one_line(exc, 200)}")
        return outcome
    outcome.report = report
    if baseline is not None:
        try:
            base = load_baseline(baseline)
        except BaselineError as exc:
            outcome.errors.append(str(exc))
        else:
            comp = compare(report, base, str(baseline))
            annotate(report, comp)
            outcome.comparison = comp
            outcome.regressions = list(comp.regressions)
    if report_dir is not None:
        written, errors, notes = write_reports(report, Path(report_dir), plots=plots)
        outcome.written = written
        outcome.errors.extend(errors)
        outcome.notes.extend(notes)
    for t in report.get("targets", []):
        outcome.notes.extend(f"{t['label']}: {n}" for n in t.get("notes") or [])
    return outcome
