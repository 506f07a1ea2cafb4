"""Bad input: ``error: <what is wrong and how to fix it>``, exit code 2.

A core message names a setting as :func:`setting` ``(name)``: ``str(error)`` writes its name, each
CLI its own flag (:meth:`UsageError.spelled` in ``run_cli``; ``anneal_per_step`` is
``--anneal-per-step`` in the image CLI)."""

from __future__ import annotations

import re
from collections.abc import Callable

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
