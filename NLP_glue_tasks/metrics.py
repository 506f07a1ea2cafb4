"""GLUE dev metrics with scikit-learn and scipy."""

from __future__ import annotations

import numpy as np

from NLP_glue_tasks.tasks import Task


def compute_metrics(task: Task, logits: np.ndarray, labels: np.ndarray, suffix: str = "") -> dict[str, float]:
    """The task's metrics (``Task.metrics``) from logits (N, C) and labels (N,)."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if task.is_regression:
        preds = logits.reshape(-1)
        values = {"pearson": float(pearsonr(preds, labels)[0]),
                  "spearman": float(spearmanr(preds, labels)[0])}
    else:
        preds = logits.argmax(-1)
        labels = labels.astype(np.int64)
        values = {"accuracy": float(accuracy_score(labels, preds))}
        if "f1" in task.metrics:
            values["f1"] = float(f1_score(labels, preds))
        if "macro_f1" in task.metrics:
            values["macro_f1"] = float(f1_score(labels, preds, average="macro",
                                                labels=list(range(task.num_labels))))
        if "mcc" in task.metrics:
            values["mcc"] = float(matthews_corrcoef(labels, preds))
    return {f"{k}{suffix}": values[k] for k in task.metrics}


def label_order_hint(task: Task, logits: np.ndarray, labels: np.ndarray, margin: float = 0.2) -> str | None:
    """A warning when the teacher's dev accuracy is far better under another label order: the
    sign of a teacher fine-tuned with other label ids (its config cannot always tell)."""
    from itertools import permutations

    if task.is_regression or task.num_labels > 5:  # 5! orders at most
        return None
    preds, labels = np.asarray(logits).argmax(-1), np.asarray(labels).astype(np.int64)
    acc = {p: float((np.asarray(p)[preds] == labels).mean()) for p in permutations(range(task.num_labels))}
    best = max(acc, key=acc.get)
    ident = tuple(range(task.num_labels))
    if acc[best] - acc[ident] < margin:
        return None
    names = [task.labels[i] for i in best]
    return (f"warning: the teacher's dev accuracy is {acc[ident]:.3f} with the label order "
            f"{list(task.labels)} but {acc[best]:.3f} if its outputs meant {names}: was it "
            "fine-tuned with another label order (e.g. an old run_glue.py for MNLI)?")
