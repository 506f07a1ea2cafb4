"""Command-line helpers of both CLIs: a parser whose errors are one line, and range checks."""

from __future__ import annotations

import argparse
import math

from common.errors import UsageError


class Parser(argparse.ArgumentParser):
    """Bad arguments become a one-line :class:`UsageError` (exit 2), not usage + SystemExit."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message}; see --help")


def check_number(flag: str, value: float, *, low: float | None = None, high: float | None = None,
                 strict: bool = False) -> None:
    """Refuse a value that is not finite or lies outside [low, high] ((low, high] if ``strict``)."""
    bad = not math.isfinite(value) or (low is not None and (value <= low if strict else value < low)) \
        or (high is not None and value > high)
    if bad:
        lo = "" if low is None else "positive" if strict and low == 0 else \
            f"{'>' if strict else '>='} {low:g}"
        hi = "" if high is None else f"<= {high:g}"
        raise UsageError(f"{flag} must be {' and '.join(s for s in (lo, hi) if s) or 'finite'}, "
                         f"got {value:g}")
