"""Progress bars for both CLIs: live on a terminal, sparse in a log file."""

from __future__ import annotations

import sys
from collections.abc import Iterable

LOG_INTERVAL_S = 60.0  # at most one bar update a minute when stderr is not a terminal


def progress_bar(iterable: Iterable, desc: str, enabled: bool = True):
    """A tqdm bar over ``iterable``. When stderr is not a terminal (a log file, a pipe) the bar
    redraws at most once every ``LOG_INTERVAL_S`` seconds instead of ten times a second, so
    logs do not fill with carriage-return lines, and a bar that ends within that time never shows
    (a log or an error message gets no bar fragment); pass ``refresh=False`` to ``set_postfix``."""
    from tqdm.auto import tqdm

    tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
    off = {} if enabled else {"disable": True}  # when enabled, TQDM_DISABLE=1 still turns it off
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=tty,
                mininterval=0.1 if tty else LOG_INTERVAL_S, delay=0 if tty else LOG_INTERVAL_S,
                file=sys.stderr, **off)
