"""Teacher logits computed once per example and cached on disk.

The cache key is a hash of the teacher checkpoint's content (config and weight files), the task,
the precision the logits are computed in (fp32 on the CPU, bf16 or fp16 autocast on a GPU) and the
teacher's token ids of every example. The token ids stand for the data, the teacher's
tokenizer, ``--do_lower_case`` and ``--max_seq_length`` at once: any change gives a new key.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from transformers.utils import cached_file

from common.checkpoint import WriteFailed, atomic_write
from common.errors import UsageError
from common.progress import progress_bar
from common.trainer import freeze, predict
from NLP_glue_tasks.data import by_length, inputs_hash, model_inputs

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "annealing-kd" / "teacher_logits"


def model_identity(path: str, cache_dir: str | None = None) -> str:
    """sha256 of a checkpoint's config.json and weight files (a local folder or a hub id)."""
    folder = Path(path)
    if not folder.is_dir():
        folder = Path(cached_file(path, "config.json", cache_dir=cache_dir)).parent
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.name == "config.json" or f.suffix in WEIGHT_SUFFIXES:
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):  # noqa: B023
                    h.update(chunk)
    return h.hexdigest()


def logit_precision(device: torch.device) -> str:
    """What the teacher's logits are computed in: fp32 on the CPU; bf16 autocast on a GPU that
    supports it, else fp16."""
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def cache_key(identity: str, task: str, precision: str, feats: Any) -> str:
    return hashlib.sha256(f"{identity}|{task}|{precision}|{inputs_hash(feats)}".encode()).hexdigest()[:32]


def write_cache(path: Path, write) -> None:
    """Write one cache file, recorded in the cache folder's manifest; a file there that the cache
    did not write is never overwritten."""
    from common.manifest import Manifest

    try:
        manifest = Manifest.open(path.parent, "teacher-logit-cache")
        if path.exists() and not manifest.records(path):
            raise UsageError(f"cached logits {path} are unreadable and were not written by this "
                             "cache (not in its manifest); delete the file or pass another "
                             "--logits_cache_dir")
        atomic_write(path, write, manifest)
    except WriteFailed as exc:
        raise WriteFailed(exc.path, exc.reason, exc.errno, where="--logits_cache_dir") from None
    except OSError as exc:
        raise WriteFailed(path, exc.strerror or str(exc), exc.errno,
                          where="--logits_cache_dir") from None


def cached_logits(acc, *, load_model: Callable[[], torch.nn.Module], identity: str, task: str,
                  feats: Any, collator, batch_size: int, cache_dir: str | Path,
                  tag: str, overwrite: bool = False) -> torch.Tensor:
    """Logits (N, C) of a frozen model on ``feats``, in order, from the cache or computed once
    (in DDP each process computes its shard; the main process writes the file)."""
    precision = logit_precision(acc.device)
    path = Path(cache_dir) / f"{cache_key(identity, task, precision, feats)}.safetensors"
    if path.is_file() and not overwrite:
        try:
            logits = load_file(str(path))["logits"]
        except Exception as exc:  # truncated or overwritten: computed again below
            acc.print(f"{tag}: cached logits {path} are unreadable ({type(exc).__name__}); "
                      "computing them again")
            logits = None
        if logits is not None and logits.size(0) == len(feats) and torch.isfinite(logits).all():
            acc.print(f"{tag}: reusing cached logits {path}")
            return logits
    tic = time.perf_counter()
    model = freeze(load_model()).to(acc.device)
    ordered = by_length(feats)  # less padding; "index" keeps the order
    loader = acc.prepare(DataLoader(ordered, batch_size=batch_size, shuffle=False, collate_fn=collator))
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    with torch.autocast(acc.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        logits, index = predict(acc, model, progress_bar(loader, tag, acc.is_main_process),
                                lambda m, b: m(**model_inputs(b)).logits, lambda b: b["index"])
    out = torch.empty(len(feats), logits.size(1))
    out[index] = logits
    if acc.is_main_process:
        write_cache(path, lambda tmp: save_file({"logits": out.contiguous()}, tmp,
                                                metadata={"tag": tag, "task": task,
                                                          "precision": precision}))
    acc.wait_for_everyone()
    acc.print(f"{tag}: logits of {len(feats)} examples computed in "
              f"{time.perf_counter() - tic:.1f}s, cached in {path}")
    del model
    return out

