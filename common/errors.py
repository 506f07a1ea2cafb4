"""One convention for bad input: ``error: <what is wrong and how to fix it>`` and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


class UsageError(Exception):
    """Bad input from the user. The message names the problem and the fix, on one line."""


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None) -> int:
    """Run ``main``; turn a :class:`UsageError` into one line on stderr and exit status 2. The
    output folders it locked are released at the end (the OS does it when the process ends)."""
    from common import run_lock

    before = run_lock.held()
    try:
        return int(main(argv) or 0)
    except UsageError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; pass --resume to continue from the last checkpoint", file=sys.stderr)
        return 130
    finally:
        run_lock.release_all(keep=before)
