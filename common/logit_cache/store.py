"""Frozen-teacher logits on disk, shared by every run that needs them (both CLIs).

A cache folder holds one file per key: the logits (rows x classes) of one frozen model on one
stream of inputs, in the precision the key names (fp32, or bf16/fp16 when the run computes under
that autocast). The image CLI keys one file per training epoch (its augmented batches depend on
(data, augmentation recipe, seed, epoch) only) and one per evaluation split; the text CLI one per
split (its inputs are not augmented).

A file is a 4096-byte JSON header (key, shape, dtype, sha256 of the data) and the raw rows,
read as a memory map. It is written to a temporary name and renamed (``annealing_kd.common.run_folder.checkpoint.
atomic_write``): no run ever reads a half-written file. A file whose header, size or checksum is
wrong is computed again, with one warning line. A per-file lock (``fcntl.flock`` on
``.<name>.lock``) makes concurrent runs compute each file once: the others wait for it, then read.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from annealing_kd.common.errors import UsageError, setting
from annealing_kd.common.run_folder.checkpoint import WriteFailed, atomic_write

HEADER = 4096
MAGIC = "annealing-kd teacher logits"
SUFFIX = ".logits"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_NUMPY = {"fp32": np.float32, "bf16": np.int16, "fp16": np.float16}  # bf16: its raw 16 bits


def written_by_a_cache(path: Path) -> bool:
    """Whether a file starts with a cache file's header (the cache replaces only its own files,
    a damaged one included)."""
    try:
        with open(path, "rb") as f:
            return MAGIC.encode() in f.read(HEADER)
    except OSError:
        return False


def written_by_this_cache(path: Path) -> bool:
    """Whether the cache wrote ``path``: a file with its header, or the empty lock file
    ``.<name>.logits.lock`` of one (removable with the folder of a run that used the cache)."""
    if path.name.startswith(".") and path.name.endswith(SUFFIX + ".lock"):
        return path.is_file() and path.stat().st_size == 0
    return path.name.endswith(SUFFIX) and written_by_a_cache(path)


def precision_of(acc) -> str:
    """The precision teacher logits are computed (and stored) in: the run's own. ``fp32`` for a
    full-precision run, ``bf16``/``fp16`` when it trains under that autocast (``--amp``, GLUE
    ``--bf16``/``--fp16``)."""
    mixed = str(getattr(acc, "mixed_precision", "no") or "no")
    if mixed not in ("no", "bf16", "fp16"):
        raise ValueError(f"no teacher-logit precision for mixed precision {mixed!r}")
    return "fp32" if mixed == "no" else mixed


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision (None: no autocast)."""
    return None if precision == "fp32" else DTYPES[precision]


