"""The nine GLUE tasks: files, columns, label order, metrics; the one place for each of them.

Label order is that of the ``nyu-mll/glue`` ClassLabel features (what ``run_glue.py`` gives a
fine-tuned model); ``tsv_labels`` are the same labels as written in the GLUE TSVs and the
leaderboard submission files.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import UsageError


@dataclass(frozen=True)
class Task:
    name: str  # --task_name
    folder: str  # download_glue_data.py folder and leaderboard file name
    text_a: str | int  # column name, or position in a TSV without header (CoLA)
    text_b: str | int | None
    label: str | int  # label column (the score for STS-B)
    labels: tuple[str, ...]  # label names in model order; () for regression
    tsv_labels: tuple[str, ...]  # the same labels as written in the TSVs
    metrics: tuple[str, ...]  # what is reported on dev
    selection: str  # what the original selected the student on (STS-B: corr)
    hub_columns: tuple[str, str | None] | None = None  # nyu-mll/glue's; None: as in the TSVs
    dev: tuple[str, ...] = ("dev",)  # dev splits; the first one is the selection split
    test: tuple[str, ...] = ("test",)
    header: bool = True  # train/dev TSVs have a header row
    test_text_a: str | None = None  # when the test file names columns differently
    test_index: str = "index"

    @property
    def num_labels(self) -> int:
        return len(self.labels) or 1

    @property
    def is_regression(self) -> bool:
        return not self.labels


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("cola", "CoLA", 3, None, 1, ("unacceptable", "acceptable"), ("0", "1"),
             ("mcc",), "mcc", header=False, test_text_a="sentence"),
        Task("sst-2", "SST-2", "sentence", None, "label", ("negative", "positive"), ("0", "1"),
             ("accuracy",), "accuracy"),
        Task("mrpc", "MRPC", "#1 String", "#2 String", "Quality", ("not_equivalent", "equivalent"),
             ("0", "1"), ("f1", "accuracy"), "f1", hub_columns=("sentence1", "sentence2")),
        Task("sts-b", "STS-B", "sentence1", "sentence2", "score", (), (),
             ("pearson", "spearman", "corr"), "corr"),
        Task("qqp", "QQP", "question1", "question2", "is_duplicate", ("not_duplicate", "duplicate"),
             ("0", "1"), ("f1", "accuracy"), "accuracy", test_index="id"),
        Task("mnli", "MNLI", "sentence1", "sentence2", "gold_label",
             ("entailment", "neutral", "contradiction"), ("entailment", "neutral", "contradiction"),
             ("accuracy",), "accuracy", hub_columns=("premise", "hypothesis"),
             dev=("dev_matched", "dev_mismatched"), test=("test_matched", "test_mismatched")),
        Task("qnli", "QNLI", "question", "sentence", "label", ("entailment", "not_entailment"),
             ("entailment", "not_entailment"), ("accuracy",), "accuracy"),
        Task("rte", "RTE", "sentence1", "sentence2", "label", ("entailment", "not_entailment"),
             ("entailment", "not_entailment"), ("accuracy",), "accuracy"),
        Task("wnli", "WNLI", "sentence1", "sentence2", "label", ("not_entailment", "entailment"),
             ("0", "1"), ("accuracy",), "accuracy"),
    ]
}

ALIASES = {"sst2": "sst-2", "stsb": "sts-b", "sts_b": "sts-b", "sst_2": "sst-2",
           "mnli-mm": "mnli", "mnli_mm": "mnli"}
HUB_NAMES = {"sst-2": "sst2", "sts-b": "stsb"}  # our task name -> nyu-mll/glue configuration
# our split name -> the nyu-mll/glue split of the same examples
GLUE_HUB_SPLITS = {"dev": "validation", "dev_matched": "validation_matched",
                   "dev_mismatched": "validation_mismatched"}
# leaderboard submission file per test split
SUBMISSION = {"test_matched": "MNLI-m", "test_mismatched": "MNLI-mm"}


def get_task(name: str) -> Task:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise UsageError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[key]


def metric_names(task: Task) -> list[str]:
    """Every dev metric of a task (MNLI: also the mismatched ones, ``_mm``)."""
    return [m + split_suffix(task, s) for s in task.dev for m in task.metrics]


def split_suffix(task: Task, split: str) -> str:
    """Suffix of a dev split's metric names: '' for the selection split, '_mm' for MNLI-mm."""
    return "" if split == task.dev[0] else "_mm"


def normalize_label(name: object) -> str:
    """A label name as compared with another: lower case, letters and digits only."""
    return "".join(c for c in str(name).lower() if c.isalnum())


def label_columns(task: Task, order: str) -> list[int]:
    """``--teacher_label_order`` (the label names of the teacher's outputs 0..C-1, comma-separated)
    as the teacher's column of each of our labels: ``teacher_logits[:, cols]`` is in our order."""
    if task.is_regression:
        raise UsageError(f"--teacher_label_order applies to classification tasks; {task.name} is a "
                         "regression")
    names, ours = [[normalize_label(n) for n in labels] for labels in (order.split(","), task.labels)]
    if sorted(names) != sorted(ours):
        raise UsageError(f"--teacher_label_order {order!r} is not an order of the {task.name} "
                         f"labels {','.join(task.labels)}; name each once, comma-separated")
    return [names.index(n) for n in ours]
