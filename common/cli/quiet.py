"""The libraries' own log lines off while a CLI runs: every error a user sees is our one line, with
no load report of ``transformers`` or ``datasets`` above it (what those reports say that matters,
the CLIs check and say themselves, e.g. a head that does not fit the task)."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator

LIBRARIES = ("transformers", "datasets", "huggingface_hub")
ENV = {"transformers": "TRANSFORMERS_VERBOSITY", "datasets": "DATASETS_VERBOSITY"}


@contextlib.contextmanager
def quiet_libraries(*load: str) -> Iterator[None]:
    """Within the block the libraries log nothing below CRITICAL, and ``transformers`` draws no
    progress bars. ``load``: libraries to import now (those the caller is about to use); one
    imported later inside the block starts quiet too (its verbosity variable is set meanwhile).
    Everything is restored afterwards."""
    for name in load:
        importlib.import_module(name)
    with contextlib.ExitStack() as undo:
        for name in LIBRARIES:
            if name in sys.modules:
                log = importlib.import_module(f"{name}.utils.logging")
                undo.callback(log.set_verbosity, log.get_verbosity())
                log.set_verbosity(logging.CRITICAL)
                if name == "transformers" and log.is_progress_bar_enabled():
                    log.disable_progress_bar()
                    undo.callback(log.enable_progress_bar)
            elif name in ENV:
                undo.callback(_restore_env, name, os.environ.get(ENV[name]))
                os.environ[ENV[name]] = "critical"
        yield


def _restore_env(name: str, old: str | None) -> None:
    """Restore the library's verbosity variable, and its level if it was imported meanwhile."""
    if old is None:
        os.environ.pop(ENV[name], None)
    else:
        os.environ[ENV[name]] = old
    if name in sys.modules:
        importlib.import_module(f"{name}.utils.logging").set_verbosity(logging.WARNING)
