"""The entry of every command: bad input becomes one line ``error: ...`` and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from ..errors import UsageError
from ..run_folder import lock as run_lock


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None,
            flag_of: Callable[[str], str] | None = None) -> int:
    """Run ``main``; turn a :class:`UsageError` into one line on stderr (settings written as the
    CLI's flags by ``flag_of``) and exit status 2. The output folders it locked are released at
    the end (the OS does it when the process ends)."""
    before = run_lock.held()
    try:
        return int(main(argv) or 0)
    except UsageError as exc:
        print(f"error: {exc.spelled(flag_of)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"error: interrupted; pass {(flag_of or str)('resume')} to continue from the last "
              "checkpoint", file=sys.stderr)
        return 130
    finally:
        run_lock.release_all(keep=before)
