"""Guards that save a researcher's day: a teacher no better than chance is named before any
student learns from it, and batch-norm statistics can be recomputed before an evaluation."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn


def chance_margin(chance: float, n: int) -> float:
    """Two standard errors of an accuracy at ``chance`` over ``n`` examples."""
    return 2 * math.sqrt(chance * (1 - chance) / max(n, 1))


def at_chance(metrics: dict[str, float], num_classes: int | None, n: int,
              majority: float | None = None) -> str | None:
    """Why a teacher is no better than chance, or None: an accuracy within :func:`chance_margin`
    of the larger of 1/num_classes and ``majority`` (the most frequent class's share); else a
    Matthews correlation, or for regression a correlation, <= 0."""
    if num_classes and "accuracy" in metrics:
        chance, value = max(1 / num_classes, majority or 0.0), metrics["accuracy"]
        what = f"1/{num_classes}" if chance == 1 / num_classes else "the most frequent class"
        margin = chance_margin(chance, n)
        if value > chance + margin:
            return None
        return (f"accuracy {value:.3f} is not above chance ({what}: {chance:.3f}, + {margin:.3f} "
                f"for {n} examples)")
    name = next((k for k in ("mcc", "pearson", "spearman", "corr") if k in metrics), None)
    return f"{name} {metrics[name]:.3f} <= 0" if name and metrics[name] <= 0 else None


def majority_share(labels) -> float:
    """The share of the most frequent class among ``labels`` (integer class ids)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel())
    return float(counts.max() / counts.sum()) if counts.sum() else 0.0


def warn_if_at_chance(metrics: dict[str, float], num_classes: int | None, n: int, split: str,
                      advice: str, majority: float | None = None) -> bool:
    """One warning line on stderr when the teacher's ``split`` metrics are at chance."""
    why = at_chance(metrics, num_classes, n, majority)
    if why:
        print(f"warning: the teacher's {split} {why}: the student would learn from a useless "
              f"teacher; {advice}", file=sys.stderr, flush=True)
    return why is not None


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def recalibrate_bn(model: nn.Module, inputs: Iterable[torch.Tensor]) -> bool:
    """Recompute the batch-norm running statistics of ``model`` over ``inputs`` (training
    batches, ``swa_utils.update_bn``: no gradient, mode kept); False without batch norm."""
    if not has_batch_norm(model):
        return False
    torch.optim.swa_utils.update_bn(inputs, model)
    return True
