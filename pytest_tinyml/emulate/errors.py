"""Errors of the firmware build/run path."""

from __future__ import annotations

from pytest_tinyml.errors import TinyMLError


class FirmwareError(TinyMLError):
    """Building or running the firmware failed (compiler error, emulator crash, timeout, bad exit).

    ``stage`` is one of compile / archive / link / size / emulate / init / invoke / io / timeout;
    ``output`` holds the last lines the tool (or the firmware under QEMU) printed.
    """

    def __init__(
        self,
        message: str,
        *,
        stage: str,
        output: list[str] | None = None,
        where: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.stage = stage
        self.output = list(output or [])
        tail = " | ".join(line.strip() for line in self.output[-3:] if line.strip())
        full = f"firmware {stage}: {message}" + (f" [last output: {tail}]" if tail and tail not in message else "")
        super().__init__(full, where=where, fix=fix)


def emulator_timeout(limit: float, output: list[str] | None = None) -> FirmwareError:
    """The error of an emulator run that did not finish within ``limit`` seconds (ini
    ``tinyml_emulator_timeout``), naming the option."""
    return FirmwareError(
        f"emulator did not finish within {limit:g} s",
        stage="timeout",
        output=output,
        fix=f"raise ini tinyml_emulator_timeout (now {limit:g} s; e.g. tinyml_emulator_timeout = 10min) "
            "or run fewer samples",
    )
