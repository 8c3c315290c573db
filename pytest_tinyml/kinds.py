"""The closed sets of names the plugin uses (runtime, emulator, kernel set, op status, direction, item
status), as string enums: each member is its own string value, so it compares equal to, formats as, and
serialises to the text that reports, caches and the command line already use.

Nothing here imports anything of the project: every layer may use these types.
"""

from __future__ import annotations

from enum import Enum


class Name(str, Enum):
    """A string enum whose ``str()`` and ``format()`` are its value (as ``enum.StrEnum`` does on 3.11)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(str(m.value) for m in cls)

    @classmethod
    def parse(cls, text: str | None) -> Name | None:
        """The member named ``text`` (None for None or empty text); ValueError naming the choices else."""
        if text is None or text == "":
            return None
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"{text!r} is not one of {', '.join(cls.values())}") from None


class Runtime(Name):
    """The firmware runtime: real TFLM, or the project's own C runtime (the offline fallback)."""

    TFLM = "tflm"
    TINYML = "tinyml"


class Emulator(Name):
    QEMU = "qemu"
    RENODE = "renode"


class KernelSet(Name):
    """TFLM's kernel set: CMSIS-NN's optimised kernels or TFLM's portable reference kernels."""

    CMSIS_NN = "cmsis_nn"
    REFERENCE = "reference"


class OpStatus(Name):
    """What host TFLM says of one operator: runs, must be registered by the firmware, is not shipped, or
    refused the model (a type check in Prepare)."""

    OK = "ok"
    REGISTER = "register"
    UNSUPPORTED = "unsupported"
    REJECTED = "rejected"


class Direction(Name):
    """Which way a metric gets better: smaller (``lower``), larger (``higher``), or neither (``""``)."""

    LOWER = "lower"
    HIGHER = "higher"
    NONE = ""


class ItemStatus(Name):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"


__all__ = ["Direction", "Emulator", "ItemStatus", "KernelSet", "Name", "OpStatus", "Runtime"]
