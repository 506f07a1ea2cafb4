"""Frozen-teacher logits on disk, shared by every run that needs them (both CLIs).

A file holds one frozen model's logits (rows x classes) on one stream of inputs, in the key's
precision: a 4096-byte JSON header (key, shape, dtype, sha256 of the data), then the raw rows,
read as a memory map. It is written aside and renamed; a file whose header, size or checksum is
wrong is computed again, with one warning line. :meth:`LogitCache.claim` (read, lock, read
again, compute, write) makes concurrent runs compute each file once.
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

from ..errors import UsageError, setting
from ..run_folder import WriteFailed, atomic_write
from ..run_folder.manifest import HEADER, MAGIC, SUFFIX, written_by_this_cache

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_NUMPY = {"fp32": np.float32, "bf16": np.int16, "fp16": np.float16}  # bf16: its raw 16 bits


def precision_of(acc) -> str:
    """The run's precision, its teacher logits' too: ``fp32``, or ``bf16``/``fp16`` (autocast)."""
    mixed = str(getattr(acc, "mixed_precision", "no") or "no")
    if mixed not in ("no", "bf16", "fp16"):
        raise ValueError(f"no teacher-logit precision for mixed precision {mixed!r}")
    return "fp32" if mixed == "no" else mixed


def key_parts(what: str, teacher: str, data: str, precision: str, **how: Any) -> dict[str, Any]:
    """The one key scheme: which logits (``what``), the frozen model's identity, the data's, the
    precision and whatever else decides the logits (``how``)."""
    return {"what": what, "teacher": teacher, "data": data, "precision": precision, **how}


def digest(parts: Mapping[str, Any]) -> str:
    """A short stable hash of a key's parts (JSON, sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _bytes(t: torch.Tensor) -> memoryview:
    """The raw bytes of a CPU tensor (bf16: its 16 bits)."""
    t = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
    return memoryview(t.numpy().reshape(-1).view(np.uint8))


def tensors_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a state dict: names, dtypes, shapes and bytes of every tensor."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(_bytes(t))
    return h.hexdigest()


def stored(logits: torch.Tensor, precision: str) -> torch.Tensor:
    """Logits rounded to the key's dtype, back in float32: what a live run uses too."""
    return logits.to(DTYPES[precision]).float()


def nbytes(precision: str, rows: int, classes: int) -> int:
    """The size of a cache file of ``rows`` x ``classes`` logits."""
    return HEADER + rows * classes * DTYPES[precision].itemsize


