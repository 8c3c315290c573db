"""Errors that reach the user as one line: where, what, and the fix.

Every error the plugin raises on bad input derives from :class:`TinyMLError`. The pytest layer prints
``str(error)`` and nothing else (no traceback), so the message must name the file (and the field, line or
byte offset) and say how to fix it.
"""

from __future__ import annotations

from typing import Any

from pytest_tinyml._util.text import printable


class TinyMLError(Exception):
    """A user-facing error whose ``str()`` is one complete line."""

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.message = message
        self.where = where
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        # the location is a name (a file the user gave): control characters in it are shown escaped
        text = f"{printable(self.where)}: {self.message}" if self.where else self.message
        if self.fix:
            text += f" (fix: {self.fix})"
        return " ".join(text.split())


class SpecError(TinyMLError):
    """A spec file is missing, malformed, or names something that does not exist."""


class ModelFileError(TinyMLError):
    """A model file is missing, empty, truncated, or not a valid TFLite flatbuffer."""


class BuildError(TinyMLError):
    """Building, training, converting or evaluating a model failed."""


class DatasetError(TinyMLError):
    """A dataset cannot be loaded (missing offline, bad checksum, wrong shape)."""


class NotEvaluable(Exception):
    """A constraint cannot be evaluated here: the item is skipped with ``reason`` and ``enable``.

    Never used for a constraint that was evaluated: that is a pass or a fail.
    """

    def __init__(self, reason: str, enable: str, information: dict[str, Any] | None = None) -> None:
        self.reason = reason
        self.enable = enable
        # figures measured on the way that the reports still show, as information (never as a verdict)
        self.information = information
        super().__init__(f"{reason}; to enable: {enable}")
