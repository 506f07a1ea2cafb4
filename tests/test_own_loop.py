"""The own-loop API (annealing_kd.common.api): the schedule object, the losses and the frozen-teacher helper
against hand-computed values, and the runnable example of docs/own_loop.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import annealing_kd.common.api as api
from annealing_kd.common.errors import UsageError
from annealing_kd.common.training.lr_schedules import LrSchedule
from annealing_kd.common.training.trainer import Phase, Trainer

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_public_names():
    ns: dict = {}
    exec("from annealing_kd.common.api import *", ns)
    assert sorted(k for k in ns if not k.startswith("__")) == sorted(api.__all__)
    # the same objects as the CLIs use: no second implementation
    import annealing_kd.common.methods.annealing
    import annealing_kd.common.methods.losses
    assert api.annealing_loss is annealing_kd.common.methods.annealing.annealing_loss
    assert api.AnnealingSchedule is annealing_kd.common.methods.annealing.AnnealingSchedule


# ---- the schedule ---------------------------------------------------------------------------
def test_schedule_per_epoch_hand_computed():
    s = api.AnnealingSchedule.per_epoch(epochs=4, max_temperature=2)
    # T_i = 2 - floor(2 i / 4): 2, 2, 1, 1; Phi = 1 - (T - 1) / 2
    assert list(s) == [(2, 0.5), (2, 0.5), (1, 1.0), (1, 1.0)]
    assert [s.temperature(i) for i in range(4)] == [2, 2, 1, 1] and len(s) == 4
    assert s(7) == (1, 1.0)  # past the end: the last unit


def test_schedule_per_step_hand_computed():
    s = api.AnnealingSchedule.per_step(total_steps=10, max_temperature=4)
    # T_i = 4 - floor(4 i / 10) for i = 0..9
    assert [s.temperature(i) for i in range(10)] == [4, 4, 4, 3, 3, 2, 2, 2, 1, 1]
    assert [s.phi(i) for i in range(10)] == [0.25] * 3 + [0.5] * 2 + [0.75] * 3 + [1.0] * 2
    with pytest.raises(ValueError, match="count from 0"):
        s.phi(-1)


def test_schedule_refuses_too_few_units():
    with pytest.raises(UsageError, match="exceeds the phase-1 epochs 2.*per optimizer step"):
        api.AnnealingSchedule.per_epoch(2, 3)
    with pytest.raises(UsageError, match="phase 1 has 3 optimizer steps but max_temperature is 4"):
        api.AnnealingSchedule.per_step(3, 4)


@pytest.mark.parametrize("per_step", [False, True])
def test_schedule_is_the_trainers(per_step):
    """The CLIs' loop and the schedule object answer the same (T, Phi) at every step."""
    phase = Phase("phase1", "anneal", epochs=5, make_optimizer=lambda m: None,
                  lr_schedule=LrSchedule(), max_temperature=3, anneal_per_step=per_step)
    total, per_epoch = 15, 3
    s = (api.AnnealingSchedule.per_step(total, 3) if per_step
         else api.AnnealingSchedule.per_epoch(5, 3))
    for step in range(total):
        epoch = step // per_epoch
        assert Trainer._anneal(None, phase, epoch, step, total) == s(step if per_step else epoch)


# ---- the losses -----------------------------------------------------------------------------
def test_losses_hand_computed():
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, -2.0]])
    # target Phi * z_t = (1, -1): mean of squares 1, per-example sum 2
    assert api.annealing_loss(s, t, 0.5).item() == pytest.approx(1.0)
    assert api.annealing_loss(s, t, 0.5, "sum").item() == pytest.approx(2.0)
    assert api.task_loss(s, torch.tensor([1])).item() == pytest.approx(0.693147, abs=1e-6)  # ln 2
    assert api.task_loss(torch.tensor([[1.0]]), torch.tensor([3.0])).item() == pytest.approx(4.0)
    # equal logits: KL 0, so alpha = 0.5 leaves half the cross-entropy
    kd = api.hinton_kd_loss(s, torch.zeros(1, 2), torch.tensor([0]), alpha=0.5, temperature=4.0)
    assert kd.item() == pytest.approx(0.5 * 0.693147, abs=1e-6)
    assert api.KD_REDUCTIONS == ("batchmean", "elementwise-mean")


