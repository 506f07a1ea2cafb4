"""The annealing schedule of Annealing-KD.

Phase-1 unit i of n (epoch, or optimizer step with per-step annealing), 0-based:

    T_i    = tau_max - floor(i * tau_max / n)        (integer temperature, tau_max ... 1)
    Phi(T) = 1 - (T - 1) / tau_max                   (teacher-logit multiplier, 1/tau_max ... 1)

The n units are split into tau_max equal stages (as equal as integers allow); Phi is exactly 1
in the last stage and never exceeds it. Needs n >= tau_max so that every stage has a unit.
:class:`AnnealingSchedule` answers (T, Phi) by unit, per epoch or per optimizer step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from annealing_kd.common.errors import UsageError, setting

EPOCHS, STEPS = "epochs", "optimizer steps"


def check_temperature(tau_max: int) -> None:
    if tau_max < 1:
        raise UsageError(f"{setting('max_temperature')} must be at least 1, got {tau_max}")


def check_schedule(n: int, tau_max: int, unit: str = "epochs", budget: str | None = None) -> None:
    """Refuse schedules that cannot give every temperature a stage: ``n`` units (epochs, or
    optimizer steps with per-step annealing) of phase 1, whose epochs are the setting ``budget``."""
    check_temperature(tau_max)
    if n < 1:
        raise UsageError(f"phase 1 needs at least 1 of its {unit}, got {n}")
    if n >= tau_max:
        return
    if unit == "epochs":
        raise UsageError(
            f"{setting('max_temperature')} {tau_max} exceeds "
            f"{setting(budget) if budget else 'the phase-1 epochs'} {n}: each temperature needs "
            f"at least one epoch; lower {setting('max_temperature')} to <= {n}"
            + (f", raise {setting(budget)}" if budget else "")
            + f", or anneal per optimizer step ({setting('anneal_per_step')})")
    raise UsageError(f"phase 1 has {n} {unit} but {setting('max_temperature')} is {tau_max}: each "
                     f"temperature needs at least one of them; lower {setting('max_temperature')} "
                     f"to <= {n}")


def temperature(i: int, n: int, tau_max: int) -> int:
    """Integer temperature of phase-1 unit ``i`` of ``n``."""
    return tau_max - (i * tau_max) // n


def phi(temp: int, tau_max: int) -> float:
    """Multiplier of the teacher's logits at temperature ``temp``."""
    return 1.0 - (temp - 1) / tau_max


def annealing_schedule(n: int, tau_max: int, unit: str = EPOCHS) -> list[tuple[int, float]]:
    """(T, Phi) for each of the ``n`` phase-1 units."""
    return list(AnnealingSchedule(n, tau_max, unit))


@dataclass(frozen=True)
class AnnealingSchedule:
    """Phase 1's schedule over ``units`` epochs (or optimizer steps, with per-step annealing);
    refuses ``units < max_temperature`` (:func:`check_schedule`).

    ``schedule(i)`` is (T, Phi) of unit ``i`` (0-based), also ``.temperature(i)`` and ``.phi(i)``;
    a unit past the end answers the last one (Phi = 1). Per epoch, ``i`` is the epoch; per step,
    it is the number of optimizer steps done before the batch (the same for every micro-batch of
    a gradient-accumulation step)::

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
        t = self.temperature(i)
        return t, phi(t, self.max_temperature)

    def __len__(self) -> int:
        return self.units

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return (self(i) for i in range(self.units))
