"""The text CLI's teacher logits, computed once per example and cached on disk (one file
``<key>.logits`` per split). The key's facts: the teacher checkpoint's content (config and weight
files), the teacher's token ids of every example (they stand for the data, the tokenizer,
``--do_lower_case`` and ``--max_seq_length`` at once), the precision and the task.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..common.logit_cache import store
from ..common.run_folder import file_sha256
from ..common.training.frozen_teacher import amp
from ..common.training.progress import progress_bar
from ..common.training.trainer import frozen_logits, predict
from .data import by_length, inputs_hash, make_loader, model_inputs

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
    files = [f for f in sorted(folder.iterdir())
             if f.name == "config.json" or f.suffix in WEIGHT_SUFFIXES]
    return hashlib.sha256("".join(f"{f.name}\0{file_sha256(f)}\n" for f in files).encode()
                          ).hexdigest()


def cache_key(identity: str, task: str, precision: str, feats: Any) -> str:
    return store.digest(store.key_parts("eval", identity, inputs_hash(feats), precision, task=task))


def cached_logits(acc, *, load_model: Callable[[], torch.nn.Module], identity: str, task: str,
                  feats: Any, collator, batch_size: int, cache_dir: str | Path,
                  tag: str, overwrite: bool = False) -> torch.Tensor:
    """Logits (N, C) of a frozen model on ``feats``, in order, read or computed once in the run's
    precision (in DDP each process computes its shard, unlocked; the main process writes)."""
    precision = store.precision_of(acc)
    key = cache_key(identity, task, precision, feats)
    path = Path(cache_dir) / f"{key}.logits"
    cache = store.LogitCache(cache_dir, say=acc.print)
    stream = cache.stream(tag, key)

    def compute() -> torch.Tensor:
        tic = time.perf_counter()
        model = load_model().to(acc.device)
        targets = frozen_logits(model, lambda m, b: m(**model_inputs(b)).logits)
        loader = acc.prepare(make_loader(by_length(feats), batch_size, collator))  # less padding
        with amp(acc.device.type, None if precision == "fp32" else store.DTYPES[precision]):
            logits, index = predict(acc, model, progress_bar(loader, tag, acc.is_main_process),
                                    lambda m, b: targets(b), lambda b: b["index"])
        acc.print(f"{tag}: logits of {len(feats)} examples computed in {precision} in "
                  f"{time.perf_counter() - tic:.1f}s")
        return logits[index.argsort()]  # back in the examples' order

    logits = cache.get(path, key, precision, compute, stream, fresh=overwrite,
                       lock=acc.num_processes == 1, write=acc.is_main_process)
    if stream["files_read"]:
        acc.print(f"{tag}: reusing cached logits {path}")
    else:
        acc.wait_for_everyone()
        acc.print(f"{tag}: cached in {path}")
    return logits
