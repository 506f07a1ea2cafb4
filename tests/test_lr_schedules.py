"""One learning-rate mechanism: milestones at int(frac * total) optimizer steps give exactly the
CIFAR step decay every earlier version applied per step (lr, lr/10 from step total//2, lr/100
from step 3*total//4), for every phase length, with the original's doubles (0.1 * 0.1, 0.1 * 0.01)."""

from __future__ import annotations

import pytest
import torch

from annealing_kd.common.training.lr_schedules import STEP_DECAY, LrSchedule, milestone_steps


def earlier_step_decay(step: int, total: int) -> float:
    """The multiplier of common/training/lr_schedules.py before the milestone factory (LambdaLR on this)."""
    if step >= 3 * total // 4:
        return 0.01
    if step >= total // 2:
        return 0.1
    return 1.0


def per_step_lrs(schedule: LrSchedule, total: int, lr: float = 0.1) -> list[float]:
    """The learning rate of each optimizer step of a phase of ``total`` steps."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = schedule.build(opt, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_default_milestones_are_the_earlier_boundaries_for_every_total():
    for total in range(1, 20001):
        assert milestone_steps(STEP_DECAY, total) == [total // 2, 3 * total // 4], total


@pytest.mark.parametrize("total", [*range(1, 41), 97, 390, 3910])
def test_per_step_rates_equal_the_earlier_step_decay(total):
    got = per_step_lrs(LrSchedule("multistep", STEP_DECAY), total)
    expected = [0.1 * earlier_step_decay(s, total) for s in range(total)]
    assert got == pytest.approx(expected, rel=1e-12)


def test_decayed_rates_are_the_originals_doubles_to_the_last_bit():
    """The original sets lr = 0.1 * 0.1, then 0.1 * 0.01 (adjust_learning_rate); repeated x0.1
    (MultiStepLR) gives 0.0010000000000000002 instead of 0.001."""
    lrs = per_step_lrs(LrSchedule("multistep", STEP_DECAY), 8)
    assert lrs == [0.1] * 4 + [0.1 * 0.1] * 2 + [0.1 * 0.01] * 2
    assert lrs[-1] == 0.001 and lrs[-1] != 0.1 * 0.1 * 0.1


def test_none_is_constant_and_other_milestones():
    assert per_step_lrs(LrSchedule("multistep", ()), 7) == [0.1] * 7
    assert per_step_lrs(LrSchedule("constant"), 3) == [0.1] * 3
    # 0.3 of 10 steps: lr/10 from step 3
    assert per_step_lrs(LrSchedule("multistep", (0.3,)), 10) == pytest.approx([0.1] * 3 + [0.01] * 7)


def test_hf_schedules_through_the_same_factory():
    lrs = per_step_lrs(LrSchedule("hf", name="linear", warmup_steps=2), 6, lr=1.0)
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 0.75, 0.5, 0.25])
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        LrSchedule("cyclic").build(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1), 3)
