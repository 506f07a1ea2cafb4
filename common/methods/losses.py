"""Losses besides the annealing one (methods/annealing.py): hard labels, and Hinton KD."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, or MSE for a one-output regression head (both sides shaped (B,))."""
    if logits.dim() == 2 and logits.size(1) == 1:
        return F.mse_loss(logits.squeeze(1), labels.to(logits.dtype).view(-1))
    return F.cross_entropy(logits, labels.long())


KD_REDUCTIONS = ("batchmean", "elementwise-mean")


def hinton_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                   labels: torch.Tensor, alpha: float, temperature: float,
                   reduction: str = "batchmean") -> torch.Tensor:
    """alpha * tau^2 * KL(softmax(z_t/tau) || softmax(z_s/tau)) + (1 - alpha) * task loss.

    KL ``reduction``: ``batchmean`` sums over classes, mean over the batch (the true KL);
    ``elementwise-mean`` is the mean over batch x classes (``nn.KLDivLoss()``'s default, the TAKD
    code behind the paper's KD/TAKD rows: C times smaller for C classes). A regression head (one
    output) has no distributions: the soft term is MSE(z_s, z_t) (both reductions agree).
    """
    if reduction not in KD_REDUCTIONS:
        raise ValueError(f"unknown KD reduction {reduction!r}; use one of {', '.join(KD_REDUCTIONS)}")
    teacher_logits = teacher_logits.detach().to(student_logits.dtype)
    if student_logits.dim() == 2 and student_logits.size(1) == 1:
        soft = F.mse_loss(student_logits, teacher_logits)
    else:
        tau = temperature
        soft = F.kl_div(F.log_softmax(student_logits / tau, dim=-1),
                        F.log_softmax(teacher_logits / tau, dim=-1),
                        reduction="sum", log_target=True) * (tau * tau)
        # divided here: torch announces that kl_div's reduction="mean" will become batchmean
        soft = soft / (student_logits.size(0) if reduction == "batchmean" else student_logits.numel())
    return alpha * soft + (1.0 - alpha) * task_loss(student_logits, labels)
