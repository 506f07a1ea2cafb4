"""Progress bars stay out of log files (common/training/progress.py)."""

from __future__ import annotations

import io
import sys

from annealing_kd.common.training.progress import progress_bar


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(monkeypatch, stream: io.StringIO, n: int = 300) -> str:
    import time

    monkeypatch.setattr(sys, "stderr", stream)
    bar = progress_bar(range(n), "epoch 1/1")
    for i in bar:
        time.sleep(0.003)  # ~1 s in all: a terminal bar would redraw about ten times
        if i % 10 == 1:
            bar.set_postfix(loss=f"{i:.4f}", refresh=False)
    return stream.getvalue()


def test_log_file_gets_no_carriage_return_flood(monkeypatch):
    out = _run(monkeypatch, io.StringIO())
    # under a minute: nothing at all (a bar shows in a log only after a minute, then once a minute)
    assert out == "", out


def test_terminal_keeps_a_live_bar(monkeypatch):
    import time

    stream = _Tty()
    monkeypatch.setattr(sys, "stderr", stream)
    for _ in progress_bar(range(6), "epoch 1/1"):
        time.sleep(0.12)  # longer than the terminal's 0.1 s redraw interval
    assert stream.getvalue().count("\r") >= 4


def test_disabled_bar_writes_nothing(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    assert list(progress_bar(range(5), "x", enabled=False)) == list(range(5))
    assert stream.getvalue() == ""
