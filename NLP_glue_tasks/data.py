"""Text data as ``datasets.Dataset`` s, for GLUE folders, ``nyu-mll/glue`` and your own files
(``custom_data``) alike: the TSV reader, tokenization, the collator.

Every split has one layout: ``text_a``, ``text_b`` (pairs only), and ``label`` (model label ids,
or floats for a regression) on train and dev, ``idx`` (the id prediction files name) on test.
TSVs are read without quote handling (GLUE texts hold unbalanced quotes); reading and
tokenizing are cached by ``datasets`` under fingerprints: a second run memory-maps both.
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from datasets.fingerprint import Hasher
from transformers import DataCollatorWithPadding

from ..common.errors import UsageError
from ..common.training.seeding import EpochShuffleSampler
from .tasks import GLUE_HUB_SPLITS, HUB_NAMES, Task

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")
CACHE_VERSION = "2"  # bump when the tokenized layout changes

if not sys.stderr.isatty():
    datasets.disable_progress_bars()


# ---- the TSV reader -----------------------------------------------------------------------------
def read_tsv(path: str | os.PathLike, *, columns: dict[str, str | int] | None = None,
             header: bool = True, labels: tuple[str, ...] | None = None, hint: str = "",
             cache_dir: str | None = None) -> datasets.Dataset:
    """A tab-separated file as a ``datasets.Dataset``, without quote handling (a UTF-8 BOM is
    dropped; a row too short for the columns is skipped with a warning). ``columns``: output
    column -> header name or position (None: every header column); values are strings, but
    ``label`` with ``labels``: the names as written, in model order (a value is its position),
    or () for a float score. ``hint`` ends the message about a missing column."""
    path = Path(path)
    if header and not path.is_file():
        raise UsageError(f"{path} does not exist")
    head = next(_lines(path), "").rstrip("\r\n").split("\t") if header else None
    wanted = columns if columns is not None else {name: name for name in head or []}
    missing = [c for c in wanted.values() if not isinstance(c, int) and c not in (head or [])]
    if missing:
        raise UsageError(f"{path} has no column {missing[0]!r} (columns: {head}){hint}")
    index = {name: c if isinstance(c, int) else head.index(c) for name, c in wanted.items()}
    types = {n: datasets.Value("string") for n in index}
    if labels is not None and "label" in types:
        types["label"] = datasets.Value("int64" if labels else "float64")
    stat = path.stat()
    try:
        ds = datasets.Dataset.from_generator(
            _tsv_rows, features=datasets.Features(types), cache_dir=cache_dir,
            gen_kwargs={"path": str(path.resolve()), "stamp": (stat.st_size, stat.st_mtime_ns),
                        "index": index, "header": header, "labels": labels})
    except Exception as exc:  # datasets wraps what the reader raised
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, UsageError):
            raise cause from None
        raise
    if len(ds) == 0:
        raise UsageError(f"{path} holds no examples; check the file")
    return ds


def _lines(path: Path) -> Iterator[str]:
    """The file's lines as text (BOM dropped); bad UTF-8 is an error naming its byte offset."""
    offset = 0
    with open(path, "rb") as f:
        for n, raw in enumerate(f):
            data = raw.removeprefix(b"\xef\xbb\xbf") if n == 0 else raw
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError as exc:
                at = exc.start
                raise UsageError(f"{path} is not UTF-8 text (byte offset "
                                 f"{offset + len(raw) - len(data) + at} is {data[at]:#04x}); "
                                 "convert the file to UTF-8") from None
            offset += len(raw)


def _label(raw: str, names: tuple[str, ...], where: str) -> int | float:
    """A label as written (one of ``names``), or a score where there are no names."""
    if names:
        if raw not in names:
            raise UsageError(f"{where}: label {raw!r} is not one of {list(names)}")
        return names.index(raw)
    try:
        return float(raw)
    except ValueError:
        raise UsageError(f"{where}: score {raw!r} is not a number") from None


def _tsv_rows(path: str, stamp: tuple[int, int], index: dict[str, int], header: bool,
              labels: tuple[str, ...] | None) -> Iterator[dict[str, Any]]:
    """The rows of :func:`read_tsv` (``stamp``, the file's size and time, keys its cache)."""
    csv.field_size_limit(sys.maxsize)
    rows = csv.reader(_lines(Path(path)), delimiter="\t", quoting=csv.QUOTE_NONE)
    if header:
        next(rows, None)
    needed, skipped = max(index.values(), default=0), 0
    for n, row in enumerate(rows):
        if len(row) <= needed:  # a few malformed QQP lines; the original skipped them too
            skipped += 1
            continue
        out = {name: row[i] for name, i in index.items()}
        if labels is not None and "label" in out:
            out["label"] = _label(out["label"], labels, f"{path} line {n + 1 + header}")
        yield out
    if skipped:
        print(f"warning: skipped {skipped} malformed rows of {path}", file=sys.stderr)


