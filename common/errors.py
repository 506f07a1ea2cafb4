"""One convention for bad input: ``error: <what is wrong and how to fix it>`` and exit code 2.

The core speaks of values, not of flags: a message names a setting as :func:`setting` ``(name)``.
``str(error)`` writes it as the setting's name; each CLI writes it as its own flag
(:meth:`UsageError.spelled`, given to :func:`run_cli`), e.g. ``max_temperature`` is
``--max_temperature`` in both CLIs and ``anneal_per_step`` is ``--anneal-per-step`` in the image CLI.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence

_SETTING = re.compile(r"\{setting:(\w+)\}")


def setting(name: str) -> str:
    """A setting named in a core message (the CLI shows its flag)."""
    return f"{{setting:{name}}}"


class UsageError(Exception):
    """Bad input from the user. The message names the problem and the fix, on one line."""

    def spelled(self, flag_of: Callable[[str], str] | None = None) -> str:
        """The message with every :func:`setting` written by ``flag_of`` (default: its name)."""
        text = " ".join(str(self.args[0] if self.args else "").split())
        return _SETTING.sub(lambda m: flag_of(m[1]) if flag_of else m[1], text)

    def __str__(self) -> str:
        return self.spelled()


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None,
            flag_of: Callable[[str], str] | None = None) -> int:
    """Run ``main``; turn a :class:`UsageError` into one line on stderr (settings written as the
    CLI's flags by ``flag_of``) and exit status 2. The output folders it locked are released at
    the end (the OS does it when the process ends)."""
    from common import run_lock

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
