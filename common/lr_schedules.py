"""Learning-rate multipliers as functions of (optimizer step, total steps of the phase).

The CIFAR recipe lives here; the GLUE warm-up and decay come from ``transformers.get_scheduler``.
"""

from __future__ import annotations

from collections.abc import Callable

LrFactor = Callable[[int, int], float]


def constant(step: int, total: int) -> float:
    return 1.0


def step_decay(step: int, total: int) -> float:
    """lr, lr/10 from 1/2 of the phase, lr/100 from 3/4 (the CIFAR recipe of the paper)."""
    if step >= 3 * total // 4:
        return 0.01
    if step >= total // 2:
        return 0.1
    return 1.0