# ---- GLUE ---------------------------------------------------------------------------------------
class GlueData:
    """The splits of a GLUE task: a ``download_glue_data.py`` folder, or ``nyu-mll/glue``."""

    def __init__(self, task: Task, data_dir: str | None, cache_dir: str | None = None) -> None:
        self.task, self.cache_dir = task, cache_dir
        self.folder = task_dir(data_dir, task) if data_dir else None

    def split(self, split: str) -> datasets.Dataset:
        """A split in the common layout (text_a, text_b; label, or idx on test)."""
        return self._hub(split) if self.folder is None else self._tsv(split)

    def describe(self) -> dict[str, Any]:
        return {}

    def _tsv(self, split: str) -> datasets.Dataset:
        task, path, test = self.task, self.folder / f"{split}.tsv", split.startswith("test")
        if not path.is_file():
            raise UsageError(f"GLUE file {path} does not exist; --data_dir must be the "
                             f"{task.folder} folder of download_glue_data.py, or leave --data_dir "
                             "out to use nyu-mll/glue")
        columns = _layout(split, (test and task.test_text_a) or task.text_a, task.text_b,
                          task.test_index, task.label)
        return read_tsv(path, columns=columns, header=task.header or test, cache_dir=self.cache_dir,
                        labels=task.tsv_labels,
                        hint=f"; is this the {task.folder} data of download_glue_data.py?")

    def _hub(self, split: str) -> datasets.Dataset:
        task, name = self.task, HUB_NAMES.get(self.task.name, self.task.name)
        try:
            ds = datasets.load_dataset("nyu-mll/glue", name, cache_dir=self.cache_dir,
                                       split=GLUE_HUB_SPLITS.get(split, split))
        except Exception as exc:
            raise UsageError(f"could not load nyu-mll/glue {name} {split} ({type(exc).__name__}: "
                             f"{str(exc)[:200]}); if offline, pass --data_dir with the GLUE TSV "
                             "files of download_glue_data.py") from None
        feature = ds.features["label"]
        if not task.is_regression and list(getattr(feature, "names", [])) != list(task.labels):
            raise UsageError(f"nyu-mll/glue {name} labels {feature.names} differ from "
                             f"{task.labels}")
        hub_a, hub_b = task.hub_columns or (task.test_text_a or task.text_a, task.text_b)
        columns = _layout(split, hub_a, hub_b, "idx", "label")
        ds = ds.select_columns(list(columns.values())).rename_columns(
            {v: k for k, v in columns.items() if k != v})
        return ds.cast_column("idx", datasets.Value("string")) if "idx" in columns else ds


def _layout(split: str, a: str | int, b: str | int | None, idx: str,
            label: str | int) -> dict[str, str | int]:
    """The common layout's columns of a split -> the source's columns."""
    own = {"idx": idx} if split.startswith("test") else {"label": label}
    return {"text_a": a, **({"text_b": b} if b is not None else {}), **own}


def task_dir(data_dir: str | Path, task: Task) -> Path:
    """``--data_dir`` is the task folder (<GLUE>/RTE); the GLUE root is accepted as well."""
    path = Path(data_dir)
    if not path.is_dir():
        raise UsageError(f"--data_dir {path} is not a directory; point it to the task folder "
                         f"written by download_glue_data.py, e.g. <GLUE>/{task.folder}")
    if not (path / "train.tsv").exists() and (path / task.folder).is_dir():
        return path / task.folder
    return path


# ---- one layout for every split -----------------------------------------------------------------
def labels_of(ds: datasets.Dataset) -> np.ndarray | None:
    """Label ids (or floats) of every example of a split, or None on a test split."""
    if "label" not in ds.column_names:
        return None
    return ds.with_format("arrow")[:].column("label").to_numpy()


def ids_of(ds: datasets.Dataset) -> list[str]:
    return ds.with_format("arrow")[:].column("idx").to_pylist()


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
        text = Hasher.hash(tok)
    text += f"|{type(tok).__name__}|{list(tok.model_input_names)}"
    return hashlib.sha256(text.encode()).hexdigest()


