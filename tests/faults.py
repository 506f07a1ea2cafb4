"""Fault injection for the kill tests, kept out of the code it tests: in a process about to run a
CLI, count the renames of ``annealing_kd.common.run_folder.checkpoint`` (every file of a run appears by one) and SIGKILL
the process just before the N-th, or log each rename's target."""

from __future__ import annotations

import os
import signal
import types
from pathlib import Path

import annealing_kd.common.run_folder.checkpoint as ckpt


def inject(kill_at: int | None = None, log: Path | None = None) -> None:
    """From now on in this process (call it in a forked child): ``annealing_kd.common.run_folder.checkpoint``'s
    ``os.replace`` kills the process before rename number ``kill_at`` and appends
    ``<number>\\t<target>`` to ``log``."""
    count = 0

    def replace(src, dst) -> None:
        nonlocal count
        count += 1
        if log is not None:
            with open(log, "a") as f:
                f.write(f"{count}\t{dst}\n")
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace(src, dst)

    proxy = types.ModuleType("os")
    proxy.__dict__.update(os.__dict__)
    proxy.replace = replace
    ckpt.os = proxy
