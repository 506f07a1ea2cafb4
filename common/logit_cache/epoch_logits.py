"""A frozen teacher's targets served from the logit cache, one file per training epoch.

The Trainer calls :meth:`EpochLogits.set_epoch` at the start of every epoch (as it does for the
loader). When the epoch's file is cached, each batch's rows are looked up by the batch's dataset
indices and the teacher does not run. Otherwise this run takes the file's lock (another run
computing the same epoch is waited for, then read), the live teacher computes every batch, the rows
are kept, and the file is written once every row of the split has been seen: at the epoch's end.
An epoch that stops early (``--max_steps``, a kill) is never written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from annealing_kd.common.logit_cache.store import DTYPES, FileLock, LogitCache, nbytes, stored


class _Clock:
    """Seconds spent in a piece of work: wall time on the CPU, CUDA events on a GPU (no sync per
    batch); :meth:`total` syncs once."""

    def __init__(self) -> None:
        self.seconds, self.events = 0.0, []

    def start(self, device: torch.device) -> Any:
        if device.type == "cuda":
            begin = torch.cuda.Event(enable_timing=True)
            begin.record()
            return begin
        return time.perf_counter()

    def stop(self, begin: Any) -> None:
        if isinstance(begin, float):
            self.seconds += time.perf_counter() - begin
        else:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.events.append((begin, end))

    def total(self) -> float:
        if self.events:
            self.events[-1][1].synchronize()
            self.seconds += sum(b.elapsed_time(e) for b, e in self.events) / 1000
            self.events = []
        seconds, self.seconds = self.seconds, 0.0
        return seconds


class EpochLogits:
    """``Batches.teacher_logits`` of a cached run: ``live(batch)`` is the frozen teacher,
    ``index(batch)`` the batch's positions in the split (``rows`` of them, ``classes`` logits
    each); ``parts`` is the key of the stream (everything but the epoch)."""

    def __init__(self, cache: LogitCache, parts: dict[str, Any], live: Callable[[Any], torch.Tensor],
                 index: Callable[[Any], torch.Tensor], rows: int, classes: int, precision: str,
                 name: str = "teacher train") -> None:
        self.cache, self.live, self.index = cache, live, index
        self.rows, self.classes, self.precision = rows, classes, precision
        self.folder = cache.folder({**parts, "precision": precision})
        self.stats = cache.stream(name, self.folder.name)
        self.mode = "off"  # read | write | live | done (written) | off (between epochs)
        self.table: torch.Tensor | None = None
        self.seen: torch.Tensor | None = None
        self.filled = 0
        self.lock: FileLock | None = None
        self.clock = _Clock()
        self.epoch = -1

    @property
    def epoch_bytes(self) -> int:
        return nbytes(self.precision, self.rows, self.classes)

    def path(self, epoch: int):
        return self.folder / f"epoch-{epoch + 1:04d}.logits"

    def key(self, epoch: int) -> str:
        return f"{self.folder.name}/epoch-{epoch + 1}"

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (0-based): read its file, or take its lock to write it."""
        self.close()
        self.epoch, path, key = epoch, self.path(epoch), self.key(epoch)
        tic = time.perf_counter()
        table = self.cache.read(path, key, self.precision)
        if table is None and self.cache.room_for(self.epoch_bytes):
            lock = FileLock(path)
            self.stats["wait_seconds"] += lock.acquire(self.cache.say)
            tic = time.perf_counter()
            table = self.cache.read(path, key, self.precision)  # written while we waited?
            if table is None:
                self.cache.clear_stale(path)
                self.lock, self.mode, self.table, self.seen = lock, "write", None, None
                self.filled = 0
                return
            lock.release()
        if table is None:
            self.mode = "live"
            return
        self.mode, self.table = "read", table
        self.stats["read_seconds"] += time.perf_counter() - tic

    def __call__(self, batch) -> torch.Tensor:
        idx = self.index(batch)
        if self.mode == "read":
            begin = self.clock.start(idx.device)
            if self.table.device != idx.device:
                self.table = self.table.to(idx.device)
            out = self.table[idx].float()
            self.clock.stop(begin)
            return out
        begin = self.clock.start(idx.device)
        logits = stored(self.live(batch), self.precision)
        self.clock.stop(begin)
        if self.mode == "write":
            self._keep(idx, logits)
        return logits

    def _keep(self, idx: torch.Tensor, logits: torch.Tensor) -> None:
        if self.table is None:
            if logits.size(1) != self.classes:
                raise ValueError(f"the teacher gives {logits.size(1)} logits, the key says "
                                 f"{self.classes}")
            self.table = torch.empty(self.rows, self.classes, dtype=DTYPES[self.precision],
                                     device=logits.device)
            self.seen = torch.zeros(self.rows, dtype=torch.bool, device=logits.device)
        idx = idx.to(self.table.device)
        self.table[idx] = logits.to(self.table.dtype)
        self.seen[idx] = True
        self.filled += len(idx)
        if self.filled >= self.rows:
            self._commit()

    def _commit(self) -> None:
        """Write the epoch's file once every row was seen (the batches of an epoch are a
        permutation of the split), then let other runs read it."""
        if bool(self.seen.all()):
            self.stats["bytes_written"] += self.cache.write(self.path(self.epoch),
                                                            self.key(self.epoch), self.precision,
                                                            self.table)
            self.stats["files_written"] += 1
        else:
            self.cache.say(f"logit cache: the batches of epoch {self.epoch + 1} did not cover "
                           "the split once; that epoch is not cached")
        self._account()
        self.mode = "done"  # anything after the last row (none expected) runs live
        self.table = self.seen = None
        self.lock.release()
        self.lock = None

    def _account(self) -> None:
        """Add the epoch's seconds and file to the counters (an unfinished write: seconds only)."""
        self.stats["read_seconds" if self.mode == "read" else "live_seconds"] += self.clock.total()
        if self.mode == "live":
            self.stats["files_live"] += 1
        elif self.mode == "read":
            self.stats["files_read"] += 1
            self.stats["bytes_read"] += self.epoch_bytes

    def close(self) -> None:
        """End the current epoch: an unfinished write is dropped and its lock released."""
        if self.mode != "off":
            self._account()
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        self.mode, self.table, self.seen = "off", None, None
