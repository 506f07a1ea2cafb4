"""The annealing schedule of Annealing-KD.

Phase-1 unit i of n (epoch, or optimizer step with per-step annealing), 0-based:

    T_i    = tau_max - floor(i * tau_max / n)        (integer temperature, tau_max ... 1)
    Phi(T) = 1 - (T - 1) / tau_max                   (teacher-logit multiplier, 1/tau_max ... 1)

The n units are split into tau_max equal stages (as equal as integers allow); Phi is exactly 1
in the last stage and never exceeds it. Needs n >= tau_max so that every stage has a unit.
"""

from __future__ import annotations

from common.errors import UsageError, setting


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


def annealing_schedule(n: int, tau_max: int, unit: str = "epochs") -> list[tuple[int, float]]:
    """(T, Phi) for each of the ``n`` phase-1 units."""
    check_schedule(n, tau_max, unit)
    return [(t, phi(t, tau_max)) for t in (temperature(i, n, tau_max) for i in range(n))]
