"""Your own text classification data: CSV / TSV / JSON / JSONL files or a Hugging Face dataset.

The task is "custom": one or two text columns, a label column. String or integer labels are
classes in sorted order (a ClassLabel keeps its own order), float labels a regression; metrics:
accuracy and F1 (two classes) or macro-F1, or Pearson / Spearman. Each split is put in the common
layout of ``data`` under ``datasets`` fingerprints (a second run reads the on-disk cache).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import datasets

from ..common.errors import UsageError, setting
from .cli import uses_own_data
from .data import GlueData, read_tsv
from .tasks import Task, get_task

FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "json"}
DEFAULT_TEXT = (("sentence1", "sentence2"), ("sentence",), ("text",))
SPLIT_FLAGS = {"train": "--train_file", "dev": "--validation_file", "test": "--test_file"}
# our split -> the names a hub dataset may give it, in order of preference
HUB_SPLIT_NAMES = {"train": ("train",), "dev": ("validation", "validation_matched", "dev"),
                   "test": ("test",)}


def task_and_data(args) -> tuple[Task, Any]:
    """The task of the run and its data (``split(name)`` in the common layout): a GLUE task of
    --task_name (``data.GlueData``), or the custom task of the data flags (loaded here)."""
    if uses_own_data(args):
        source: Any = CustomData(args)
        task = source.task()
    else:
        task = get_task(args.task_name)
        source = GlueData(task, args.data_dir, args.cache_dir)
    if args.metric:
        if args.metric not in task.metrics:
            raise UsageError(f"--metric {args.metric} is not computed for {task.name}; choose one "
                             f"of {', '.join(task.metrics)}")
        task = replace(task, selection=args.metric)
    return task, source


@dataclass(frozen=True)
class CustomTask(Task):
    """The task of your own data: label names and metrics come from the data."""


@dataclass
class LabelMap:
    names: tuple[str, ...]  # model label order; () for regression
    ids: dict[str, int] | None  # str(raw value) -> id; None when the values are already ids

    def convert(self, values: list[Any]) -> list[int] | list[float]:
        if not self.names:
            return [float(v) for v in values]
        if self.ids is None:
            return [int(v) for v in values]
        return [self.ids[str(v)] for v in values]


def _to_layout(batch: dict[str, list], indices: list[int], *, a: str, b: str | None,
               label: str | None, labels: LabelMap) -> dict[str, list]:
    """A batch of a split in the common layout of ``data``."""
    def texts(col):
        for i, t in zip(indices, batch[col]):
            if not isinstance(t, str):
                raise UsageError(f"row {i + 1} of the data has {json.dumps(t)[:40]} in the text "
                                 f"column {col!r}, not text; fix or drop that row")
        return batch[col]

    out = {"text_a": texts(a), **({"text_b": texts(b)} if b else {})}
    if label is None:
        out["idx"] = [str(i) for i in indices]
    else:
        out["label"] = labels.convert(batch[label])
    return out


class CustomData:
    """The splits of the user's files or hub dataset, their columns and the label list."""

    def __init__(self, args) -> None:
        self.args = args
        self.splits = self._load(args)
        if "train" not in self.splits:
            raise UsageError("your own data needs a training split (the label list comes from it): "
                             "pass --train_file, or a --dataset_name with a train split")
        if "dev" not in self.splits:
            raise UsageError("no dev data: pass --validation_file (the dev set selects the "
                             "student)")
        self.text_a, self.text_b = self._text_columns()
        self.label = args.label_column_name
        for split, ds in self.splits.items():
            if split == "test":
                continue
            if self.label not in ds.column_names:
                raise UsageError(f"{self._where(split)} has no label column {self.label!r} "
                                 f"(columns: {ds.column_names}); pass --label_column_name")
            if FORMATS.get(Path(self._file(split) or "").suffix.lower()) == "tsv":
                self.splits[split] = _typed(ds, self.label)
        self.label_map = self._labels()

    # ---- loading -----------------------------------------------------------------------------
    def _file(self, split: str) -> str | None:
        return getattr(self.args, SPLIT_FLAGS[split][2:], None)

    def _where(self, split: str) -> str:
        return self._file(split) or f"{self.args.dataset_name} {split} split"

    def _load(self, args) -> dict[str, Any]:
        splits: dict[str, Any] = {}
        if args.dataset_name:
            try:
                dd = datasets.load_dataset(args.dataset_name, args.dataset_config_name,
                                           cache_dir=args.cache_dir)
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise UsageError(f"could not load dataset {args.dataset_name!r} "
                                 f"({type(exc).__name__}: {first[:200]}); offline, the dataset "
                                 "must be in the `datasets` cache, or pass your files with "
                                 "--train_file/--validation_file") from None
            for split, names in HUB_SPLIT_NAMES.items():
                if found := [n for n in names if n in dd]:
                    splits[split] = dd[found[0]]
        for split, flag in SPLIT_FLAGS.items():
            if self._file(split):
                splits[split] = load_file(self._file(split), flag, args.cache_dir)
        return splits

    def _text_columns(self) -> tuple[str, str | None]:
        train = self.splits["train"].column_names
        if self.args.text_column_names:
            cols = [c.strip() for c in self.args.text_column_names.split(",") if c.strip()]
            if not 1 <= len(cols) <= 2:
                raise UsageError(f"--text_column_names takes one or two columns, got {cols}")
        else:
            cols = next((list(c) for c in DEFAULT_TEXT if set(c) <= set(train)), None)
            if cols is None:
                raise UsageError(f"{self._where('train')} has none of the default text columns "
                                 "(sentence1,sentence2 / sentence / text); its columns are "
                                 f"{train}: pass --text_column_names")
        for split, ds in self.splits.items():
            missing = [c for c in cols if c not in ds.column_names]
            if missing:
                raise UsageError(f"{self._where(split)} has no column {missing[0]!r} (columns: "
                                 f"{ds.column_names}); fix --text_column_names")
        return cols[0], cols[1] if len(cols) > 1 else None

    def _labels(self) -> LabelMap:
        """The label list of the training split; every dev label must be in it."""
        train, where = self.splits["train"], self._where("train")
        feature = train.features[self.label]
        if isinstance(feature, datasets.Value) and feature.dtype.startswith("float"):
            return LabelMap((), None)
        if isinstance(feature, datasets.ClassLabel):
            lm = LabelMap(tuple(feature.names), None)
        elif isinstance(feature, datasets.Value):
            values = train.unique(self.label)
            if None in values:
                raise UsageError(f"{where}: some rows have no {self.label!r}; fill or drop them")
            values = sorted(values)
            if len(values) < 2:
                raise UsageError(f"{where} has a single label {values}; a classifier needs at "
                                 "least two")
            lm = LabelMap(tuple(str(v) for v in values), {str(v): i for i, v in enumerate(values)})
        else:
            raise UsageError(f"label column {self.label!r} has type {feature}; give one class (a "
                             "string or integer) or one float score per row (multi-label is not "
                             "supported)")
        dev = self.splits["dev"].unique(self.label)
        unknown = (sorted(str(v) for v in set(dev) - set(range(len(lm.names)))) if lm.ids is None
                   else sorted({str(v) for v in dev} - set(lm.ids)))
        if unknown:
            raise UsageError(f"{self._where('dev')} has label {unknown[0]!r} which the training "
                             f"data does not have (training labels: {list(lm.names)}); fix the "
                             "label or add such examples to training")
        return lm

    # ---- the task ------------------------------------------------------------------------------
    def task(self) -> CustomTask:
        names = self.label_map.names
        metrics = (("pearson", "spearman") if not names else
                   ("accuracy", "f1") if len(names) == 2 else ("accuracy", "macro_f1"))
        return CustomTask("custom", "test", self.text_a, self.text_b, self.label, names, names,
                          metrics, metrics[0], test=("test",) if "test" in self.splits else ())

    def split(self, name: str) -> datasets.Dataset:
        """A split in the common layout of ``data`` (text_a, text_b; label, or idx on test)."""
        if name not in self.splits:
            raise UsageError(f"no {name} data: pass {SPLIT_FLAGS[name]}")
        ds = self.splits[name]
        label = self.label if name != "test" and self.label in ds.column_names else None
        text = datasets.Value("string")
        types = {"text_a": text, **({"text_b": text} if self.text_b else {})}
        types.update({"idx": text} if label is None else
                     {"label": datasets.Value("int64" if self.label_map.names else "float64")})
        return ds.map(partial(_to_layout, a=self.text_a, b=self.text_b, label=label,
                              labels=self.label_map), batched=True, with_indices=True,
                      remove_columns=ds.column_names, features=datasets.Features(types),
                      desc=f"reading {name}")

    def describe(self) -> dict[str, Any]:
        """What results.json states about the data."""
        args = self.args
        src = ({"dataset_name": args.dataset_name, "dataset_config_name": args.dataset_config_name}
               if args.dataset_name else {})
        src.update({SPLIT_FLAGS[s][2:]: str(self._file(s)) for s in SPLIT_FLAGS if self._file(s)})
        return {"data": {**src, "text_columns": [c for c in (self.text_a, self.text_b) if c],
                         "label_column": self.label,
                         "sizes": {s: len(d) for s, d in self.splits.items()},
                         "regression": not self.label_map.names},
                "labels": list(self.label_map.names)}


