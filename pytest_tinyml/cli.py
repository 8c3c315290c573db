"""The ``pytest-tinyml`` command: ``pytest-tinyml merge OUT_DIR SHARD_DIR... [--baseline FILE]``.

``merge`` combines the reports of the shards of one suite (each written by ``--tinyml-report`` on its own CI
runner) into the report.json, report.md and report.html one run over all of them would have written, and
gates it against ``--baseline`` as ``--tinyml-baseline`` gates a run. Exit status: 0 when every item passed
or skipped and nothing regressed, 1 when an item failed or a metric regressed (or a report file could not
be written), 2 when a shard or the baseline is refused (one line naming the file) or the command is
misused. Also runs as ``python -m pytest_tinyml.cli``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pytest_tinyml.reports.merge import MergeError, merge


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytest-tinyml", description="pytest-tinyml tools")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    m = commands.add_parser(
        "merge",
        help="combine the shards' reports into one report.json/report.md/report.html",
        description="Combine the report.json of each shard (the folders --tinyml-report wrote) into one "
        "report.json/report.md/report.html, as one run over all their items would have written them.",
    )
    m.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the merged reports to")
    m.add_argument("shards", metavar="SHARD_DIR", nargs="+", help="a shard's --tinyml-report folder (or its report.json)")
    m.add_argument("--baseline", metavar="FILE", help="compare with an earlier report.json; exit 1 on a regression")
    m.add_argument("--no-plots", action="store_true", help="leave the charts out of report.html")
    return parser


def _merge(args: argparse.Namespace) -> int:
    try:
        outcome = merge(args.out_dir, list(args.shards), baseline=args.baseline, plots=not args.no_plots)
    except MergeError as exc:
        print(f"pytest-tinyml merge: {exc}", file=sys.stderr)
        return 2
    summary = outcome.report["summary"]
    counts = ", ".join(f"{n} {status}" for status, n in summary.items() if status != "targets" and n)
    print(f"merged {len(args.shards)} shard(s): {summary['targets']} target(s), {counts or 'no items'}")
    for path in outcome.written:
        print(f"wrote {path}")
    for line in outcome.notes:
        print(f"note: {line}")
    for line in outcome.errors:
        print(f"error: {line}", file=sys.stderr)
    if outcome.comparison is not None:
        for line in outcome.regressions:
            print(f"regression: {line}")
        if not outcome.regressions:
            print(f"no regressions against baseline {args.baseline}")
    return 1 if outcome.regressions or outcome.errors or outcome.failed_items else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "merge":
        return _merge(args)
    return 2  # argparse refuses any other command before this


if __name__ == "__main__":
    sys.exit(main())
