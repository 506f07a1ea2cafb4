"""Your own text classification data: CSV / TSV / JSON / JSONL files or a Hugging Face dataset.

Files are read with ``datasets.load_dataset("csv" | "json", data_files=...)`` (an Arrow copy in the
``datasets`` cache, memory-mapped on later runs) and tokenized with ``Dataset.map`` under a
fingerprint of the data, the tokenizer and the settings: a second run reads the token ids from
the on-disk cache instead of tokenizing again. ``datasets`` is imported only on this path.

The task is "custom": one or two text columns, a label column. String or integer labels are
classes, in sorted order (a ClassLabel feature keeps its own order); float labels are a
regression. Metrics: accuracy and F1 (two classes) or macro-F1, Pearson / Spearman.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from common.errors import UsageError
from NLP_glue_tasks.tasks import Task, get_task

FORMATS = {".csv": ("csv", {}), ".tsv": ("csv", {"delimiter": "\t", "quoting": 3}),  # 3: no quoting
           ".json": ("json", {}), ".jsonl": ("json", {})}
DEFAULT_TEXT = (("sentence1", "sentence2"), ("sentence",), ("text",))
SPLIT_FLAGS = {"train": "--train_file", "dev": "--validation_file", "test": "--test_file"}
HUB_SPLITS = {"train": ("train",), "dev": ("validation", "validation_matched", "dev"), "test": ("test",)}
MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")
CACHE_VERSION = "1"  # bump when the tokenized layout changes


def add_arguments(parser) -> None:
    """The "your own data" flags (names as in HF run_classification.py)."""
    g = parser.add_argument_group("your own data (instead of --task_name)")
    g.add_argument("--train_file", default=None, help="training data: .csv, .tsv, .json or .jsonl")
    g.add_argument("--validation_file", default=None, help="dev data, selects the student")
    g.add_argument("--test_file", default=None, help="test data for --do_predict (labels not needed)")
    g.add_argument("--dataset_name", default=None,
                   help="a Hugging Face dataset (train / validation / test splits)")
    g.add_argument("--dataset_config_name", default=None, help="its configuration")
    g.add_argument("--text_column_names", default=None,
                   help="one or two comma-separated text columns (default: sentence1,sentence2, "
                        "else sentence, else text)")
    g.add_argument("--label_column_name", default="label",
                   help="strings/integers: classes (sorted); floats: regression")
    g.add_argument("--metric", default=None,
                   help="the dev metric that selects the best epoch (default: the task's, as the original: "
                        "CoLA mcc, MRPC f1, STS-B corr = mean of pearson and spearman, others "
                        "accuracy (MNLI matched); custom: accuracy or pearson); "
                        "one of accuracy, f1 (two classes), macro_f1, pearson, spearman, mcc")


def _datasets():
    try:
        import datasets
    except ImportError:
        raise UsageError("your own data needs the `datasets` package: pip install datasets") from None
    if not sys.stderr.isatty():
        datasets.disable_progress_bars()
    return datasets


def uses_own_data(args) -> bool:
    return any(getattr(args, k, None) for k in ("train_file", "validation_file", "test_file",
                                                "dataset_name"))


def resolve_task(args) -> Task:
    """The GLUE task of --task_name, or the custom task of the data flags (loaded here)."""
    name = (args.task_name or "").lower()
    if name and name != "custom":
        if uses_own_data(args):
            raise UsageError("--task_name picks a GLUE task; for your own data leave it out and "
                             "pass --train_file/--validation_file or --dataset_name")
        task = get_task(args.task_name)
    elif not uses_own_data(args):
        raise UsageError("no data: pass --task_name (a GLUE task), or --train_file and "
                         "--validation_file, or --dataset_name")
    else:
        if args.data_dir:
            raise UsageError("--data_dir is for GLUE task folders; your own files go to "
                             "--train_file/--validation_file/--test_file")
        task = CustomData(args).task()
    if args.metric:
        if args.metric not in task.metrics:
            raise UsageError(f"--metric {args.metric} is not computed for {task.name}; choose one "
                             f"of {', '.join(task.metrics)}")
        task = replace(task, selection=args.metric)
    return task


@dataclass(frozen=True)
class CustomTask(Task):
    """A Task whose splits come from :class:`CustomData` (``NLP_glue_tasks.data.load_split``)."""

    source: Any = field(default=None, compare=False, repr=False)


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


def _tokenize(batch: dict[str, list], indices: list[int], *, tok, a: str, b: str | None,
              label: str | None, labels: LabelMap | None, max_length: int) -> dict[str, list]:
    def texts(col):
        return ["" if t is None else str(t) for t in batch[col]]

    enc = tok(texts(a), texts(b) if b else None, truncation=True, max_length=max_length)
    out = {k: enc[k] for k in MODEL_KEYS if k in enc}
    out["index"] = list(indices)
    if label is not None:
        out["labels"] = labels.convert(batch[label])
    return out


def tokenizer_identity(tok) -> str:
    """A stable hash of a tokenizer: its full JSON for fast tokenizers (with the truncation and
    padding state cleared: ``transformers`` sets both anew on every call), else ``datasets``'
    pickle hash."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
        text = backend.to_str()
    else:
        from datasets.fingerprint import Hasher

        text = Hasher.hash(tok)
    text += f"|{type(tok).__name__}|{list(tok.model_input_names)}"
    return hashlib.sha256(text.encode()).hexdigest()


