"""The libraries' own log lines off while a CLI runs: every error a user sees is our one line, with
no load report of ``transformers`` or ``datasets`` above it (what those reports say that matters,
the CLIs check and say themselves, e.g. a head that does not fit the task)."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterator

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
    undo: list[Callable[[], None]] = []
    for name in LIBRARIES:
        if name in sys.modules:
            undo += _silence(name)
        elif name in ENV:
            undo.append(_env_until_imported(name))
    try:
        yield
    finally:
        for step in reversed(undo):
            step()


def _silence(name: str) -> list[Callable[[], None]]:
    mod = importlib.import_module(f"{name}.utils.logging")
    level = mod.get_verbosity()
    mod.set_verbosity(logging.CRITICAL)
    steps = [lambda: mod.set_verbosity(level)]
    if name == "transformers" and mod.is_progress_bar_enabled():
        mod.disable_progress_bar()
        steps.append(mod.enable_progress_bar)
    return steps


def _env_until_imported(name: str) -> Callable[[], None]:
    """Set the library's verbosity variable; the returned step restores it (and the level of the
    library, if it was imported meanwhile)."""
    var, old = ENV[name], os.environ.get(ENV[name])
    os.environ[var] = "critical"

    def restore() -> None:
        if old is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old
        if name in sys.modules:
            importlib.import_module(f"{name}.utils.logging").set_verbosity(logging.WARNING)

    return restore