class FileLock:
    """An exclusive ``flock`` on ``.<name>.lock`` beside ``path``, released on close or death."""

    def __init__(self, path: Path) -> None:
        self.path, self.fd = path.parent / f".{path.name}.lock", None

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
    """One cache folder: its files, locks, size limit and what a run did with it (``stats``)."""

    def __init__(self, root: str | os.PathLike, max_gb: float | None = None,
                 say: Callable[[str], None] = print) -> None:
        self.root, self.max_gb, self.say = Path(root), max_gb, say
        self.warned: set[Path] = set()
        self.full = False  # past max_gb
        self.stats: dict[str, Any] = {"dir": str(self.root), "max_gb": max_gb, "streams": {}}

    def read(self, path: Path, key: str, precision: str) -> torch.Tensor | None:
        """The rows of ``path`` (a memory map, as stored), or None when missing or damaged."""
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
            expected = nbytes(precision, rows, classes)
            if size != expected:
                return self._damaged(path, f"{size} bytes, expected {expected}")
            array = np.memmap(f, dtype=np.dtype(_NUMPY[precision]), mode="c", offset=HEADER,
                              shape=(rows, classes))
        if hashlib.sha256(array.reshape(-1).view(np.uint8)).hexdigest() != digest_:
            return self._damaged(path, "checksum mismatch")
        table = torch.from_numpy(array)
        return table.view(torch.bfloat16) if precision == "bf16" else table

    def _damaged(self, path: Path, why: str) -> None:
        if path not in self.warned:
            self.warned.add(path)
            self.say(f"warning: cached teacher logits {path} are damaged ({why}); computing "
                     "them again")

    def write(self, path: Path, key: str, precision: str, logits: torch.Tensor) -> int:
        """Write ``logits`` under ``key`` (a temporary name, then renamed); the bytes written."""
        t = logits.detach().to("cpu", DTYPES[precision]).contiguous()
        data = _bytes(t)
        meta = {"magic": MAGIC, "key": key, "precision": precision, "rows": t.size(0),
                "classes": t.size(1), "sha256": hashlib.sha256(data).hexdigest()}
        head = json.dumps(meta).encode().ljust(HEADER - 1) + b"\n"
        if path.exists() and not written_by_this_cache(path):
            raise UsageError(f"{path} was not written by the teacher-logit cache; move it away or "
                             f"pass another {setting('logits_cache_dir')}")

        def dump(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.writelines((head, data))

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

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob(f"*{SUFFIX}") if p.is_file())

    def room_for(self, nbytes: int) -> bool:
        """Whether a new file fits under ``--logits-cache-max-gb`` (past it: said once, live)."""
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

    def folder(self, parts: Mapping[str, Any]) -> Path:
        """``<root>/<digest of parts>/``, with ``key.json`` saying what the key is."""
        folder = self.root / digest(parts)
        if not (folder / "key.json").is_file():
            text = json.dumps(parts, indent=1, default=str) + "\n"
            atomic_write(folder / "key.json", lambda tmp: Path(tmp).write_text(text))
        return folder

    def stream(self, name: str, key: str, own: bool = False) -> dict[str, Any]:
        """The counters of one stream (results.json ``logit_cache.streams``)."""
        return self.stats["streams"].setdefault(name, {
            "key": key, "own": own, "files_read": 0, "files_written": 0, "files_live": 0,
            "live_seconds": 0.0, "read_seconds": 0.0, "wait_seconds": 0.0, "bytes_read": 0,
            "bytes_written": 0})

    def claim(self, path: Path, key: str, precision: str, stream: dict[str, Any], *,
              fresh: bool = False, lock: bool = True,
              room: int | None = None) -> tuple[torch.Tensor | None, FileLock | None]:
        """The one procedure: read; on a miss take the file's lock and read again (another run
        may have written it meanwhile). ``(rows, None)`` on a hit; ``(None, lock)`` on a miss,
        the lock held (compute, write, release); ``(None, None)`` when not locking (``lock``
        False, or no ``room`` for that many bytes). ``fresh``: never read."""
        tic = time.perf_counter()
        table = None if fresh else self.read(path, key, precision)
        if table is None and lock and (room is None or self.room_for(room)):
            held = FileLock(path)
            stream["wait_seconds"] += held.acquire(self.say)
            tic = time.perf_counter()
            table = None if fresh else self.read(path, key, precision)
            if table is None:
                self.clear_stale(path)
                return None, held
            held.release()
        if table is not None:
            stream["read_seconds"] += time.perf_counter() - tic
        return table, None

    def get(self, path: Path, key: str, precision: str, compute: Callable[[], torch.Tensor],
            stream: dict[str, Any], *, fresh: bool = False, lock: bool = True,
            write: bool = True) -> torch.Tensor:
        """float32 logits of one file: read, else computed once (:meth:`claim`) and written
        if ``write`` and there is room."""
        table, held = self.claim(path, key, precision, stream, fresh=fresh, lock=lock)
        if table is not None:
            stream["files_read"] += 1
            stream["bytes_read"] += nbytes(precision, *table.shape)
            return table.float()
        try:
            tic = time.perf_counter()
            logits = stored(compute(), precision)
            stream["live_seconds"] += time.perf_counter() - tic
            if write and self.room_for(nbytes(precision, *logits.shape)):
                stream["bytes_written"] += self.write(path, key, precision, logits)
                stream["files_written"] += 1
            else:
                stream["files_live"] += 1
            return logits
        finally:
            if held is not None:
                held.release()

    def summary(self) -> str:
        """One line: what this run read, wrote and computed, and the frozen models' seconds
        (a stream marked ``own`` is the trained model's)."""
        streams = self.stats["streams"].values()
        total = {k: sum(x[k] for x in streams) for k in (
            "files_read", "files_written", "files_live", "bytes_read", "bytes_written",
            "read_seconds")}
        own = sum(x["live_seconds"] for x in streams if x.get("own"))
        teacher = sum(x["live_seconds"] for x in streams if not x.get("own"))
        return (f"logit cache {self.root}: {total['files_read']} files read "
                f"({size(total['bytes_read'])}, {total['read_seconds']:.1f}s), "
                f"{total['files_written']} written ({size(total['bytes_written'])}), "
                f"{total['files_live']} computed live past the size limit; teacher "
                f"{teacher:.1f}s" + (f", the trained model's own test logits {own:.1f}s" if own
                                     else "") + f"; the folder holds {size(self.size_bytes())}")


def size(nbytes: float) -> str:
    """Bytes for people: 512 B, 1.5 KB, 20.0 MB, 4.00 GB."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}" if unit == "GB" else f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} B"
