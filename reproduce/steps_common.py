"""Shared pieces of the step-for-step comparisons (``against_original.py --steps``).

Both codes get the same batches (:class:`FixedBatches`: the k-th pass over it yields epoch k's
list, whoever iterates) and are recorded from outside their files (:class:`StepRecorder`: the
value of every ``loss.backward()`` and the learning rate of every optimizer step). The functions
at the end compare two such records and two sets of weights.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

TOLERANCE = 1e-5


class FixedBatches:
    """Per-epoch batch lists built once and handed to both codes. The k-th iteration over this
    object yields ``epochs[k]`` (a phase's epochs follow the previous phase's); ``set_epoch`` (our
    loop calls it) is recorded, not obeyed. ``len`` is the batches of one epoch."""

    def __init__(self, epochs: Sequence[Sequence[Any]]) -> None:
        if not epochs or len({len(e) for e in epochs}) != 1:
            raise ValueError("every epoch needs the same number of batches")
        self.epochs, self.passes, self.set_epochs = list(epochs), 0, []

    def __len__(self) -> int:
        return len(self.epochs[0])

    def set_epoch(self, epoch: int) -> None:
        self.set_epochs.append(epoch)

    def __iter__(self) -> Iterator[Any]:
        """A pass counts from its first batch (an iterator made and never read is no pass:
        tqdm's asyncio flavour makes one)."""
        if self.passes >= len(self.epochs):
            raise RuntimeError(f"only {len(self.epochs)} epochs of batches were built")
        self.passes += 1
        yield from self.epochs[self.passes - 1]


class StepRecorder:
    """Records, while active, the value of every ``Tensor.backward()`` on a scalar (the loss each
    code backpropagates) and the learning rate of every optimizer step (torch's global
    optimizer-step hook). Nothing inside either code is edited."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.lrs: list[float] = []

    @contextlib.contextmanager
    def active(self):
        backward = torch.Tensor.backward

        def recorded(tensor, *args, **kwargs):
            if tensor.numel() == 1:
                self.losses.append(float(tensor.detach()))
            return backward(tensor, *args, **kwargs)

        def before_step(optimizer, args, kwargs):
            self.lrs.append(float(optimizer.param_groups[0]["lr"]))

        handle = register_optimizer_step_pre_hook(before_step)
        torch.Tensor.backward = recorded
        try:
            yield self
        finally:
            torch.Tensor.backward = backward
            handle.remove()

    def take(self) -> dict[str, list[float]]:
        """The record so far (then emptied): losses and learning rates, one per step."""
        out = {"losses": self.losses, "lrs": self.lrs}
        self.losses, self.lrs = [], []
        return out


def state_of(model: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a model's state dict (or of a state dict)."""
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    return {k.removeprefix("module."): v.detach().cpu().clone() for k, v in state.items()}


def weight_diff(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Largest absolute difference over all tensors of two state dicts (floating ones; integer
    buffers such as BatchNorm's step counter must be equal), the tensor where it is, the largest
    per-tensor ratio max|a - b| / max|a|, and whether all are bit-identical."""
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b))
        raise ValueError(f"the state dicts differ in their tensors, e.g. {only[0]}")
    worst, where, rel, identical = 0.0, "", 0.0, True
    for k in a:
        x, y = a[k], b[k]
        if x.shape != y.shape:
            raise ValueError(f"{k}: shape {tuple(x.shape)} vs {tuple(y.shape)}")
        if not x.is_floating_point():
            if not torch.equal(x, y):
                return {"max_abs": math.inf, "tensor": k, "max_rel": math.inf, "bit_identical": False}
            continue
        identical = identical and torch.equal(x, y)
        if not x.numel():
            continue
        d = (x.double() - y.double()).abs().max().item()
        rel = max(rel, d / max(x.double().abs().max().item(), 1e-30))
        if d > worst:
            worst, where = d, k
    return {"max_abs": worst, "tensor": where, "max_rel": rel, "bit_identical": identical}


def loss_diff(ours: dict[str, list[float]], original: dict[str, list[float]]) -> dict[str, Any]:
    """Per-step comparison of two records: steps on each side, largest |loss difference|, how
    many steps are bit-identical (and the first that is not), and whether every step's learning
    rate is the same."""
    a, b = ours["losses"], original["losses"]
    n = min(len(a), len(b))
    diffs = [abs(x - y) for x, y in zip(a, b)]
    first = next((i for i, d in enumerate(diffs) if d != 0.0), None)
    return {"steps": [len(a), len(b)], "max_abs": max(diffs, default=0.0),
            "max_abs_step": (diffs.index(max(diffs)) + 1) if diffs else None,
            "identical_steps": sum(d == 0.0 for d in diffs),
            "first_different_step": None if first is None else first + 1,
            "same_lr": ours["lrs"][:n] == original["lrs"][:n] and len(ours["lrs"]) == len(original["lrs"]),
            "ours": a, "original": b, "lrs": ours["lrs"]}


def verdict(row: dict[str, Any], tol: float = TOLERANCE) -> dict[str, Any]:
    """Pass (per-step losses and final weights within ``tol``, same step count) and bit-identity."""
    steps = row["loss"]["steps"]
    ok = (steps[0] == steps[1] and steps[0] > 0 and row["loss"]["max_abs"] <= tol
          and row["weights"]["max_abs"] <= tol)
    bit = (row["loss"]["identical_steps"] == steps[0] == steps[1] and row["weights"]["bit_identical"])
    return {"pass": ok, "bit_identical": bit}
