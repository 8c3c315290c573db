"""ProgressWriter: compact in logs, one rewritten line on a terminal."""

from __future__ import annotations

import io
from typing import Any

from pytest_tinyml.reports.progress import ProgressWriter, parse_counter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_parse_counter() -> None:
    assert parse_counter("mnist.yaml: epoch 3/10: loss 0.2") == ("mnist.yaml: epoch", 3, 10)
    assert parse_counter("firmware: sample 1,000/1,000") == ("firmware: sample", 1000, 1000)
    assert parse_counter("building int8 model") is None
    assert parse_counter("weird 3/0") is None


def test_not_a_terminal_prints_first_last_and_heartbeat_only() -> None:
    lines: list[str] = []
    clock = Clock()
    p = ProgressWriter(lines.append, heartbeat=30.0, clock=clock)
    p("training specs/a.yaml")
    for epoch in range(1, 11):
        clock.now += 5.0
        p(f"epoch {epoch}/10: loss {1 / epoch:.3f}")
    p("converting to int8")
    p("converting to int8")  # repeated line dropped
    assert lines == [
        "[tinyml] training specs/a.yaml",
        "[tinyml] epoch 1/10: loss 1.000",
        "[tinyml] epoch 7/10: loss 0.143",  # 30 s after epoch 1
        "[tinyml] epoch 10/10: loss 0.100",
        "[tinyml] converting to int8",
    ]
    assert all("\r" not in line for line in lines)


def test_stream_not_a_tty_has_no_carriage_returns() -> None:
    buf = io.StringIO()
    p = ProgressWriter.for_stream(buf)  # StringIO.isatty() is False
    for i in range(1, 101):
        p(f"firmware sample {i}/100")
    p.close()
    text = buf.getvalue()
    assert "\r" not in text
    assert text.splitlines() == ["[tinyml] firmware sample 1/100", "[tinyml] firmware sample 100/100"]


def test_terminal_rewrites_one_line_per_step() -> None:
    buf = io.StringIO()
    p = ProgressWriter.for_stream(buf, isatty=True, width=60)
    p("training")
    for i in range(1, 4):
        p(f"epoch {i}/3")
    for i in range(1, 3):
        p(f"sample {i}/5")
    p("done")
    text = buf.getvalue()
    assert text.count("\r") == 5
    final = [seg.split("\r")[-1].rstrip() for seg in text.split("\n")]
    assert final == ["[tinyml] training", "[tinyml] epoch 3/3", "[tinyml] sample 2/5", "[tinyml] done", ""]
    assert all(len(seg) <= 60 for seg in text.replace("\n", "\r").split("\r"))


class FakeReporter:
    """The public surface of pytest's TerminalReporter that ProgressWriter uses."""

    def __init__(self, tty: bool) -> None:
        self.calls: list[tuple[str, Any]] = []
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty

    def write_line(self, line: str) -> None:
        self.calls.append(("line", line))

    def rewrite(self, line: str, erase: bool = False) -> None:
        self.calls.append(("rewrite", line))

    def write(self, content: str, flush: bool = False) -> None:
        self.calls.append(("write", content))

    def ensure_newline(self) -> None:
        self.calls.append(("newline", None))


def test_terminal_reporter_adapter() -> None:
    r = FakeReporter(tty=True)
    p = ProgressWriter.for_terminal_reporter(r, width=80)
    p("epoch 1/2")
    p.close()  # e.g. before pytest writes the item's result letter
    p.close()
    assert r.calls == [("newline", None), ("rewrite", "[tinyml] epoch 1/2"), ("write", "\n")]
    r = FakeReporter(tty=False)
    p = ProgressWriter.for_terminal_reporter(r)
    p("epoch 1/2")
    p("epoch 2/2")
    assert r.calls == [("line", "[tinyml] epoch 1/2"), ("line", "[tinyml] epoch 2/2")]
