"""Run a method's phases on a CLI's pipeline: the one place where method sequences are executed."""

from __future__ import annotations

from typing import Any, Protocol

from .base import TEACHER_PHASE, Method, PhasePlan


class Pipeline(Protocol):
    """What each CLI provides: its models, data, optimizer and evaluation per role."""

    trainer: Any  # annealing_kd.common.training.trainer.Trainer
    trains_teacher: bool  # True: the teacher is trained here first (not given trained)
    batches_per_epoch: int  # per process

    def phase(self, step: PhasePlan) -> Any:
        """The training.trainer.Phase of a step (epochs, optimizer, schedule, objective options)."""

    def model(self, role: str) -> Any:
        """The trainable (accelerate-prepared) model of a role."""

    def targets(self, role: str) -> Any:
        """Frozen logits of a finished role's model, to train another model against."""

    def fit(self, model: Any, step: PhasePlan, phase: Any, targets: Any) -> dict[str, Any]:
        """Train ``model`` through ``phase`` (``Trainer.fit`` with the CLI's batches)."""

    def finished(self, role: str, model: Any) -> None:
        """A teacher or assistant holds its best weights: save it, describe it, free memory."""


def steps_of(method: Method, trains_teacher: bool) -> tuple[PhasePlan, ...]:
    teacher_first = method.uses("teacher") and trains_teacher
    return ((TEACHER_PHASE,) if teacher_first else ()) + method.steps


def plan(method: Method, pipe: Pipeline) -> dict[PhasePlan, Any]:
    """The steps that run (not a skippable one with 0 epochs) and their phases, each checked
    against the data's optimizer steps (its annealing schedule): call it before training."""
    phases = {s: pipe.phase(s) for s in steps_of(method, pipe.trains_teacher)}
    phases = {s: p for s, p in phases.items() if p.epochs or not s.skippable}
    for phase in phases.values():
        pipe.trainer.check_phase(phase, pipe.batches_per_epoch)
    return phases


def run_method(method: Method, pipe: Pipeline, phases: dict[PhasePlan, Any] | None = None
               ) -> tuple[Any, dict[str, Any], list[str]]:
    """Run the phases of ``method`` (:func:`plan`); return the student (with its last weights),
    the selected epoch (the best of the student's phases) and the student's phases that ran."""
    phases = phases or plan(method, pipe)
    models: dict[str, Any] = {}
    for step in phases:
        targets = pipe.targets(step.teacher) if step.teacher else None
        model = models[step.model] = models.get(step.model) or pipe.model(step.model)
        if step.start:
            pipe.trainer.load_best(model, step.start)
        pipe.fit(model, step, phases[step], targets)
        if step.model != "student":
            pipe.trainer.load_best(model, step.phase)
            pipe.finished(step.model, model)
            del models[step.model]
    ran = [s.phase for s in phases if s.model == "student"]
    return models["student"], pipe.trainer.select(ran), ran


def table(title: str, columns: list[str], rows: dict[str, list[str]], notes: list[str]) -> str:
    """The end-of-run table of both CLIs: one row per role (teacher, assistant, student)."""
    width = max([10] + [len(c) + 2 for c in columns] + [len(v) + 2 for r in rows.values() for v in r])
    lines = [title] if title else []
    lines.append(f"{'':10}" + "".join(f"{c:>{width}}" for c in columns))
    lines += [f"{role:10}" + "".join(f"{v:>{width}}" for v in cells) for role, cells in rows.items()]
    return "\n".join(lines + notes)
