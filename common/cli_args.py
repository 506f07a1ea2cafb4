"""Command-line helpers of both CLIs: a parser whose errors are one line, and range checks."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

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


def check_cache_dir(flag: str, path: str | os.PathLike) -> None:
    """Refuse a cache folder that is a file or cannot be written (before any work is done)."""
    p = Path(path).expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {path} is a file; give a folder for the teacher-logit cache")
    existing = next(a for a in (p, *p.parents) if a.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path} is not writable ({existing}); give a folder you can "
                         "write to")
