"""Safe text for generated C and C++: every model-derived string goes through one of these helpers.

A ``.tflite`` file is input nobody on the team wrote. Its op names, tensor names and descriptions can
hold NUL bytes, newlines, ``*/``, backslashes (line splicing), quotes and trigraphs (``??/`` is a
backslash in C before C++17 with ``-trigraphs``). Written raw into a comment, any of those can end the
comment and put code into a header that the user's firmware (or our own firmware build) compiles.

- :func:`c_comment_text` reduces a string to characters that cannot end or extend a ``//`` or
  ``/* */`` comment: printable ASCII without ``\\``, ``*``, ``/``, ``?`` and quotes, length-bounded.
  Use it for text a human reads (comments); it is lossy on purpose.
- :func:`c_string_literal` gives a double-quoted C string literal that holds the exact bytes: anything
  outside a small safe set becomes a three-digit octal escape, so no byte can end the literal, splice
  a line or form a trigraph.
- :func:`c_identifier` maps a string to a valid C identifier (for symbol names built from labels).
"""

from __future__ import annotations

import re

#: Longest text put into one generated comment; longer text is cut and marked.
MAX_COMMENT_CHARS = 120

# Printable ASCII that cannot close a comment, splice a line, or start a trigraph/string/char literal.
_COMMENT_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-+.,:;=()[]{}<>#%&|^~!@$"
)
# Bytes a string literal may hold as they are; everything else is octal-escaped.
_LITERAL_SAFE = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-+.,:;=()[]{}<>#%&|^~!@$"
)


def c_comment_text(text: object, limit: int = MAX_COMMENT_CHARS) -> str:
    """``text`` reduced to a safe printable set for a C/C++ comment, at most ``limit`` characters.

    Unsafe characters become ``_``; a cut is marked ``...(N more)``. The result never contains a
    newline, backslash, NUL, ``*``, ``/``, ``?`` or quote, so it cannot end a ``/* */`` comment, continue
    a ``//`` comment onto the next line, or form a trigraph.
    """
    s = str(text)
    extra = len(s) - limit
    if extra > 0:
        s = s[:limit]
    out = "".join(ch if ch in _COMMENT_SAFE else "_" for ch in s)
    if extra > 0:
        out += f"...({extra} more)"
    return out


def c_string_literal(data: bytes | str) -> str:
    """A double-quoted C string literal holding exactly ``data`` (str is UTF-8 encoded).

    Bytes outside the safe set are written as three-digit octal escapes (``\\000`` .. ``\\377``), which
    never merge with a following digit, so the literal is exact and inert.
    """
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
    return '"' + "".join(chr(b) if b in _LITERAL_SAFE else f"\\{b:03o}" for b in raw) + '"'


def c_identifier(text: str, fallback: str = "model") -> str:
    """A C identifier made from ``text`` (letters, digits, ``_``; never starting with a digit)."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", text)[:64].strip("_") or fallback
    if ident[0].isdigit():
        ident = "_" + ident
    return ident