class Split:
    """One split of custom data: what ``NLP_glue_tasks.data.encode`` and the metrics read."""

    def __init__(self, ds, data: CustomData, name: str) -> None:
        self.ds, self.data, self.name = ds, data, name
        self.has_labels = name != "test" and data.label in ds.column_names
        self._labels = None

    def __len__(self) -> int:
        return len(self.ds)

    @property
    def ids(self) -> list[str]:
        return [str(i) for i in range(len(self.ds))]

    @property
    def labels(self):
        """Label ids (or floats) of every example, or None on the test split."""
        if not self.has_labels:
            return None
        if self._labels is None:
            import numpy as np

            column = self.ds.with_format("arrow")[:].column(self.data.label).to_pylist()
            self._labels = np.asarray(self.data.label_map.convert(column))
        return self._labels

    def encode(self, tok, max_length: int):
        """Token ids, position ``index`` and ``labels`` as a ``datasets.Dataset`` (cached on disk)."""
        from datasets.fingerprint import Hasher

        d = self.data
        label = d.label if self.has_labels else None
        fn = partial(_tokenize, tok=tok, a=d.text_a, b=d.text_b, label=label, labels=d.label_map,
                     max_length=max_length)
        fingerprint = Hasher.hash([CACHE_VERSION, self.ds._fingerprint, tokenizer_identity(tok),
                                   max_length, d.text_a, d.text_b, label, d.label_map.names,
                                   d.label_map.ids])
        return self.ds.map(fn, batched=True, with_indices=True, remove_columns=self.ds.column_names,
                           new_fingerprint=fingerprint, desc=f"tokenizing {self.name}")


class CustomData:
    """The splits of the user's files or hub dataset, their columns and the label list."""

    def __init__(self, args) -> None:
        self.args = args
        self.splits = self._load(args)
        if "train" not in self.splits:
            raise UsageError("your own data needs a training split (the label list comes from it): "
                             "pass --train_file, or a --dataset_name with a train split")
        if "dev" not in self.splits:
            raise UsageError("no dev data: pass --validation_file (the dev set selects the student)")
        self.text_a, self.text_b = self._text_columns()
        self.label = args.label_column_name
        for split, ds in self.splits.items():
            if split != "test" and self.label not in ds.column_names:
                raise UsageError(f"{self._where(split)} has no label column {self.label!r} "
                                 f"(columns: {ds.column_names}); pass --label_column_name")
        self.label_map = self._labels()

    # ---- loading -----------------------------------------------------------------------------
    def _where(self, split: str) -> str:
        path = getattr(self.args, SPLIT_FLAGS[split][2:], None)
        return path or f"{self.args.dataset_name} {split} split"

    def _load(self, args) -> dict[str, Any]:
        ds_lib = _datasets()
        splits: dict[str, Any] = {}
        if args.dataset_name:
            splits = self._load_hub(ds_lib, args)
        for split, flag in SPLIT_FLAGS.items():
            path = getattr(args, flag[2:])
            if path:
                splits[split] = load_file(ds_lib, path, flag, args.cache_dir)
        return splits

    @staticmethod
    def _load_hub(ds_lib, args) -> dict[str, Any]:
        try:
            dd = ds_lib.load_dataset(args.dataset_name, args.dataset_config_name, cache_dir=args.cache_dir)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UsageError(f"could not load dataset {args.dataset_name!r} ({type(exc).__name__}: "
                             f"{first[:200]}); offline, the dataset must be in the `datasets` cache, "
                             "or pass your files with --train_file/--validation_file") from None
        found = {}
        for split, names in HUB_SPLITS.items():
            name = next((n for n in names if n in dd), None)
            if name:
                found[split] = dd[name]
        return found

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
                                 f"(sentence1,sentence2 / sentence / text); its columns are {train}: "
                                 "pass --text_column_names")
        for split, ds in self.splits.items():
            missing = [c for c in cols if c not in ds.column_names]
            if missing:
                raise UsageError(f"{self._where(split)} has no column {missing[0]!r} (columns: "
                                 f"{ds.column_names}); fix --text_column_names")
        return cols[0], cols[1] if len(cols) > 1 else None

    def _labels(self) -> LabelMap:
        ds_lib = sys.modules["datasets"]
        train = self.splits["train"]
        feature = train.features[self.label]
        if isinstance(feature, ds_lib.ClassLabel):
            lm = LabelMap(tuple(feature.names), None)
            known: set[Any] = set(range(len(feature.names)))
            if len(train.unique(self.label)) < 2:
                raise UsageError(f"{self._where('train')} has a single label; a classifier needs "
                                 "at least two")
        elif isinstance(feature, ds_lib.Value) and feature.dtype.startswith("float"):
            lm, known = LabelMap((), None), set()
        elif isinstance(feature, ds_lib.Value):
            values = train.unique(self.label)
            if None in values:
                raise UsageError(f"{self._where('train')}: some rows have no {self.label!r}; fill "
                                 "or drop them")
            values = sorted(values)
            if len(values) < 2:
                raise UsageError(f"{self._where('train')} has a single label {values}; a classifier "
                                 "needs at least two")
            lm = LabelMap(tuple(str(v) for v in values), {str(v): i for i, v in enumerate(values)})
            known = set(lm.ids)
        else:
            raise UsageError(f"label column {self.label!r} has type {feature}; give one class (a "
                             "string or integer) or one float score per row (multi-label is not "
                             "supported)")
        if lm.names:
            for split in ("dev",):
                values = self.splits[split].unique(self.label)
                keys = set(values) if lm.ids is None else {str(v) for v in values}
                unknown = sorted(str(v) for v in keys - known)
                if unknown:
                    raise UsageError(f"{self._where(split)} has label {unknown[0]!r} which the "
                                     f"training data does not have (training labels: "
                                     f"{list(lm.names)}); fix the label or add such examples to training")
        return lm

    # ---- the task ------------------------------------------------------------------------------
    def task(self) -> CustomTask:
        names = self.label_map.names
        if not names:
            metrics = ("pearson", "spearman")
        elif len(names) == 2:
            metrics = ("accuracy", "f1")
        else:
            metrics = ("accuracy", "macro_f1")
        return CustomTask("custom", "test", self.text_a, self.text_b, self.label, names, names,
                          metrics, metrics[0], test=("test",) if "test" in self.splits else (),
                          source=self)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise UsageError(f"no {name} data: pass {SPLIT_FLAGS[name]}")
        return Split(self.splits[name], self, name)

    def describe(self) -> dict[str, Any]:
        """What results.json states about the data."""
        src = ({"dataset_name": self.args.dataset_name, "dataset_config_name": self.args.dataset_config_name}
               if self.args.dataset_name else {})
        for flag in SPLIT_FLAGS.values():
            if getattr(self.args, flag[2:]):
                src[flag[2:]] = str(getattr(self.args, flag[2:]))
        return {"data": {**src, "text_columns": [c for c in (self.text_a, self.text_b) if c],
                         "label_column": self.label, "sizes": {s: len(d) for s, d in self.splits.items()},
                         "regression": not self.label_map.names},
                "labels": list(self.label_map.names)}


