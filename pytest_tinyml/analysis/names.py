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

#: Characters of a name kept by the parser (and so in JSON reports).
MAX_NAME_CHARS = 256
#: Characters of a model description kept by the parser.
MAX_DESCRIPTION_CHARS = 1024


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    if ch == "\r":
        return "\\r"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _unsafe(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029) or 0x202A <= code <= 0x202E \
        or 0x2066 <= code <= 0x2069 or code == 0x200E or code == 0x200F


def printable(text: str) -> str:
    """``text`` with control, line-separator and bidi-override characters written as escapes."""
    if not any(_unsafe(ch) for ch in text):
        return text
    return "".join(_escape(ch) if _unsafe(ch) else ch for ch in text)


def clip(text: str, limit: int = MAX_NAME_CHARS) -> str:
    """``text`` made :func:`printable`, cut to ``limit`` characters plus ``…(N more)`` when longer."""
    text = printable(text)
    extra = len(text) - limit
    if extra <= 0:
        return text
    return f"{text[:limit]}…({extra:,} more)"