# ---- the frozen teacher ---------------------------------------------------------------------
def linear_teacher() -> nn.Module:
    m = nn.Linear(2, 2)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        m.bias.copy_(torch.tensor([0.0, 1.0]))
    return m


def test_teacher_logits_frozen_no_autograd():
    teacher = nn.Sequential(linear_teacher(), nn.Dropout(0.9)).train()
    x = torch.tensor([[1.0, 1.0], [2.0, -1.0]])
    expected = torch.tensor([[1.0, 3.0], [2.0, -1.0]])  # W x + b by hand, dropout off in eval
    for batch in (x, (x, torch.tensor([0, 1])), [x]):
        out = api.teacher_logits(teacher, batch)
        assert torch.equal(out, expected) and out.dtype == torch.float32
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert not out.requires_grad and not out.is_inference()
    student = nn.Linear(2, 2)
    api.annealing_loss(student(x), out, 0.5).backward()  # usable as a target
    assert student.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


class DictModel(nn.Module):
    """A model taking keyword inputs and returning an output with ``.logits`` (as HF models)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = linear_teacher()

    def forward(self, input_ids):
        return type("Out", (), {"logits": self.lin(input_ids)})()


def test_teacher_logits_dict_batch_forward_and_autocast():
    x = torch.tensor([[1.0, 1.0]])
    teacher = DictModel()
    out = api.teacher_logits(teacher, {"input_ids": x, "labels": torch.tensor([1])})
    assert torch.equal(out, torch.tensor([[1.0, 3.0]]))
    out = api.teacher_logits(teacher, {"feats": x}, forward=lambda m, b: m(input_ids=2 * b["feats"]))
    assert torch.equal(out, torch.tensor([[2.0, 5.0]]))
    x = torch.tensor([[1.0 / 3.0, 0.0]])
    low = api.teacher_logits(linear_teacher(), x, autocast=torch.bfloat16)
    assert low.dtype == torch.float32  # computed in bf16, returned as float32
    assert low[0, 0].item() == torch.tensor(1.0 / 3.0).bfloat16().float().item() != 1.0 / 3.0


def test_all_teacher_logits_in_order():
    torch.manual_seed(0)
    x = torch.randn(10, 2)
    teacher = linear_teacher()
    loader = DataLoader(TensorDataset(x, torch.zeros(10)), batch_size=4)
    out = api.all_teacher_logits(teacher, loader)
    with torch.no_grad():
        assert torch.allclose(out, teacher(x)) and out.shape == (10, 2)
    with pytest.raises(ValueError, match="no batch"):
        api.all_teacher_logits(teacher, [])


# ---- the documented example -----------------------------------------------------------------
def test_docs_own_loop_example_runs():
    """The code block of docs/own_loop.md, run as it is: the student learns from the teacher."""
    (code,) = python_blocks(ROOT / "docs" / "own_loop.md")
    assert len(code.splitlines()) <= 60
    ns: dict = {"__name__": "own_loop_example"}
    exec(compile(code, "docs/own_loop.md", "exec"), ns)
    assert ns["teacher_acc"] > 0.8
    assert ns["phase1_acc"] > 0.7 and ns["phase2_acc"] > 0.7
    assert [ns["schedule"].temperature(e) for e in range(6)] == [3, 3, 2, 2, 1, 1]


def test_readme_own_loop_snippet_uses_the_public_names():
    """The README's own-loop lines compile and import only names of ``__all__``."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Your own PyTorch loop\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    compile(code, "README.md", "exec")
    (names,) = re.findall(r"from annealing_kd.common.api import (.*)", code)
    assert {n.strip() for n in names.split(",")} <= set(api.__all__)
