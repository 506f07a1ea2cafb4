"""Teacher logits computed once per example and cached on disk (``annealing_kd.common.logit_cache.store`` files).

The cache key is a hash of the teacher checkpoint's content (config and weight files), the task,
the precision the logits are computed in (the run's: fp32, or bf16/fp16 autocast with
``--bf16``/``--fp16``) and the teacher's token ids of every example. The token ids stand for the
data, the teacher's tokenizer, ``--do_lower_case`` and ``--max_seq_length`` at once: any change
gives a new key.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from annealing_kd.common.logit_cache.store import (
    FileLock,
    LogitCache,
    autocast_dtype,
    precision_of,
    stored,
)
from annealing_kd.common.training.progress import progress_bar
from annealing_kd.common.training.trainer import freeze, predict
from annealing_kd.NLP_glue_tasks.data import by_length, inputs_hash, model_inputs

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "annealing-kd" / "teacher_logits"


def model_identity(path: str, cache_dir: str | None = None) -> str:
    """sha256 of a checkpoint's config.json and weight files (a local folder or a hub id)."""
    folder = Path(path)
    if not folder.is_dir():
        from transformers.utils import cached_file

        folder = Path(cached_file(path, "config.json", cache_dir=cache_dir)).parent
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.name == "config.json" or f.suffix in WEIGHT_SUFFIXES:
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):  # noqa: B023
                    h.update(chunk)
    return h.hexdigest()


def cache_key(identity: str, task: str, precision: str, feats: Any) -> str:
    return hashlib.sha256(f"{identity}|{task}|{precision}|{inputs_hash(feats)}".encode()).hexdigest()[:32]


def cached_logits(acc, *, load_model: Callable[[], torch.nn.Module], identity: str, task: str,
                  feats: Any, collator, batch_size: int, cache_dir: str | Path,
                  tag: str, overwrite: bool = False) -> torch.Tensor:
    """Logits (N, C) of a frozen model on ``feats``, in order, from the cache or computed once
    in the run's precision (in DDP each process computes its shard; the main process writes the
    file). One process holds the file's lock while it computes: a concurrent run waits, then
    reads."""
    precision = precision_of(acc)
    key = cache_key(identity, task, precision, feats)
    path = Path(cache_dir) / f"{key}.logits"
    cache = LogitCache(cache_dir, say=acc.print)

    def cached() -> torch.Tensor | None:
        table = None if overwrite else cache.read(path, key, precision)
        if table is None or table.size(0) != len(feats) or not torch.isfinite(table).all():
            return None
        acc.print(f"{tag}: reusing cached logits {path}")
        return table.float()

    logits = cached()
    if logits is not None:
        return logits
    lock = FileLock(path) if acc.num_processes == 1 else None
    if lock is not None:
        lock.acquire(acc.print)
    try:
        logits = None if lock is None or overwrite else cached()  # written while we waited?
        if logits is None:
            if lock is not None:
                cache.clear_stale(path)
            logits = _compute(acc, load_model, feats, collator, batch_size, precision, tag)
            if acc.is_main_process:
                cache.write(path, key, precision, logits)
            acc.wait_for_everyone()
            acc.print(f"{tag}: cached in {path}")
        return logits
    finally:
        if lock is not None:
            lock.release()


def _compute(acc, load_model, feats, collator, batch_size: int, precision: str,
             tag: str) -> torch.Tensor:
    """The frozen model's logits of every example, in order, in ``precision``."""
    from torch.utils.data import DataLoader

    tic = time.perf_counter()
    model = freeze(load_model()).to(acc.device)
    ordered = by_length(feats)  # less padding; "index" keeps the order
    loader = acc.prepare(DataLoader(ordered, batch_size=batch_size, shuffle=False, collate_fn=collator))
    amp = autocast_dtype(precision)
    with torch.autocast(acc.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        logits, index = predict(acc, model, progress_bar(loader, tag, acc.is_main_process),
                                lambda m, b: m(**model_inputs(b)).logits, lambda b: b["index"])
    out = torch.empty(len(feats), logits.size(1))
    out[index] = logits
    acc.print(f"{tag}: logits of {len(feats)} examples computed in {precision} in "
              f"{time.perf_counter() - tic:.1f}s")
    del model
    return stored(out, precision)