def _tokenize(batch: dict[str, list], indices: list[int], *, tok,
              max_length: int) -> dict[str, list]:
    enc = tok(batch["text_a"], batch.get("text_b"), truncation=True, max_length=max_length)
    out = {**model_inputs(enc), "index": list(indices)}
    if "label" in batch:
        out["labels"] = batch["label"]
    return out


def encode(tok, ds: datasets.Dataset, max_length: int,
           desc: str = "tokenizing") -> datasets.Dataset:
    """Token ids (no padding), the example's position ``index`` and its ``labels``; refuses a
    ``max_length`` that leaves no room for text beside the tokenizer's special tokens."""
    specials = tok.num_special_tokens_to_add(pair="text_b" in ds.column_names)
    if max_length <= specials:
        raise UsageError(f"--max_seq_length {max_length} leaves no room for text: the tokenizer "
                         f"adds {specials} special tokens to each input; pass --max_seq_length "
                         f"{specials + 1} or more")
    fingerprint = Hasher.hash([CACHE_VERSION, ds._fingerprint, tokenizer_identity(tok), max_length])
    return ds.map(partial(_tokenize, tok=tok, max_length=max_length), batched=True,
                  with_indices=True, remove_columns=ds.column_names, new_fingerprint=fingerprint,
                  desc=desc)


def by_length(feats: datasets.Dataset) -> torch.utils.data.Subset:
    """``feats`` ordered by sequence length (less padding)."""
    lengths = pc.list_value_length(feats.with_format("arrow")[:].column("input_ids")).to_numpy()
    return torch.utils.data.Subset(feats, np.argsort(lengths, kind="stable").tolist())


def inputs_hash(feats: datasets.Dataset) -> str:
    """sha256 of every example's token ids and segment ids, read from the Arrow columns."""
    table = feats.with_format("arrow")[:]
    h = hashlib.sha256()
    for key in ("input_ids", "token_type_ids"):
        if key in table.column_names:
            col = table.column(key)
            h.update(key.encode())
            h.update(pc.list_value_length(col).to_numpy().astype("int64").tobytes())
            h.update(pc.list_flatten(col).to_numpy().astype("int64").tobytes())
    return h.hexdigest()


class Attached(torch.utils.data.Dataset):
    """Features with another model's token ids (e.g. the teacher's, for an online teacher)
    nested under ``name``."""

    def __init__(self, feats, other, name: str) -> None:
        if len(feats) != len(other):
            raise ValueError(f"{len(feats)} features but {len(other)} of {name}")
        self.feats, self.other, self.name = feats, other, name

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.feats[i], self.name: model_inputs(self.other[i])}


class Collator:
    """Pads each batch to its longest sequence (DataCollatorWithPadding), or to ``max_length``
    with ``pad_to_max_length``; nested inputs of other models are padded with their tokenizer.
    Labels are float32 for a ``regression``, else class ids."""

    def __init__(self, tokenizer, others: dict[str, Any] | None = None,
                 max_length: int | None = None, pad_to_multiple_of: int | None = None,
                 regression: bool = False) -> None:
        padding = "max_length" if max_length else True
        self.label_dtype = torch.float32 if regression else torch.long
        self.pads = {name: DataCollatorWithPadding(tok, padding=padding, max_length=max_length,
                                                   pad_to_multiple_of=pad_to_multiple_of)
                     for name, tok in {"": tokenizer, **(others or {})}.items()}

    def __call__(self, feats: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch = dict(self.pads[""]([model_inputs(f) for f in feats]))
        batch["index"] = torch.tensor([f["index"] for f in feats])
        if "labels" in feats[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in feats], dtype=self.label_dtype)
        for name, pad in self.pads.items():
            if name:
                batch[name] = dict(pad([f[name] for f in feats]))
        return batch


def model_inputs(batch: dict[str, Any], name: str = "") -> dict[str, Any]:
    """The keyword arguments of a model's forward in a collated batch."""
    src = batch[name] if name else batch
    return {k: src[k] for k in MODEL_KEYS if k in src}


def make_loader(feats, batch_size: int, collator, shuffle_seed: int | None = None):
    """Batches in order, or shuffled by (``shuffle_seed``, epoch) only (a resumed run sees the
    same order)."""
    sampler = None if shuffle_seed is None else EpochShuffleSampler(len(feats), shuffle_seed)
    return torch.utils.data.DataLoader(feats, batch_size=batch_size, shuffle=False,
                                       collate_fn=collator, sampler=sampler)
