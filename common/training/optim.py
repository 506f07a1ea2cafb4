"""Optimizers shared by the CLIs."""

from __future__ import annotations

import torch


def adamw(param_groups: list[dict], lr: float, eps: float = 1e-8) -> torch.optim.AdamW:
    """torch's AdamW, fused (one kernel, as ``transformers.Trainer`` by default) when every
    parameter is a float tensor on one CPU or CUDA device. Same update rule either way."""
    params = [p for g in param_groups for p in g["params"]]
    fused = (bool(params) and len({p.device for p in params}) == 1
             and params[0].device.type in ("cpu", "cuda")
             and all(p.is_floating_point() for p in params))
    return torch.optim.AdamW(param_groups, lr=lr, eps=eps, fused=True if fused else None)