def load_file(path: str, flag: str, cache_dir: str | None) -> datasets.Dataset:
    """One file as a ``datasets.Dataset`` (the format from its suffix)."""
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise UsageError(f"{flag} {path}: unknown format {p.suffix!r}; use .csv, .tsv, .json or "
                         ".jsonl")
    if not p.is_file():
        raise UsageError(f"{flag} {path} does not exist")
    if fmt == "tsv":
        return read_tsv(p, cache_dir=cache_dir)
    try:
        return datasets.load_dataset(fmt, data_files={"train": str(p.resolve())}, split="train",
                                     cache_dir=cache_dir)
    except Exception as exc:
        cause = root_cause(exc)  # datasets wraps the reader's error: name the real one
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        if isinstance(cause, UnicodeDecodeError) or "utf8" in first.lower().replace("-", ""):
            raise UsageError(f"{flag} {path} is not UTF-8 text ({first[:200]}); convert the file "
                             "to UTF-8") from None
        if isinstance(cause, OSError) and cache_dir and str(cause.filename or "").startswith(
                str(cache_dir)):
            raise UsageError(f"{setting('cache_dir')} {cache_dir} cannot be used "
                             f"({cause.strerror}); pass a writable folder") from None
        raise UsageError(f"{flag} {path} could not be read as {p.suffix[1:]} "
                         f"({type(cause).__name__}: {first[:200]}); check the file") from None


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a chain (``raise ... from``, or raised while handling)."""
    seen = set()
    while (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return exc


def _typed(ds: datasets.Dataset, column: str) -> datasets.Dataset:
    """A TSV's label column (all strings) as integers or floats where every value is one, as
    the CSV reader types them."""
    if ds.features[column] != datasets.Value("string"):
        return ds
    for dtype in ("int64", "float64"):
        with contextlib.suppress(ValueError, TypeError, ArithmeticError):
            return ds.cast_column(column, datasets.Value(dtype))
    return ds
