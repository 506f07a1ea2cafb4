"""A frozen teacher's targets served from the logit cache, one file per training epoch.

At each epoch's start (:meth:`EpochLogits.set_epoch`) a cached epoch is read, its rows looked up
by the batches' dataset indices, and the teacher does not run; else the run claims the file, the
live teacher computes every batch, and the file is written once every row of the split was seen.
An epoch that stops early (``--max_steps``, a kill) is never written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .store import DTYPES, LogitCache, nbytes, stored


class _Clock:
    """Seconds of work: wall time on the CPU, CUDA events on a GPU (one sync, in :meth:`total`)."""

    def __init__(self) -> None:
        self.seconds, self.events = 0.0, []

    @contextmanager
    def timed(self, device: torch.device) -> Iterator[None]:
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            yield
            end.record()
            self.events.append((begin, end))
        else:
            tic = time.perf_counter()
            yield
            self.seconds += time.perf_counter() - tic

    def total(self) -> float:
        if self.events:
            self.events[-1][1].synchronize()
            self.seconds += sum(b.elapsed_time(e) for b, e in self.events) / 1000
        seconds, self.seconds, self.events = self.seconds, 0.0, []
        return seconds


class EpochLogits:
    """``BatchReader.teacher_logits`` of a cached run: ``live(batch)`` is the frozen teacher,
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
        self.table = self.seen = self.lock = None
        self.filled, self.epoch = 0, -1
        self.clock = _Clock()
        self.epoch_bytes = nbytes(precision, rows, classes)

    def path(self, epoch: int):
        return self.folder / f"epoch-{epoch + 1:04d}.logits"

    def key(self, epoch: int) -> str:
        return f"{self.folder.name}/epoch-{epoch + 1}"

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (0-based): read its file, or claim it to write it."""
        self.close()
        self.epoch, self.filled = epoch, 0
        self.table, self.lock = self.cache.claim(self.path(epoch), self.key(epoch), self.precision,
                                                 self.stats, room=self.epoch_bytes)
        self.mode = "read" if self.table is not None else "write" if self.lock else "live"

    def __call__(self, batch) -> torch.Tensor:
        idx = self.index(batch)
        with self.clock.timed(idx.device):
            if self.mode == "read":
                self.table = self.table.to(idx.device)
                return self.table[idx].float()
            logits = stored(self.live(batch), self.precision)
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
        """Write the epoch's file once every row was seen, then let other runs read it."""
        if bool(self.seen.all()):
            self.stats["bytes_written"] += self.cache.write(self.path(self.epoch),
                                                            self.key(self.epoch), self.precision,
                                                            self.table)
            self.stats["files_written"] += 1
        else:
            self.cache.say(f"logit cache: the batches of epoch {self.epoch + 1} did not cover "
                           "the split once; that epoch is not cached")
        self.close()
        self.mode = "done"  # later rows (none expected): live

    def close(self) -> None:
        """End the current epoch: its seconds and file counted, an unfinished write dropped."""
        if self.mode != "off":
            seconds = "read_seconds" if self.mode == "read" else "live_seconds"
            self.stats[seconds] += self.clock.total()
            if self.mode == "live":
                self.stats["files_live"] += 1
            elif self.mode == "read":
                self.stats["files_read"] += 1
                self.stats["bytes_read"] += self.epoch_bytes
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        self.mode, self.table, self.seen = "off", None, None
