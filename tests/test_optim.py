"""common/training/optim.py: the fused AdamW takes the same steps as torch's default AdamW."""

from __future__ import annotations

import torch

from annealing_kd.common.training.optim import adamw


def test_fused_adamw_matches_the_reference():
    torch.manual_seed(0)
    a = torch.nn.Linear(5, 3)
    b = torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    start = a.weight.detach().clone()
    groups = [{"params": [a.weight], "weight_decay": 0.1}, {"params": [a.bias], "weight_decay": 0.0}]
    fused = adamw(groups, lr=1e-2, eps=1e-8)
    ref = torch.optim.AdamW([{"params": [b.weight], "weight_decay": 0.1},
                             {"params": [b.bias], "weight_decay": 0.0}], lr=1e-2, eps=1e-8)
    assert fused.defaults["fused"] is True and not ref.defaults["fused"]
    x = torch.randn(8, 5)
    for _ in range(5):
        for model, opt in ((a, fused), (b, ref)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    assert torch.allclose(a.weight, b.weight, atol=1e-6) and torch.allclose(a.bias, b.bias, atol=1e-6)
    assert (a.weight - start).abs().max() > 1e-3  # the steps did move the weights


def test_unsupported_devices_fall_back():
    p = torch.nn.Parameter(torch.zeros(3))
    assert adamw([{"params": [p]}], lr=0.1).defaults["fused"] is True
    meta = torch.nn.Parameter(torch.zeros(3, device="meta"))
    assert not adamw([{"params": [meta]}], lr=0.1).defaults["fused"]
