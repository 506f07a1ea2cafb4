"""Learning-rate schedules: every phase builds its scheduler through :meth:`LrSchedule.build`.

    constant   the base learning rate throughout
    multistep  x0.1 at each milestone ``int(frac * total)`` of the phase's optimizer steps;
               (0.5, 0.75) is the paper's CIFAR recipe. After k milestones the rate is
               ``lr * 10.0 ** -k`` (LambdaLR): the original's double ``0.1 * 0.01``, where
               MultiStepLR's repeated x0.1 ends 1 ulp away (0.0010000000000000002)
    hf         ``transformers.get_scheduler(name)`` with ``warmup_steps`` (the GLUE recipe)

All of them count optimizer steps and restart with each phase.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

STEP_DECAY = (0.5, 0.75)  # the paper's CIFAR recipe


@dataclass(frozen=True)
class LrSchedule:
    kind: str = "constant"  # constant | multistep | hf
    milestones: tuple[float, ...] = ()  # multistep: fractions of the phase's optimizer steps
    name: str = "linear"  # hf: a transformers.get_scheduler name
    warmup_steps: int = 0  # hf

    def build(self, optimizer: Any, total: int) -> Any:
        """The scheduler of a phase of ``total`` optimizer steps (stepped once per step)."""
        from torch.optim.lr_scheduler import LambdaLR

        if self.kind in ("constant", "multistep"):  # constant: no milestone, 10.0 ** -0 == 1.0
            steps = milestone_steps(self.milestones if self.kind == "multistep" else (), total)
            return LambdaLR(optimizer, lambda step: 10.0 ** -bisect_right(steps, step))
        if self.kind == "hf":
            from transformers import get_scheduler

            return get_scheduler(self.name, optimizer, num_warmup_steps=self.warmup_steps,
                                 num_training_steps=total)
        raise ValueError(f"unknown learning-rate schedule {self.kind!r}")


def milestone_steps(fractions: tuple[float, ...], total: int) -> list[int]:
    """The optimizer steps at which a multistep schedule decays: ``int(frac * total)``."""
    return [int(f * total) for f in fractions]
