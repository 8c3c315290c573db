"""The one sanitizer for names shown to a user: a model file name, a spec name, an op name.

A name is data, not markup: control characters (newlines, carriage returns, the escape sequences that
drive a terminal or make an OSC 8 hyperlink, NUL, BEL), Unicode line/paragraph separators and
bidirectional overrides are written as visible escapes (``\\n``, ``\\x1b``, ``\\u202e``). A name without
them is returned unchanged (the same object), so ordinary names render byte-identically.
"""

from __future__ import annotations


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


def has_unsafe(text: str) -> bool:
    """Whether :func:`printable` would change ``text``."""
    return any(_unsafe(ch) for ch in text)


def printable(text: str) -> str:
    """``text`` with control, line-separator and bidi-override characters written as escapes."""
    if not has_unsafe(text):
        return text
    return "".join(_escape(ch) if _unsafe(ch) else ch for ch in text)
