"""Guards that save a researcher's day: a teacher no better than chance is named before any
student learns from it, and batch-norm statistics can be recomputed before an evaluation."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UsageError, setting


def chance_margin(chance: float, n: int) -> float:
    """Two standard errors of an accuracy at ``chance`` over ``n`` examples."""
    return 2 * math.sqrt(chance * (1 - chance) / max(n, 1))


def chance_level(metrics: dict[str, float], num_classes: int | None, n: int,
                 majority: float | None = None) -> tuple[str, float, float, float] | None:
    """(metric, its value, chance level, margin) that :func:`at_chance` compares: an accuracy
    against the larger of 1/num_classes and ``majority`` (the most frequent class's share) +
    :func:`chance_margin`; else a Matthews correlation, or for regression a correlation, against
    0. None without such a metric."""
    if num_classes and "accuracy" in metrics:
        chance = max(1 / num_classes, majority or 0.0)
        return "accuracy", metrics["accuracy"], chance, chance_margin(chance, n)
    name = next((k for k in ("mcc", "pearson", "spearman", "corr") if k in metrics), None)
    return (name, metrics[name], 0.0, 0.0) if name else None


def at_chance(metrics: dict[str, float], num_classes: int | None, n: int,
              majority: float | None = None) -> str | None:
    """Why a teacher is no better than chance (:func:`chance_level`), or None."""
    level = chance_level(metrics, num_classes, n, majority)
    if level is None:
        return None
    name, value, chance, margin = level
    if name != "accuracy":
        return f"{name} {value:.3f} <= 0" if value <= 0 else None
    if value > chance + margin:
        return None
    what = f"1/{num_classes}" if chance == 1 / num_classes else "the most frequent class"
    return (f"accuracy {value:.3f} is not above chance ({what}: {chance:.3f}, + {margin:.3f} "
            f"for {n} examples)")


def majority_share(labels) -> float:
    """The share of the most frequent class among ``labels`` (integer class ids)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel())
    return float(counts.max() / counts.sum()) if counts.sum() else 0.0


def check_teacher(metrics: dict[str, float], num_classes: int | None, n: int, split: str,
                  advice: str, majority: float | None = None, *, fail: bool = False,
                  say: bool = True) -> dict[str, Any]:
    """The chance-teacher guard on the teacher's ``split`` metrics: a teacher at chance is one
    warning line on stderr (``say``: this process writes it), or with ``fail`` a
    :class:`UsageError`. Returns its record (results.json, model card, trackers): the metric,
    its value, the chance level and margin, whether it was at chance and warned."""
    why = at_chance(metrics, num_classes, n, majority)
    name, value, chance, margin = chance_level(metrics, num_classes, n, majority) or (
        None, None, None, None)
    if why:
        message = (f"the teacher's {split} {why}: the student would learn from a useless "
                   f"teacher; {advice}")
        if fail:
            raise UsageError(f"{message} (or drop {setting('fail_on_chance_teacher')})")
        if say:
            print(f"warning: {message}", file=sys.stderr, flush=True)
    return {"split": split, "examples": n, "metric": name, "value": value, "chance": chance,
            "margin": margin, "at_chance": why is not None, "warned": bool(why)}


def check_teacher_logits(logits, labels, split: str = "dev", *, fail: bool = False,
                         advice: str = "check its weights and how it was trained"
                         ) -> dict[str, Any]:
    """:func:`check_teacher` on a teacher's ``logits`` over a labelled ``split``: its accuracy
    against the class ids ``labels``, or with one output column (regression) its Pearson
    correlation with them."""
    logits, labels = torch.as_tensor(logits).float(), torch.as_tensor(labels)
    if logits.dim() == 1 or logits.shape[-1] == 1:
        pearson = torch.corrcoef(torch.stack([logits.reshape(-1), labels.float().reshape(-1)]))
        return check_teacher({"pearson": pearson[0, 1].item()}, None, len(labels), split, advice,
                             fail=fail)
    accuracy = (logits.argmax(-1) == labels).float().mean().item()
    return check_teacher({"accuracy": accuracy}, logits.shape[-1], len(labels), split, advice,
                         majority_share(labels), fail=fail)


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def recalibrate_bn(model: nn.Module, inputs: Iterable[torch.Tensor]) -> bool:
    """Recompute the batch-norm running statistics of ``model`` over ``inputs`` (training
    batches, ``swa_utils.update_bn``: no gradient, mode kept); False without batch norm."""
    if not has_batch_norm(model):
        return False
    torch.optim.swa_utils.update_bn(inputs, model)
    return True
