"""GLUE dev metrics with scikit-learn and scipy."""

from __future__ import annotations

from functools import partial
from itertools import permutations

import numpy as np
from scipy.stats import binomtest, pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from .tasks import Task


def compute_metrics(task: Task, logits: np.ndarray, labels: np.ndarray,
                    suffix: str = "") -> dict[str, float]:
    """The task's metrics (``Task.metrics``) from logits (N, C) and labels (N,)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if task.is_regression:
        preds = logits.reshape(-1)
        values = {"pearson": float(pearsonr(preds, labels)[0]),
                  "spearman": float(spearmanr(preds, labels)[0])}
        values["corr"] = (values["pearson"] + values["spearman"]) / 2  # the original's selection
    else:
        preds, labels = logits.argmax(-1), labels.astype(np.int64)
        scores = {"accuracy": accuracy_score, "f1": f1_score, "mcc": matthews_corrcoef,
                  "macro_f1": partial(f1_score, average="macro",
                                      labels=list(range(task.num_labels)))}
        values = {k: float(scores[k](labels, preds)) for k in task.metrics}
    return {f"{k}{suffix}": values[k] for k in task.metrics}


def better_label_order(task: Task, logits: np.ndarray, labels: np.ndarray, margin: float = 0.2,
                       p_value: float = 0.01) -> tuple[list[str], float, float] | None:
    """Label names that the teacher's outputs mean if that reading is much better than ours:
    dev accuracy higher by ``margin`` and significantly so (a one-sided binomial test on the
    examples that exactly one of the two readings gets right). ``None`` when ours is fine.
    Returns (names of outputs 0..C-1, accuracy in our order, accuracy in that order)."""
    if task.is_regression or task.num_labels > 5:  # 5! orders at most
        return None
    preds, labels = np.asarray(logits).argmax(-1), np.asarray(labels).astype(np.int64)
    right = {p: np.asarray(p)[preds] == labels for p in permutations(range(task.num_labels))}
    ident = tuple(range(task.num_labels))
    best = max(right, key=lambda p: right[p].mean())
    gain = right[best].mean() - right[ident].mean()
    wins, losses = (int((right[a] & ~right[b]).sum()) for a, b in ((best, ident), (ident, best)))
    if gain < margin or binomtest(wins, wins + losses, 0.5, "greater").pvalue >= p_value:
        return None
    return [task.labels[i] for i in best], float(right[ident].mean()), float(right[best].mean())
