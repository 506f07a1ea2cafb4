"""GLUE examples from download_glue_data.py TSV folders or from the ``nyu-mll/glue`` hub dataset,
tokenization, and the collator (dynamic padding, student and optional teacher inputs)."""

from __future__ import annotations

import codecs
import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import UsageError
from NLP_glue_tasks.tasks import HUB_NAMES, HUB_SPLITS, Task

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Examples:
    """One split: texts, labels (model label ids or floats; None on test) and test ids."""

    text_a: list[str]
    text_b: list[str] | None
    labels: list[float | int] | None
    ids: list[str]

    def __len__(self) -> int:
        return len(self.text_a)


def task_dir(data_dir: str | Path, task: Task) -> Path:
    """``--data_dir`` is the task folder (<GLUE>/RTE); the GLUE root is accepted as well."""
    path = Path(data_dir)
    if not path.is_dir():
        raise UsageError(f"--data_dir {path} is not a directory; point it to the task folder "
                         f"written by download_glue_data.py, e.g. <GLUE>/{task.folder}")
    if not (path / "train.tsv").exists() and (path / task.folder).is_dir():
        return path / task.folder
    return path


def read_tsv(path: Path, task: Task, split: str) -> Examples:
    """Read a GLUE TSV without quote handling (GLUE texts contain unbalanced quotes)."""
    if not path.is_file():
        raise UsageError(f"GLUE file {path} does not exist; --data_dir must be the {task.folder} "
                         "folder of download_glue_data.py, or leave --data_dir out to use nyu-mll/glue")
    test = split.startswith("test")
    csv.field_size_limit(sys.maxsize)
    raw = path.read_bytes()
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = bom + exc.start
        raise UsageError(f"{path} is not UTF-8 text (byte offset {at} is {raw[at]:#04x}); "
                         "convert the file to UTF-8") from None
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    header = rows.pop(0) if (task.header or test) and rows else None

    def column(name: str | int | None) -> int | None:
        if name is None or isinstance(name, int):
            return name
        if header is None or name not in header:
            raise UsageError(f"{path} has no column {name!r} (columns: {header}); is this the "
                             f"{task.folder} data of download_glue_data.py?")
        return header.index(name)

    a = column(task.test_text_a if test and task.test_text_a else task.text_a)
    b = column(task.text_b)
    y = None if test else column(task.label)
    i = column(task.test_index) if test else None
    needed = max(c for c in (a, b, y, i) if c is not None)
    text_a, text_b, labels, ids, skipped = [], [], [], [], 0
    for n, row in enumerate(rows):
        if len(row) <= needed:  # a few malformed QQP lines; the original skipped them too
            skipped += 1
            continue
        text_a.append(row[a])
        if b is not None:
            text_b.append(row[b])
        ids.append(row[i] if i is not None else str(n))
        if y is not None:
            labels.append(_label(task, row[y], path, n + 1 + (header is not None)))
    if skipped:
        print(f"warning: skipped {skipped} malformed rows of {path}", file=sys.stderr)
    if not text_a:
        raise UsageError(f"{path} holds no examples; check the file")
    return Examples(text_a, text_b if b is not None else None, None if test else labels, ids)


def _label(task: Task, raw: str, path: Path, line: int) -> float | int:
    if task.is_regression:
        try:
            return float(raw)
        except ValueError:
            raise UsageError(f"{path} line {line}: score {raw!r} is not a number") from None
    if raw not in task.tsv_labels:
        raise UsageError(f"{path} line {line}: label {raw!r} is not one of {list(task.tsv_labels)}")
    return task.tsv_labels.index(raw)


