"""Annealing-KD (Jafari et al., EACL 2021) on one screen: the schedule, the phase-1 loss, the method.

Phase-1 unit i of n (epoch, or optimizer step with per-step annealing), 0-based:

    T_i    = tau_max - floor(i * tau_max / n)        (integer temperature, tau_max ... 1)
    Phi(T) = 1 - (T - 1) / tau_max                   (teacher-logit multiplier, 1/tau_max ... 1)
    loss   = MSE(z_s, Phi(T_i) * z_t)                (the frozen teacher's logits z_t)

The n units are split into tau_max equal stages (as equal as integers allow); Phi is exactly 1
in the last stage. Needs n >= tau_max so that every stage has a unit. Phase 2 starts from the
best phase-1 weights and trains on hard labels (``task`` objective), without the teacher. Every
user of T and Phi (the trainer, the own-loop API, the ``transformers.Trainer`` subclass) asks
:class:`AnnealingSchedule`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UsageError, setting
from .base import Method, PhasePlan, register

if TYPE_CHECKING:  # torch is imported when the loss first runs: --help stays fast
    import torch

EPOCHS, STEPS = "epochs", "optimizer steps"


def temperature(i: int, n: int, tau_max: int) -> int:
    """Integer temperature of phase-1 unit ``i`` of ``n``."""
    return tau_max - (i * tau_max) // n


def phi(temp: int, tau_max: int) -> float:
    """Multiplier of the teacher's logits at temperature ``temp``."""
    return 1.0 - (temp - 1) / tau_max


@dataclass(frozen=True)
class AnnealingSchedule:
    """(T, Phi) of each of phase 1's ``units`` (epochs, or optimizer steps); refuses
    ``units < max_temperature``. ``schedule(i)`` is (T, Phi) of unit ``i``, 0-based; a unit past
    the end answers the last one (Phi = 1). Per step, ``i`` is the optimizer steps done before
    the batch::

        AnnealingSchedule.per_epoch(epochs=4, max_temperature=2)(1)             # (2, 0.5)
        AnnealingSchedule.per_step(total_steps=40, max_temperature=4).phi(10)   # 0.5
    """

    units: int
    max_temperature: int
    unit: str = EPOCHS

    def __post_init__(self) -> None:
        check_schedule(self.units, self.max_temperature, self.unit)

    @classmethod
    def per_epoch(cls, epochs: int, max_temperature: int) -> AnnealingSchedule:
        return cls(epochs, max_temperature, EPOCHS)

    @classmethod
    def per_step(cls, total_steps: int, max_temperature: int) -> AnnealingSchedule:
        return cls(total_steps, max_temperature, STEPS)

    def temperature(self, i: int) -> int:
        if i < 0:
            raise ValueError(f"unit {i} of the annealing schedule: units count from 0")
        return temperature(min(i, self.units - 1), self.units, self.max_temperature)

    def phi(self, i: int) -> float:
        return phi(self.temperature(i), self.max_temperature)

    def __call__(self, i: int) -> tuple[int, float]:
        return self.temperature(i), self.phi(i)

    def __len__(self) -> int:
        return self.units

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return (self(i) for i in range(self.units))


def annealing_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, phi: float,
                   reduction: str = "mean") -> torch.Tensor:
    """MSE(z_s, Phi * z_t). ``mean``: over all elements (the original code, the published
    numbers); ``sum``: the paper's per-example squared L2 norm, mean over the batch."""
    import torch.nn.functional as F

    target = phi * teacher_logits.detach().to(student_logits.dtype)
    if reduction == "mean":
        return F.mse_loss(student_logits, target)
    if reduction == "sum":
        return (student_logits - target).pow(2).flatten(1).sum(1).mean()
    raise ValueError(f"unknown reduction {reduction!r}; use 'mean' or 'sum'")


register(Method("annealing", (
    PhasePlan("phase1", "student", "anneal", teacher="teacher"),
    PhasePlan("phase2", "student", "task", start="phase1", skippable=True),
), "Annealing-KD: annealed teacher logits (phase 1), then hard labels (phase 2)"))


def check_temperature(tau_max: int) -> None:
    if tau_max < 1:
        raise UsageError(f"{setting('max_temperature')} must be at least 1, got {tau_max}")


def check_schedule(n: int, tau_max: int, unit: str = EPOCHS, budget: str | None = None) -> None:
    """Refuse a phase 1 of ``n`` units (epochs, whose setting is ``budget``, or optimizer steps)
    that cannot give every temperature a stage."""
    check_temperature(tau_max)
    if n < 1:
        raise UsageError(f"phase 1 needs at least 1 of its {unit}, got {n}")
    if n >= tau_max:
        return
    tau = setting("max_temperature")
    if unit == EPOCHS:
        raise UsageError(
            f"{tau} {tau_max} exceeds {setting(budget) if budget else 'the phase-1 epochs'} {n}: "
            f"each temperature needs at least one epoch; lower {tau} to <= {n}"
            + (f", raise {setting(budget)}" if budget else "")
            + f", or anneal per optimizer step ({setting('anneal_per_step')})")
    raise UsageError(f"phase 1 has {n} {unit} but {tau} is {tau_max}: each temperature needs at "
                     f"least one of them; lower {tau} to <= {n}")