def digest(parts: Mapping[str, Any]) -> str:
    """A short stable hash of a key's parts (JSON, sorted keys)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def tensors_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a state dict: names, dtypes, shapes and bytes of every tensor."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(_bytes(t.view(torch.int16) if t.dtype == torch.bfloat16 else t))
    return h.hexdigest()


def _bytes(t: torch.Tensor) -> memoryview:
    return memoryview(t.numpy().reshape(-1).view(np.uint8))


def stored(logits: torch.Tensor, precision: str) -> torch.Tensor:
    """Logits as the cache holds them (rounded to the key's dtype), back in float32: what a live
    run must use too, so that cached and live targets are the same bits."""
    return logits.to(DTYPES[precision]).float()


class FileLock:
    """An exclusive ``flock`` on ``.<name>.lock`` beside ``path``: held by one process at a time,
    released when that process closes it or dies."""

    def __init__(self, path: Path) -> None:
        self.path = path.parent / f".{path.name}.lock"
        self.fd: int | None = None

    def acquire(self, say: Callable[[str], None] | None = None) -> float:
        """Take the lock, waiting if another process holds it; returns the seconds waited."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return 0.0
        except BlockingIOError:
            if say:
                say(f"logit cache: another run is computing {self.path.parent.name}/"
                    f"{self.path.name[1:-5]}; waiting for it")
            tic = time.perf_counter()
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            return time.perf_counter() - tic

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class LogitCache:
    """One cache folder: reading, writing, locking, the size limit and what a run did with it
    (:attr:`stats`, written to results.json)."""

    def __init__(self, root: str | os.PathLike, max_gb: float | None = None,
                 say: Callable[[str], None] = print) -> None:
        self.root, self.max_gb, self.say = Path(root), max_gb, say
        self.warned: set[Path] = set()
        self.full = False
        self.stats: dict[str, Any] = {"dir": str(self.root), "max_gb": max_gb, "streams": {}}

    # ---- files ----------------------------------------------------------------------------
    def read(self, path: Path, key: str, precision: str) -> torch.Tensor | None:
        """The rows of ``path`` (a memory map; bf16/fp16 as stored), or None when it is missing
        or damaged (a damaged file is reported once and will be computed again)."""
        try:
            f = open(path, "rb")  # one open file for all that follows: a file renamed over
        except FileNotFoundError:  # this one meanwhile is not mixed with it
            return None
        with f:
            try:
                size = os.fstat(f.fileno()).st_size
                meta = json.loads(f.read(HEADER).rstrip(b" \n\0"))
            except (OSError, ValueError) as exc:
                return self._damaged(path, f"unreadable header ({type(exc).__name__})")
            if not isinstance(meta, dict) or meta.get("magic") != MAGIC:
                return self._damaged(path, "not a logit file")
            if meta.get("key") != key or meta.get("precision") != precision:
                return self._damaged(path, "written for another key")
            try:
                rows, classes, digest_ = int(meta["rows"]), int(meta["classes"]), meta["sha256"]
            except (KeyError, TypeError, ValueError):
                return self._damaged(path, "incomplete header")
            dtype = np.dtype(_NUMPY[precision])
            expected = HEADER + rows * classes * dtype.itemsize
            if size != expected:
                return self._damaged(path, f"{size} bytes, expected {expected}")
            array = np.memmap(f, dtype=dtype, mode="c", offset=HEADER, shape=(rows, classes))
        if hashlib.sha256(array.reshape(-1).view(np.uint8)).hexdigest() != digest_:
            return self._damaged(path, "checksum mismatch")
        table = torch.from_numpy(array)
        return table.view(torch.bfloat16) if precision == "bf16" else table

    def _damaged(self, path: Path, why: str) -> None:
        if path not in self.warned:
            self.warned.add(path)
            self.say(f"warning: cached teacher logits {path} are damaged ({why}); computing "
                     "them again")
        return None

    def write(self, path: Path, key: str, precision: str, logits: torch.Tensor) -> int:
        """Write ``logits`` (rows x classes) under ``key``: to a temporary name, then renamed.
        Returns the bytes written."""
        t = logits.detach().to("cpu", DTYPES[precision]).contiguous()
        raw = t.view(torch.int16) if precision == "bf16" else t
        data = _bytes(raw)
        meta = {"magic": MAGIC, "key": key, "precision": precision, "rows": t.size(0),
                "classes": t.size(1), "sha256": hashlib.sha256(data).hexdigest()}
        head = json.dumps(meta).encode().ljust(HEADER - 1) + b"\n"

        def dump(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(head)
                f.write(data)

        if path.exists() and not written_by_a_cache(path):
            raise UsageError(f"{path} was not written by the teacher-logit cache; move it away or "
                             f"pass another {setting('logits_cache_dir')}")
        try:
            atomic_write(path, dump)
        except WriteFailed as exc:
            raise WriteFailed(exc.path, exc.reason, exc.errno,
                              where=setting("logits_cache_dir")) from None
        return HEADER + len(data)

    def clear_stale(self, path: Path) -> None:
        """Remove temporary files a killed writer of ``path`` left (call with its lock held)."""
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            tmp.unlink(missing_ok=True)

    # ---- disk --------------------------------------------------------------------------------
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob(f"*{SUFFIX}") if p.is_file())

    def room_for(self, nbytes: int) -> bool:
        """Whether a new file of ``nbytes`` fits under ``--logits-cache-max-gb``; past the limit
        the run computes live and says so once."""
        if self.max_gb is None:
            return True
        if not self.full:
            used = self.size_bytes()
            if used + nbytes > self.max_gb * 2**30:
                self.full = True
                self.say(f"logit cache {self.root} holds {used / 2**30:.2f} GB; another file "
                         f"({nbytes / 2**20:.1f} MB) would pass the limit of {self.max_gb:g} GB: "
                         "from now on the teacher runs live (files already cached are still read)")
        return not self.full

    # ---- one file, computed once -------------------------------------------------------------
    def folder(self, parts: Mapping[str, Any]) -> Path:
        """``<root>/<digest of parts>/``, with ``key.json`` saying what the key is."""
        folder = self.root / digest(parts)
        if not (folder / "key.json").is_file():
            atomic_write(folder / "key.json",
                         lambda tmp: Path(tmp).write_text(json.dumps(parts, indent=1,
                                                                     default=str) + "\n"))
        return folder

    def stream(self, name: str, key: str, own: bool = False) -> dict[str, Any]:
        """The counters of one stream of this run (results.json ``logit_cache.streams``): files
        read, written, or computed live without writing (past the size limit), and seconds.
        ``own``: the logits of the model this run trains (its evaluation, not teacher time)."""
        return self.stats["streams"].setdefault(name, {
            "key": key, "own": own, "files_read": 0, "files_written": 0, "files_live": 0,
            "live_seconds": 0.0, "read_seconds": 0.0, "wait_seconds": 0.0, "bytes_read": 0,
            "bytes_written": 0})

    def get(self, path: Path, key: str, precision: str, compute: Callable[[], torch.Tensor],
            stream: dict[str, Any]) -> torch.Tensor:
        """float32 logits of one file: read when cached, else computed once (under the file's
        lock, so that concurrent runs wait and read) and written if there is room. ``stream``:
        the counters to add to (:meth:`stream`)."""
        tic = time.perf_counter()
        table = self.read(path, key, precision)
        if table is None:
            lock = FileLock(path)
            stream["wait_seconds"] += lock.acquire(self.say)
            try:
                tic = time.perf_counter()
                table = self.read(path, key, precision)  # written while we waited?
                if table is None:
                    return self._compute(path, key, precision, compute, stream)
            finally:
                lock.release()
        stream["files_read"] += 1
        stream["bytes_read"] += HEADER + table.numel() * table.element_size()
        stream["read_seconds"] += time.perf_counter() - tic
        return table.float()

    def _compute(self, path: Path, key: str, precision: str, compute: Callable[[], torch.Tensor],
                 stream: dict[str, Any]) -> torch.Tensor:
        """Compute a file's logits (its lock held) and write them if there is room."""
        self.clear_stale(path)
        tic = time.perf_counter()
        logits = stored(compute(), precision)
        stream["live_seconds"] += time.perf_counter() - tic
        if self.room_for(nbytes(precision, *logits.shape)):
            stream["bytes_written"] += self.write(path, key, precision, logits)
            stream["files_written"] += 1
        else:
            stream["files_live"] += 1
        return logits


def nbytes(precision: str, rows: int, classes: int) -> int:
    """The size of a cache file of ``rows`` x ``classes`` logits."""
    return HEADER + rows * classes * DTYPES[precision].itemsize