def load_hub(task: Task, split: str, cache_dir: str | None = None) -> Examples:
    """A split of ``nyu-mll/glue`` through ``datasets`` (needs the network or a warm cache)."""
    try:
        import datasets
    except ImportError:
        raise UsageError("the `datasets` package is not installed; pip install datasets, or pass "
                         "--data_dir with the GLUE TSV files") from None
    name = HUB_NAMES.get(task.name, task.name)
    try:
        ds = datasets.load_dataset("nyu-mll/glue", name, split=HUB_SPLITS.get(split, split),
                                   cache_dir=cache_dir)
    except Exception as exc:
        raise UsageError(f"could not load nyu-mll/glue {name} {split} ({type(exc).__name__}: "
                         f"{str(exc)[:200]}); if offline, pass --data_dir with the GLUE TSV files "
                         "of download_glue_data.py") from None
    feature = ds.features["label"]
    if not task.is_regression and list(getattr(feature, "names", [])) != list(task.labels):
        raise UsageError(f"nyu-mll/glue {name} labels {feature.names} differ from {task.labels}")
    col_a, col_b = task.hub_columns
    labels = None if split.startswith("test") else list(ds["label"])
    return Examples(list(ds[col_a]), list(ds[col_b]) if col_b else None, labels,
                    [str(i) for i in ds["idx"]])


def load_split(task: Task, split: str, data_dir: str | None, cache_dir: str | None = None) -> Examples:
    if getattr(task, "source", None) is not None:  # your own data (custom_data.py)
        return task.source.split(split)
    if data_dir:
        return read_tsv(task_dir(data_dir, task) / f"{split}.tsv", task, split)
    return load_hub(task, split, cache_dir)


def encode(tokenizer, ex: Examples, max_length: int) -> list[dict[str, Any]]:
    """Token ids per example (no padding), with its position ``index`` and label."""
    if not isinstance(ex, Examples):  # your own data: a cached datasets.Dataset (custom_data.py)
        return ex.encode(tokenizer, max_length)
    enc = tokenizer(ex.text_a, ex.text_b, truncation=True, max_length=max_length)
    keys = [k for k in MODEL_KEYS if k in enc]
    feats = []
    for n in range(len(ex)):
        f = {k: enc[k][n] for k in keys}
        f["index"] = n
        if ex.labels is not None:
            f["labels"] = ex.labels[n]
        feats.append(f)
    return feats


def attach(feats: list[dict[str, Any]], other: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """Add another model's token ids (e.g. the teacher's, for an online teacher) to each feature."""
    if not isinstance(feats, list):
        return Attached(feats, other, name)
    return [{**f, name: {k: o[k] for k in MODEL_KEYS if k in o}} for f, o in zip(feats, other, strict=True)]


class Attached:
    """:func:`attach` for datasets read lazily (``datasets.Dataset``)."""

    def __init__(self, feats, other, name: str) -> None:
        if len(feats) != len(other):
            raise ValueError(f"{len(feats)} features but {len(other)} of {name}")
        self.feats, self.other, self.name = feats, other, name

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i: int) -> dict[str, Any]:
        o = self.other[i]
        return {**self.feats[i], self.name: {k: o[k] for k in MODEL_KEYS if k in o}}


class Collator:
    """Pads each batch to its longest sequence (DataCollatorWithPadding), or to ``max_length``
    with ``pad_to_max_length``; nested inputs of other models are padded with their tokenizer."""

    def __init__(self, tokenizer, others: dict[str, Any] | None = None, max_length: int | None = None,
                 pad_to_multiple_of: int | None = None) -> None:
        from transformers import DataCollatorWithPadding

        padding = "max_length" if max_length else True
        self.pads = {name: DataCollatorWithPadding(tok, padding=padding, max_length=max_length,
                                                   pad_to_multiple_of=pad_to_multiple_of)
                     for name, tok in {"": tokenizer, **(others or {})}.items()}

    def __call__(self, feats: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = dict(self.pads[""]([{k: f[k] for k in MODEL_KEYS if k in f} for f in feats]))
        batch["index"] = torch.tensor([f["index"] for f in feats])
        if "labels" in feats[0]:
            y = [f["labels"] for f in feats]
            batch["labels"] = torch.tensor(y, dtype=torch.float32 if isinstance(y[0], float) else torch.long)
        for name, pad in self.pads.items():
            if name:
                batch[name] = dict(pad([f[name] for f in feats]))
        return batch


def model_inputs(batch: dict[str, Any], name: str = "") -> dict[str, Any]:
    """The keyword arguments of a model's forward in a collated batch."""
    src = batch[name] if name else batch
    return {k: src[k] for k in MODEL_KEYS if k in src}
