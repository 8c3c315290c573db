"""Bounded text from model files: names and descriptions are clipped where they are read.

A ``.tflite`` file can name an op or tensor with megabytes of text; printed whole, one 2 MB op name made
8 MB of terminal output and a 20 MB report. The parser keeps at most :data:`MAX_NAME_CHARS` characters
of each name (the JSON report therefore holds them up to that bound) and marks the cut with the number
of characters left out; terminal lines clip further with :func:`clip`.

Names are also made printable where they are read: control characters (newlines, escape sequences that
would drive the terminal, NUL), Unicode line/paragraph separators and bidirectional overrides are shown as
escapes (``\\n``, ``\\x1b``, ``\\u202e``), so a hostile name can neither break a one-line message across
lines nor rewrite what the terminal shows.
"""

from __future__ import annotations

from pytest_tinyml._util.text import printable

__all__ = ["MAX_DESCRIPTION_CHARS", "MAX_NAME_CHARS", "clip", "printable"]

#: Characters of a name kept by the parser (and so in JSON reports).
MAX_NAME_CHARS = 256
#: Characters of a model description kept by the parser.
MAX_DESCRIPTION_CHARS = 1024


def clip(text: str, limit: int = MAX_NAME_CHARS) -> str:
    """``text`` made :func:`printable`, cut to ``limit`` characters plus ``…(N more)`` when longer."""
    text = printable(text)
    extra = len(text) - limit
    if extra <= 0:
        return text
    return f"{text[:limit]}…({extra:,} more)"
