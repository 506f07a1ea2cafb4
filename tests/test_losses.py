"""Loss values against numbers computed by hand."""

import math

import pytest
import torch

from common.losses import annealing_loss, hinton_kd_loss, task_loss

S = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
T = torch.tensor([[2.0, 2.0], [2.0, 2.0]])


def test_annealing_loss_mean_reduction():
    # target = 0.5 * T = 1; differences 0, 1, 2, 3 -> squares 0, 1, 4, 9 -> mean 14 / 4
    assert annealing_loss(S, T, 0.5).item() == pytest.approx(3.5)


def test_annealing_loss_paper_sum_reduction():
    # per example: 0 + 1 = 1 and 4 + 9 = 13 -> mean over the batch 7
    assert annealing_loss(S, T, 0.5, reduction="sum").item() == pytest.approx(7.0)


def test_annealing_loss_phi_one_is_plain_mse():
    # differences -1, 0, 1, 2 -> (1 + 0 + 1 + 4) / 4
    assert annealing_loss(S, T, 1.0).item() == pytest.approx(1.5)


def test_annealing_loss_gives_no_gradient_to_the_teacher():
    t = T.clone().requires_grad_(True)
    s = S.clone().requires_grad_(True)
    annealing_loss(s, t, 0.5).backward()
    assert t.grad is None and s.grad is not None


def test_cross_entropy_phase_two():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    labels = torch.tensor([0, 0])
    # -log(1/2) and -log(3/4)
    assert task_loss(logits, labels).item() == pytest.approx((math.log(2) - math.log(0.75)) / 2)


def test_regression_phase_two_is_not_broadcast():
    logits = torch.tensor([[1.0], [2.0]])  # (B, 1) head
    labels = torch.tensor([0.0, 4.0])
    # (1 - 0)^2 and (2 - 4)^2 -> mean 2.5 (the BxB broadcast of the original would give 4.5)
    assert task_loss(logits, labels).item() == pytest.approx(2.5)


def test_hinton_kd_tau_one():
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])  # teacher softmax (3/4, 1/4)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    ce = math.log(2.0)
    got = hinton_kd_loss(s, t, torch.tensor([0]), alpha=0.7, temperature=1.0).item()
    assert got == pytest.approx(0.7 * kl + 0.3 * ce)


def test_hinton_kd_tau_two_scales_by_tau_squared():
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])
    p = math.sqrt(3) / (math.sqrt(3) + 1)  # softmax(log(3)/2, 0)[0]
    kl = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    got = hinton_kd_loss(s, t, torch.tensor([1]), alpha=0.5, temperature=2.0).item()
    assert got == pytest.approx(0.5 * 4 * kl + 0.5 * math.log(2.0))


def test_hinton_kd_alpha_zero_is_cross_entropy():
    s = torch.tensor([[1.0, -1.0, 0.5]])
    t = torch.tensor([[0.0, 3.0, 1.0]])
    y = torch.tensor([2])
    assert hinton_kd_loss(s, t, y, 0.0, 4.0).item() == pytest.approx(task_loss(s, y).item())
