"""Experiment tracking (``--report_to``, HF's flag and spelling) through accelerate's trackers.

``none`` (default), ``tensorboard``, ``wandb``, ``mlflow``, ``trackio`` or ``all`` (every one
installed), writing into ``<out>/tracking`` (trackio: its own store); their files are recorded in
the run's manifest as growing logs, so ``--overwrite-output-dir`` removes them. Logged: the config
as hyper-parameters; per optimizer step at the logging interval ``<phase>/loss``, ``<phase>/lr``,
``<phase>/temperature``, ``<phase>/phi`` (step: the phase's optimizer step); per epoch
``<phase>/epoch/<metric>``, ``<phase>/epoch/train_loss``, ``<phase>/epoch/phi`` (step: the
epoch); at the end ``final/<metric>``, ``final/selected_epoch`` and the chance-teacher guard's
``chance_check/value``, ``/chance``, ``/margin``, ``/at_chance``, ``/warned`` (1 or 0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from annealing_kd.common.errors import UsageError, setting

TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
CHOICES = ("none", *TRACKERS, "all")
FOLDER = "tracking"
PROJECT = "annealing-kd"


def _installed(name: str) -> bool:
    from accelerate.utils import imports

    return getattr(imports, f"is_{name}_available")()


def trackers(report_to: str | None) -> list[str]:
    """The trackers ``--report_to`` names (``all``: the installed ones, at least one); one not
    installed is a one-line error naming the extra that installs it."""
    if report_to in (None, "none"):
        return []
    found = [t for t in (TRACKERS if report_to == "all" else (report_to,)) if _installed(t)]
    if report_to == "all" and not found:
        raise UsageError(f"{setting('report_to')} all: no tracker is installed; pip install "
                         "'annealing-kd[tensorboard]' (or [wandb], [mlflow], [trackio])")
    if not found:
        raise UsageError(f"{setting('report_to')} {report_to}: {report_to} is not installed; pip "
                         f"install 'annealing-kd[{report_to}]'")
    return found


def check_report_to(value: str) -> None:
    trackers(value)


class Tracker:
    """What the trainer logs, through an accelerator made with ``log_with`` (no-op without)."""

    def __init__(self, accelerator, run, names: list[str]) -> None:
        self.acc, self.run, self.names, self.started = accelerator, run, names, False
        self.folder: Path = run / FOLDER

    def start(self, config: dict[str, Any]) -> None:
        """Once the run's folder is ours (``RunDir.start``): the trackers and the config."""
        if self.names and not self.started:
            self.started = True
            scalar = (int, float, str, bool)  # what trackers accept; others as JSON text
            flat = {k: v if isinstance(v, scalar) else json.dumps(v, default=str)[:500]
                    for k, v in config.items()}
            self.acc.init_trackers(PROJECT, config=flat,
                                   init_kwargs={"wandb": {"dir": str(self.folder)}})
            self.record()

    def step(self, phase: str, step: int, values: dict[str, float | None]) -> None:
        if self.started:
            self.acc.log({f"{phase}/{k}": v for k, v in values.items() if v is not None}, step=step)

    def epoch(self, record: dict[str, Any]) -> None:
        if self.started:
            values = {f"epoch/{k}": v for k, v in record["eval"].items()}
            values.update({"epoch/train_loss": record["train_loss"], "epoch/phi": record["phi"]})
            self.step(record["phase"], record["epoch"], values)
            self.record()

    def finish(self, final: dict[str, Any], chance_check: dict[str, Any] | None = None) -> None:
        """The final metrics, and the chance-teacher guard's numbers (``chance_check/...``)."""
        if not self.started:
            return
        values = {f"final/{k}": v for k, v in final["metrics"].items() if isinstance(v, float)}
        values.update({f"chance_check/{k}": float(v) for k, v in (chance_check or {}).items()
                       if k != "examples" and isinstance(v, (int, float))})
        self.acc.log({**values, "final/selected_epoch": final["selected_epoch"]}, step=0)
        self.acc.end_training()
        self.record()
        self.started = False

    def record(self) -> None:
        """Record the trackers' files (flushed) in the run's manifest as growing logs."""
        if not self.acc.is_main_process or not self.folder.is_dir():
            return
        for t in self.acc.trackers:
            getattr(getattr(t, "writer", None), "flush", lambda: None)()
        for p in sorted(self.folder.rglob("*")):
            if p.is_file() and not p.is_symlink():
                self.run.manifest.record(p, growing=True)
        self.run.manifest.save()