def load_file(ds_lib, path: str, flag: str, cache_dir: str | None):
    """One file as a ``datasets.Dataset`` (the format from its suffix)."""
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise UsageError(f"{flag} {path}: unknown format {p.suffix!r}; use .csv, .tsv, .json or .jsonl")
    if not p.is_file():
        raise UsageError(f"{flag} {path} does not exist")
    builder, kwargs = fmt
    try:
        return ds_lib.load_dataset(builder, data_files={"train": str(p.resolve())}, split="train",
                                   cache_dir=cache_dir, **kwargs)
    except Exception as exc:
        cause = root_cause(exc)  # datasets wraps the reader's error: name the real one
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        if isinstance(cause, UnicodeDecodeError) or "utf8" in first.lower().replace("-", ""):
            raise UsageError(f"{flag} {path} is not UTF-8 text ({first[:200]}); convert the file "
                             "to UTF-8") from None
        if isinstance(cause, OSError) and cache_dir and str(cause.filename or "").startswith(
                str(cache_dir)):
            raise UsageError(f"--cache_dir {cache_dir} cannot be used ({cause.strerror}); pass a "
                             "writable folder") from None
        raise UsageError(f"{flag} {path} could not be read as {p.suffix[1:]} ({type(cause).__name__}: "
                         f"{first[:200]}); check the file") from None


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a chain (``raise ... from``, or raised while handling)."""
    seen = set()
    while (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return exc


def by_length(feats):
    """``feats`` ordered by sequence length (less padding); lists and ``datasets.Dataset`` s."""
    if isinstance(feats, list):
        return sorted(feats, key=lambda f: len(f["input_ids"]))
    import numpy as np
    import pyarrow.compute as pc
    from torch.utils.data import Subset

    table = feats.with_format("arrow")[:]
    lengths = pc.list_value_length(table.column("input_ids")).to_numpy()
    return Subset(feats, np.argsort(lengths, kind="stable").tolist())


def arrow_inputs_hash(feats) -> str:
    """sha256 of every example's token ids and segment ids, read from the Arrow columns."""
    import pyarrow.compute as pc

    table = feats.with_format("arrow")[:]
    h = hashlib.sha256()
    for key in ("input_ids", "token_type_ids"):
        if key in table.column_names:
            col = table.column(key)
            h.update(key.encode())
            h.update(pc.list_value_length(col).to_numpy().astype("int64").tobytes())
            h.update(pc.list_flatten(col).to_numpy().astype("int64").tobytes())
    return h.hexdigest()
