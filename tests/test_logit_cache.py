"""The teacher-logit cache (common/logit_cache/store.py, common/logit_cache/epoch_logits.py): files, damage,
locking between processes, the size limit, and per-epoch targets."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from annealing_kd.common.logit_cache.epoch_logits import EpochLogits
from annealing_kd.common.logit_cache.store import (
    HEADER,
    FileLock,
    LogitCache,
    nbytes,
    precision_of,
    stored,
)


def _cache(root: Path, max_gb: float | None = None) -> tuple[LogitCache, list[str]]:
    said: list[str] = []
    return LogitCache(root, max_gb, said.append), said


def _fork(fn) -> int:
    """Run ``fn()`` in a forked child; its pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        finally:
            os._exit(code)
    return pid


def _wait(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_file_reads_back_the_stored_values(tmp_path, precision):
    cache, said = _cache(tmp_path)
    logits = torch.randn(7, 3) * 10
    path = tmp_path / "a.logits"
    assert cache.write(path, "k", precision, logits) == nbytes(precision, 7, 3) == path.stat().st_size
    back = cache.read(path, "k", precision)
    assert back.dtype == {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert torch.equal(back.float(), stored(logits, precision))
    if precision == "fp32":
        assert torch.equal(back, logits)  # no rounding at all
    assert not said and not list(tmp_path.glob(".*.tmp"))


def test_damaged_files_are_refused_once_each(tmp_path):
    cache, said = _cache(tmp_path)
    good = torch.randn(5, 4)
    paths = {name: tmp_path / f"{name}.logits" for name in ("short", "flipped", "header", "moved")}
    for path in paths.values():
        cache.write(path, "k", "fp32", good)
    data = paths["short"].read_bytes()
    paths["short"].write_bytes(data[:-4])
    flipped = bytearray(data)
    flipped[HEADER + 9] ^= 0xFF
    paths["flipped"].write_bytes(bytes(flipped))
    paths["header"].write_bytes(b"garbage" + data[7:])
    for path in paths.values():
        key = "other" if path == paths["moved"] else "k"  # a file copied under another key
        assert cache.read(path, key, "fp32") is None
        assert cache.read(path, key, "fp32") is None  # reported once
    assert cache.read(tmp_path / "missing.logits", "k", "fp32") is None  # missing: no warning
    assert cache.read(paths["moved"], "k", "bf16") is None  # another precision
    assert len(said) == 4 and all(s.startswith("warning: cached teacher logits") for s in said)
    assert {s.split("(")[1].split(")")[0].split(" ")[0] for s in said} >= {"checksum", "unreadable"}


def test_get_computes_once_then_reads_and_recomputes_a_damaged_file(tmp_path):
    cache, said = _cache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(12.0).view(4, 3) / 7

    stream = cache.stream("teacher test", "x")
    path = tmp_path / "x" / "test.logits"
    first = cache.get(path, "x/test", "fp32", compute, stream)
    second = cache.get(path, "x/test", "fp32", compute, stream)
    assert len(calls) == 1 and torch.equal(first, second) and torch.equal(first, compute())
    path.write_bytes(path.read_bytes()[:HEADER + 5])
    third = cache.get(path, "x/test", "fp32", compute, stream)
    assert torch.equal(third, first) and len(said) == 1 and "damaged" in said[0]
    assert (stream["files_written"], stream["files_read"]) == (2, 1)
    assert cache.read(path, "x/test", "fp32") is not None  # replaced by a good file


def test_past_the_size_limit_the_run_computes_live_and_says_so_once(tmp_path):
    cache, said = _cache(tmp_path, max_gb=1.5 * nbytes("fp32", 100, 10) / 2**30)
    stream = cache.stream("s", "k")
    for i in range(3):
        cache.get(tmp_path / f"{i}.logits", f"k{i}", "fp32", lambda: torch.ones(100, 10), stream)
    assert (stream["files_written"], stream["files_live"]) == (1, 2)
    assert len(said) == 1 and "limit" in said[0] and "live" in said[0]
    assert cache.read(tmp_path / "0.logits", "k0", "fp32") is not None  # still read
    zero, said0 = _cache(tmp_path / "z", max_gb=0)  # 0: read what is there, write nothing
    zero.get(tmp_path / "z" / "a.logits", "a", "fp32", lambda: torch.ones(2, 2), zero.stream("s", "k"))
    assert not list((tmp_path / "z").glob("*.logits")) and len(said0) == 1


def test_two_processes_compute_one_file_once(tmp_path):
    """The second process waits on the file's lock, then reads what the first wrote."""
    log = tmp_path / "computed.log"
    path = tmp_path / "cache" / "k" / "epoch-0001.logits"

    def job(name: str):
        cache, said = _cache(tmp_path / "cache")

        def compute():
            with open(log, "a") as f:
                f.write(f"{name}\n")
            time.sleep(1.0)
            return torch.full((50, 4), 3.25)

        got = cache.get(path, "k/1", "fp32", compute, cache.stream("s", "k"))
        torch.save(got, tmp_path / f"{name}.pt")
        (tmp_path / f"{name}.said").write_text("\n".join(said))

    pids = [_fork(lambda n=n: job(n)) for n in ("a", "b")]
    assert [_wait(p) for p in pids] == [0, 0]
    assert len(log.read_text().split()) == 1  # computed once
    a, b = (torch.load(tmp_path / f"{n}.pt") for n in ("a", "b"))
    assert torch.equal(a, b)
    waited = [(tmp_path / f"{n}.said").read_text() for n in ("a", "b")]
    assert sum("waiting" in w for w in waited) == 1


def test_readers_never_see_a_half_written_file(tmp_path):
    """A writer replaces the file again and again (and a killed writer leaves its temporary
    file behind); a reader meanwhile only ever sees whole files, never a damaged one."""
    path = tmp_path / "e.logits"
    LogitCache(tmp_path).write(path, "k", "fp32", torch.zeros(2000, 10))

    def writer():
        cache = LogitCache(tmp_path)
        for i in range(60):
            cache.write(path, "k", "fp32", torch.full((2000, 10), float(i)))
        (tmp_path / ".e.logits.123.tmp").write_bytes(b"half a file")

    pid = _fork(writer)
    cache, said = _cache(tmp_path)
    seen = set()
    while True:
        done = os.waitpid(pid, os.WNOHANG)[0] != 0
        table = cache.read(path, "k", "fp32")
        assert table is not None and (table == table[0, 0]).all()
        seen.add(float(table[0, 0]))
        if done:
            break
    assert not said and float(cache.read(path, "k", "fp32")[0, 0]) == 59.0
    lock = FileLock(path)
    lock.acquire()
    cache.clear_stale(path)  # the lock holder removes what a killed writer left
    lock.release()
    assert not list(tmp_path.glob(".*.tmp"))


class _Teacher:
    """A fake frozen teacher: logits from the indices, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, batch) -> torch.Tensor:
        self.calls += 1
        return batch[2].float()[:, None] / 3 + torch.arange(4.0)


def _epoch(source: EpochLogits, epoch: int, rows: int, bs: int, stop: int | None = None):
    source.set_epoch(epoch)
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(epoch))
    out = []
    for i in range(0, rows if stop is None else stop, bs):
        idx = order[i:i + bs]
        out.append((idx, source((None, None, idx))))
    return out


def test_epoch_targets_are_written_when_every_row_was_seen(tmp_path):
    cache, said = _cache(tmp_path)
    teacher = _Teacher()
    source = EpochLogits(cache, {"t": 1}, teacher, lambda b: b[2], 10, 4, "fp32")
    live = _epoch(source, 0, 10, 4)  # 3 batches: computed, then the file is written
    assert teacher.calls == 3 and source.path(0).is_file()
    _epoch(source, 1, 10, 4, stop=8)  # stopped early (max_steps): never written
    source.close()
    assert not source.path(1).exists()
    cached = _epoch(source, 0, 10, 4)
    assert teacher.calls == 5  # epoch 0 read back: the teacher did not run
    for (i1, a), (i2, b) in zip(live, cached):
        assert torch.equal(i1, i2) and torch.equal(a, b)
    source.close()
    s = cache.stats["streams"]["teacher train"]
    assert (s["files_written"], s["files_read"], s["files_live"]) == (1, 1, 0)
    assert json.loads((source.folder / "key.json").read_text())["precision"] == "fp32"
    lock = FileLock(source.path(1))  # the lock of the unfinished epoch was released
    assert lock.acquire() == 0.0
    lock.release()


def test_two_processes_share_the_epochs_of_one_stream(tmp_path):
    """Two runs on one stream (as KD and Annealing-KD of a seed under run_table --jobs): every
    epoch is computed once in all, and both get the same targets."""
    def run(name: str):
        cache, _ = _cache(tmp_path / "cache")
        teacher = _Teacher()
        source = EpochLogits(cache, {"t": 1}, teacher, lambda b: b[2], 64, 4, "fp32")
        got = [t for e in range(3) for _, t in _epoch(source, e, 64, 16)]
        source.close()
        torch.save({"targets": got, "calls": teacher.calls}, tmp_path / f"{name}.pt")

    pids = [_fork(lambda n=n: run(n)) for n in ("a", "b")]
    assert [_wait(p) for p in pids] == [0, 0]
    a, b = (torch.load(tmp_path / f"{n}.pt") for n in ("a", "b"))
    assert all(torch.equal(x, y) for x, y in zip(a["targets"], b["targets"], strict=True))
    assert a["calls"] + b["calls"] == 3 * 4  # 3 epochs of 4 batches, computed once in all
    assert len(list((tmp_path / "cache").rglob("epoch-*.logits"))) == 3


def test_precision_is_the_runs_own():
    from types import SimpleNamespace

    assert [precision_of(SimpleNamespace(mixed_precision=m)) for m in ("no", "bf16", "fp16")] \
        == ["fp32", "bf16", "fp16"]
    with pytest.raises(ValueError, match="fp8"):
        precision_of(SimpleNamespace(mixed_precision="fp8"))
