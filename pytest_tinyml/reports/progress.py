"""Progress lines for long steps (training, conversion, evaluation, firmware runs).

:class:`ProgressWriter` is the ``RunOptions.progress`` callable. Producers call it with one line per
event, e.g. ``"specs/mnist.yaml: training epoch 3/10 loss 0.21"`` or ``"firmware: sample 120/1000"``.
A line with an ``n/N`` counter is an *update* of the step named by the text before the counter; any
other line is a step of its own and is always shown.

- Not a terminal (CI logs, pipes): no carriage returns. Each step shows its first update, its last
  (``n == N``), and at most one update every ``heartbeat`` seconds in between (so a CI job that kills
  silent jobs sees life); repeated identical lines are dropped.
- A terminal: updates of one step rewrite a single line; the line is finished when the step completes,
  another step starts, or :meth:`ProgressWriter.close` is called.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from typing import Any, TextIO

_COUNTER = re.compile(r"(\d[\d,]*)\s*/\s*(\d[\d,]*)")


def parse_counter(line: str) -> tuple[str, int, int] | None:
    """``'epoch 3/10 loss 0.2'`` -> ``('epoch', 3, 10)``; None for a line without an ``n/N`` counter."""
    m = _COUNTER.search(line)
    if m is None:
        return None
    done, total = int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))
    if total <= 0:
        return None
    return line[: m.start()].strip(), done, total


class ProgressWriter:
    """A ``callable(line)`` that shows progress compactly (see the module docstring).

    ``write_line(text)`` writes one complete line. On a terminal, pass ``rewrite(text)`` (overwrite the
    current line without ending it) and ``end_line()`` (end it); without them every shown line is a
    complete line.
    """

    def __init__(
        self,
        write_line: Callable[[str], None],
        *,
        rewrite: Callable[[str], None] | None = None,
        end_line: Callable[[], None] | None = None,
        begin: Callable[[], None] | None = None,
        prefix: str = "[tinyml] ",
        width: int | None = None,
        heartbeat: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write_line = write_line
        self._rewrite = rewrite
        self._end_line = end_line
        self._begin = begin
        self.prefix = prefix
        self.width = width
        self.heartbeat = heartbeat
        self._clock = clock
        self._open = False  # a rewritten line is on screen and not ended
        self._key: str | None = None  # step of the last shown update
        self._last_shown = 0.0
        self._last_line: str | None = None

    @property
    def interactive(self) -> bool:
        return self._rewrite is not None

    # --- constructors ----------------------------------------------------------------------------
    @classmethod
    def for_stream(cls, stream: TextIO, *, isatty: bool | None = None, **kwargs: Any) -> ProgressWriter:
        """Write to a text stream; rewrites one line only if the stream is a terminal."""
        tty = stream.isatty() if isatty is None else isatty

        def write_line(text: str) -> None:
            stream.write(text + "\n")
            stream.flush()

        if not tty:
            return cls(write_line, **kwargs)

        width = kwargs.pop("width", None) or shutil.get_terminal_size((100, 24)).columns

        def rewrite(text: str) -> None:
            stream.write("\r" + text.ljust(width - 1)[: width - 1])
            stream.flush()

        def end_line() -> None:
            stream.write("\n")
            stream.flush()

        return cls(write_line, rewrite=rewrite, end_line=end_line, width=width, **kwargs)

    @classmethod
    def for_terminal_reporter(
        cls, reporter: Any, capture_manager: Any = None, **kwargs: Any
    ) -> ProgressWriter:
        """Write through pytest's ``TerminalReporter`` (``pluginmanager.get_plugin("terminalreporter")``).

        Progress is emitted while an item runs, when pytest captures file descriptors 1 and 2: pass the
        ``CaptureManager`` (``pluginmanager.get_plugin("capturemanager")``) so each write suspends
        capturing (``global_and_fixture_disabled()``, as pytest's live logging does); without it, the
        lines end up in the item's captured output. Uses the reporter's ``write_line``, ``rewrite``,
        ``write``, ``ensure_newline`` and ``isatty``.
        """
        isatty = reporter.isatty
        tty = bool(isatty() if callable(isatty) else isatty)

        def uncaptured(fn: Callable[..., None]) -> Callable[..., None]:
            if capture_manager is None:
                return fn

            def call(*args: Any) -> None:
                with capture_manager.global_and_fixture_disabled():
                    fn(*args)

            return call

        if not tty:
            return cls(uncaptured(reporter.write_line), **kwargs)
        tw = getattr(reporter, "_tw", None)
        width = (
            kwargs.pop("width", None)
            or getattr(tw, "fullwidth", None)
            or shutil.get_terminal_size((100, 24)).columns
        )
        return cls(
            uncaptured(reporter.write_line),
            rewrite=uncaptured(lambda text: reporter.rewrite(text[: max(width - 1, 20)], erase=True)),
            end_line=uncaptured(lambda: reporter.write("\n", flush=True)),
            begin=uncaptured(reporter.ensure_newline),
            width=width,
            **kwargs,
        )

    # --- use -------------------------------------------------------------------------------------
    def __call__(self, line: str) -> None:
        text = " ".join(str(line).split())
        if not text:
            return
        counter = parse_counter(text)
        if counter is None:
            self._step(text)
        else:
            self._update(text, *counter)

    def close(self) -> None:
        """End a rewritten line left open (call before pytest writes its own output)."""
        if self._open:
            self._open = False
            if self._end_line is not None:
                self._end_line()
        self._key = None

    def _full(self, text: str) -> None:
        self.close()
        line = self.prefix + text
        if line == self._last_line:
            return
        self._last_line = line
        self._write_line(line)

    def _step(self, text: str) -> None:
        self._full(text)

    def _update(self, text: str, key: str, done: int, total: int) -> None:
        now = self._clock()
        if self._rewrite is not None:
            if self._open and key != self._key:
                self.close()
            if not self._open and self._begin is not None:
                self._begin()
            self._rewrite(self.prefix + text)
            self._open = True
            self._key = key
            self._last_line = None
            if done >= total:
                self.close()
            return
        first = key != self._key
        final = done >= total
        if first or final or now - self._last_shown >= self.heartbeat:
            self._full(text)
            self._last_shown = now
            self._key = None if final else key
