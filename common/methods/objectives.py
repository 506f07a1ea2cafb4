"""Training objectives by name (a phase names its own): ``task`` (hard labels: cross-entropy, or
MSE for regression), ``anneal`` (Annealing-KD phase 1, methods/annealing.py), ``kd`` (Hinton KD).

A new objective: ``@register_objective(name, options=(Setting(...), ...))`` on
``loss(logits, labels, targets, phi, **options)``. Each option is a run setting: both CLIs get its
flag, check it, record it in results.json and refuse a change on ``--resume``; it reaches the loss
as the keyword of its name. No torch here (``--help`` stays fast): the losses import it on use.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..cli import settings
from ..cli.args import check_number, real
from ..cli.settings import Setting
from ..errors import UsageError, setting
from .annealing import check_schedule, check_temperature


@dataclass(frozen=True)
class Objective:
    """``loss(logits, labels, targets, phi, **options) -> scalar``: ``targets`` are the frozen
    teacher's logits if ``needs_teacher``, ``phi`` the multiplier if ``anneals`` (else None);
    ``options`` hold every objective's settings (a loss takes its own keywords)."""

    loss: Callable[..., Any]
    needs_teacher: bool = True
    anneals: bool = False
    options: tuple[Setting, ...] = ()


OBJECTIVES: dict[str, Objective] = {}


def register_objective(name: str, *, needs_teacher: bool = True, anneals: bool = False,
                       options: Sequence[Setting] = ()):
    """Decorator: register ``loss`` as the objective ``name`` with its option settings."""
    opts = tuple(replace(o, group=settings.OBJECTIVE_GROUP) for o in options)

    def add(loss: Callable[..., Any]) -> Callable[..., Any]:
        settings.register(*opts)
        OBJECTIVES[name] = Objective(loss, needs_teacher, anneals, opts)
        return loss

    return add


def unregister_objective(name: str) -> None:
    """Remove an objective and the options no other objective declares (for tests)."""
    objective = OBJECTIVES.pop(name)
    kept = {o.name for other in OBJECTIVES.values() for o in other.options}
    settings.unregister(*(o.name for o in objective.options if o.name not in kept))


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; registered: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def check_steps(args: argparse.Namespace, steps: Iterable[Any]) -> None:
    """Refuse each step's epoch budget (>= 1; >= 0 if skippable), an annealing step's schedule
    per epoch (per step: once the data size is known) and a ``--recipe`` without a phase 1."""
    steps = list(steps)
    if args.recipe != "paper" and not any(s.budget == "phase1" for s in steps):
        raise UsageError(f"{setting('recipe')} {args.recipe} changes Annealing-KD's phase 1; "
                         f"{setting('method')} {args.method} has none: drop it or use "
                         f"{setting('method')} annealing")
    for step in steps:
        name = settings.budget_setting(step.budget)
        n = getattr(args, name)
        low = 0 if step.skippable else 1
        if n < low:
            raise UsageError(f"{setting(name)} must be at least {low}, got {n}")
        if n == 0 or not get_objective(step.objective).anneals:
            continue  # a skipped step, or one without a schedule
        if args.anneal_per_step:
            check_temperature(args.max_temperature)  # its steps are counted once the data is read
        else:
            check_schedule(n, args.max_temperature, "epochs", budget=name)


def options_of(args: argparse.Namespace) -> dict[str, Any]:
    """Every registered objective's option values (the keywords every loss gets)."""
    return {o.name: getattr(args, o.name) for obj in OBJECTIVES.values() for o in obj.options}


@register_objective("task", needs_teacher=False)
def task(logits, labels, targets, phi, **options):
    from .losses import task_loss

    return task_loss(logits, labels)


@register_objective("anneal", anneals=True, options=[
    Setting("anneal_reduction", "phase-1 MSE: mean over elements (the original code) or "
            "per-example sum (the paper's formula)", "mean", choices=["mean", "sum"])])
def anneal(logits, labels, targets, phi, *, anneal_reduction: str = "mean", **options):
    from .annealing import annealing_loss

    return annealing_loss(logits, targets, phi, anneal_reduction)


@register_objective("kd", options=[
    Setting("kd_alpha", "weight of the soft term in Hinton KD", 0.5, real,
            check=lambda v: check_number("kd_alpha", v, low=0, high=1)),
    Setting("kd_temperature", "temperature of Hinton KD", {"image": 5.0, "text": 4.0}, real,
            check=settings.positive("kd_temperature")),
    Setting("kd_reduction", "KD soft term: batchmean = KL summed over classes, mean over the "
            "batch; elementwise-mean = mean over batch x classes (nn.KLDivLoss() default, the TAKD "
            "code behind the paper's KD/TAKD rows: C times smaller)", "batchmean",
            choices=["batchmean", "elementwise-mean"])])
def kd(logits, labels, targets, phi, *, kd_alpha: float = 0.5, kd_temperature: float = 4.0,
       kd_reduction: str = "batchmean", **options):
    from .losses import hinton_kd_loss

    return hinton_kd_loss(logits, targets, labels, kd_alpha, kd_temperature, kd_reduction)
