"""Command-line helpers of both CLIs: a parser whose errors are one line, flag spellings and
range checks."""

from __future__ import annotations

import argparse
import math

from common.errors import UsageError, setting


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default after its help, unless the help says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default:" in text or action.default in (None, False):
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """Bad arguments become a one-line :class:`UsageError` (exit 2), not usage + SystemExit;
    ``--help`` shows the defaults (:class:`HelpFormatter`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

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
    value = float(text)
    if value != int(value):
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of epochs")
    return int(value)


def check_number(name: str, value: float, *, low: float | None = None, high: float | None = None,
                 strict: bool = False) -> None:
    """Refuse a value of setting ``name`` (written as the CLI's flag) that is not finite or lies
    outside [low, high] ((low, high] if ``strict``)."""
    bad = not math.isfinite(value) or (low is not None and (value <= low if strict else value < low)) \
        or (high is not None and value > high)
    if bad:
        lo = "" if low is None else "positive" if strict and low == 0 else \
            f"{'>' if strict else '>='} {low:g}"
        hi = "" if high is None else f"<= {high:g}"
        raise UsageError(f"{setting(name)} must be {' and '.join(s for s in (lo, hi) if s) or 'finite'}, "
                         f"got {value:g}")
