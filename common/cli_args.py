"""Command-line helpers of both CLIs: a parser whose errors are one line, flag spellings and
range checks."""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
from pathlib import Path

from common.errors import UsageError, setting


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default after its help, unless the help says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default:" in text or action.default in (None, False):
            return text
        return super()._get_help_string(action)

INT64 = 2**63 - 1
_WHOLE = re.compile(r"[+-]?[0-9]+")
_REAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|infinity|nan)",
                   re.IGNORECASE)


def integer(text: str) -> int:
    """``type=`` of integer flags: ASCII digits only (``int()`` takes other scripts' digits too),
    within int64."""
    if not _WHOLE.fullmatch(text.strip()):
        raise ValueError(text)  # argparse: "invalid int value: ..."
    value = int(text)
    if abs(value) > INT64:
        raise argparse.ArgumentTypeError(f"{text.strip()} is out of range (at most {INT64})")
    return value


integer.__name__ = "int"


def real(text: str) -> float:
    """``type=`` of real-valued flags: an ASCII decimal number, finite (no inf, nan, 1e999)."""
    if not _REAL.fullmatch(text.strip()):
        raise ValueError(text)  # argparse: "invalid float value: ..."
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text.strip()} is not a finite number")
    return value


real.__name__ = "float"


class Parser(argparse.ArgumentParser):
    """Bad arguments become a one-line :class:`UsageError` (exit 2), not usage + SystemExit;
    ``--help`` shows the defaults (:class:`HelpFormatter`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """Parse, and record the command as it was given (``command``: the model card's)."""
        argv = list(sys.argv[1:] if args is None else args)
        parsed = super().parse_args(argv, namespace)
        parsed.command = shlex.join([sys.argv[0] if args is None else self.prog, *argv])
        return parsed

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message}; see --help")


def twins(*names: str) -> list[str]:
    """Each flag name and its ``-``/``_`` twin (the image CLI takes both spellings)."""
    spelled: list[str] = []
    for name in names:
        body = name[2:]
        for variant in (name, "--" + body.replace("_", "-"), "--" + body.replace("-", "_")):
            if variant not in spelled:
                spelled.append(variant)
    return spelled


def whole_number(text: str) -> int:
    """An epoch count; '3.0' (the original GLUE script's float flags) is accepted, '3.5' is not."""
    value = real(text)
    if value != int(value):
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of epochs")
    return integer(str(int(value)))


def check_number(name: str, value: float, *, low: float | None = None, high: float | None = None,
                 strict: bool = False) -> None:
    """Refuse a value of setting ``name`` (written as the CLI's flag) that is not finite or lies
    outside [low, high] ((low, high] if ``strict``)."""
    bad = not math.isfinite(value) or (low is not None and (value <= low if strict else value < low)) \
        or (high is not None and value > high)
    if bad:
        lo = "" if low is None else "positive" if strict and low == 0 else \
            f"{'>' if strict else '>='} {_num(low)}"
        hi = "" if high is None else f"<= {_num(high)}"
        raise UsageError(f"{setting(name)} must be {' and '.join(s for s in (lo, hi) if s) or 'finite'}, "
                         f"got {_num(value)}")


def _num(value: float) -> str:
    """A number as a user wrote it: whole numbers in full, others in %g."""
    return str(int(value)) if math.isfinite(value) and value == int(value) and abs(value) < 1e16 \
        else f"{value:g}"


def check_folder(flag: str, value: str | None) -> None:
    """A folder the run will write into (a cache): it is a writable folder, or can be created
    (nothing is created here)."""
    if not value:
        return
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {value} is a file; pass a folder")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{flag} {value} cannot be created ({probe} is a file); pass a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {value} is not writable ({probe}: no permission); pass a "
                         "writable folder")
