"""Progress bars for both CLIs: live on a terminal, sparse in a log file."""

from __future__ import annotations

import sys
from collections.abc import Iterable

LOG_INTERVAL_S = 60.0  # at most one bar update a minute when stderr is not a terminal


def progress_bar(iterable: Iterable, desc: str, enabled: bool = True):
    """A tqdm bar over ``iterable``; when stderr is not a terminal it redraws at most every
    ``LOG_INTERVAL_S`` and a shorter bar never shows, so logs get no carriage-return lines (pass
    ``refresh=False`` to ``set_postfix``)."""
    from tqdm.auto import tqdm

    tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
    off = {} if enabled else {"disable": True}  # when enabled, TQDM_DISABLE=1 still turns it off
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=tty,
                mininterval=0.1 if tty else LOG_INTERVAL_S, delay=0 if tty else LOG_INTERVAL_S,
                file=sys.stderr, **off)
