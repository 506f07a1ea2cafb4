"""Published Annealing-KD figures (percent), as restated by the authors in arXiv 2212.05998.

Row names are the paper's; the harness names its rows the same way.
"""

from __future__ import annotations

CIFAR_ROWS = ["teacher", "assistant", "student alone", "KD", "TAKD", "Annealing-KD"]
GLUE_ROWS = ["teacher", "fine-tune", "KD", "TAKD", "Annealing-KD"]
GLUE_TASKS = ["CoLA", "RTE", "MRPC", "STS-B", "SST-2", "QNLI", "QQP", "MNLI"]

CIFAR = {
    "CIFAR-10": dict(zip(CIFAR_ROWS, [93.80, 92.39, 88.44, 88.45, 88.47, 89.44], strict=True)),
    "CIFAR-100": dict(zip(CIFAR_ROWS, [71.92, 67.60, 61.37, 61.41, 61.82, 63.10], strict=True)),
}


def _glue(rows: list[list[float]]) -> dict[str, dict[str, float]]:
    """{task or 'score': {row: value}} from rows of 8 task values followed by the score."""
    table: dict[str, dict[str, float]] = {}
    for name, values in zip(GLUE_ROWS, rows, strict=True):
        for column, value in zip([*GLUE_TASKS, "score"], values, strict=True):
            table.setdefault(column, {})[name] = value
    return table


GLUE_ROBERTA = _glue([
    [68.1, 86.3, 91.9, 92.3, 96.4, 94.6, 91.5, 90.22, 88.91],
    [59.3, 67.9, 88.6, 88.5, 92.5, 90.8, 90.9, 84.0, 82.81],
    [60.97, 71.11, 90.2, 88.86, 92.54, 91.37, 91.64, 84.18, 83.85],
    [61.15, 71.84, 89.91, 88.94, 92.54, 91.32, 91.7, 83.89, 83.91],
    [61.67, 73.64, 90.6, 89.01, 93.11, 91.64, 91.5, 85.34, 84.56],
])

GLUE_BERT = _glue([
    [65.8, 71.48, 91.38, 89.2, 92.77, 92.82, 91.45, 86.3, 85.15],
    [41.7, 64.98, 83.75, 87.41, 88.3, 86.49, 88.43, 78.42, 77.44],
    [41.89, 64.98, 86.0, 85.95, 88.76, 86.75, 88.24, 78.62, 77.65],
    [40.2, 65.7, 85.23, 86.44, 88.88, 86.78, 88.4, 78.78, 77.55],
    [41.36, 64.9, 87.93, 87.04, 89.56, 86.99, 88.58, 78.66, 78.13],
])
