"""Loss values against numbers computed by hand."""

import math

import pytest
import torch

from annealing_kd.common.methods.annealing import annealing_loss
from annealing_kd.common.methods.losses import hinton_kd_loss, task_loss

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


def test_hinton_kd_reductions_by_hand():
    """batchmean: KL summed over classes, mean over the batch; elementwise-mean (nn.KLDivLoss()
    default, the TAKD code of the paper's KD rows): mean over batch x classes, C times smaller."""
    s = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    t = torch.tensor([[math.log(4.0), 0.0, 0.0], [0.0, 0.0, 0.0]])  # teacher (2/3, 1/6, 1/6), uniform
    kl_first = (2 / 3) * math.log(2.0) + 2 * (1 / 6) * math.log(0.5)  # vs uniform student
    kl_sum = kl_first + 0.0
    y = torch.tensor([0, 1])
    ce = math.log(3.0)  # uniform student
    got_bm = hinton_kd_loss(s, t, y, alpha=0.5, temperature=1.0, reduction="batchmean").item()
    got_em = hinton_kd_loss(s, t, y, alpha=0.5, temperature=1.0, reduction="elementwise-mean").item()
    assert got_bm == pytest.approx(0.5 * kl_sum / 2 + 0.5 * ce)
    assert got_em == pytest.approx(0.5 * kl_sum / 6 + 0.5 * ce)


def test_hinton_kd_paper_era_form_tau_five():
    """(1 - l) CE + l T^2 KLDivLoss()(log_softmax(z_s/T), softmax(z_t/T)), T=5, l=0.5, by hand."""
    s = torch.tensor([[5.0, 0.0]])
    t = torch.tensor([[0.0, 5.0]])
    q = 1 / (1 + math.e)  # student softmax(1, 0) at T=5: (1-q, q); teacher: (q, 1-q)
    kl = q * math.log(q / (1 - q)) + (1 - q) * math.log((1 - q) / q)
    soft = 25 * kl / 2  # mean over 1 x 2 elements
    ce = math.log(1 + math.exp(-5.0))  # label 0, logits (5, 0)
    got = hinton_kd_loss(s, t, torch.tensor([0]), 0.5, 5.0, "elementwise-mean").item()
    assert got == pytest.approx(0.5 * soft + 0.5 * ce)
    assert hinton_kd_loss(s, t, torch.tensor([0]), 0.5, 5.0).item() == pytest.approx(
        0.5 * 25 * kl + 0.5 * ce)  # batchmean, the default


def test_hinton_kd_unknown_reduction():
    with pytest.raises(ValueError, match="elementwise-mean"):
        hinton_kd_loss(S, T, torch.tensor([0, 1]), 0.5, 2.0, "sum")
