"""Small helpers shared by the benchmarks: device, timing, alternating repeats, tables."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when visible, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(runs: dict[str, Callable[..., int]], repeats: int, device: torch.device,
              warmup: dict[str, Callable[[], int]] | None = None
              ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run each function once untimed (``warmup`` if given), then ``repeats`` rounds in turn,
    every other round in reverse order (A, B, C, C, B, A, A, B, C, ...), so no function always
    runs after the same one. Each function returns how many examples it processed.

    With ``warmup``, each timed run is preceded by its own short untimed warm-up, so no loop pays
    for the memory and caches the previous one left behind. Returns examples per wall-clock
    second and examples per CPU-second of this process (all its threads), per round; the second
    is less disturbed by other processes competing for the cores (CPU runs only)."""
    for name, fn in (warmup or runs).items():
        print(f"  warm-up: {name}", flush=True)
        fn()
        sync(device)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    cpu_rates: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats):
        for name, fn in (list(runs.items()) if r % 2 == 0 else list(runs.items())[::-1]):
            if warmup and r > 0:
                warmup[name]()
            sync(device)
            tic, cpu = time.perf_counter(), time.process_time()
            n = fn()
            sync(device)
            rates[name].append(n / (time.perf_counter() - tic))
            cpu_rates[name].append(n / max(1e-9, time.process_time() - cpu))
        print(f"  round {r + 1}/{repeats}{' (reversed)' if r % 2 else ''}: "
              + ", ".join(f"{k} {v[-1]:.1f}/s" for k, v in rates.items()), flush=True)
    return rates, cpu_rates


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A plain fixed-width table (markdown-compatible)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(c: object) -> str:
    if isinstance(c, float):
        return f"{c:,.2f}" if abs(c) < 100 else f"{c:,.1f}"
    return str(c)


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "MET" if ok else "MISSED"


def machine() -> str:
    import os
    import platform

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, " \
           f"{torch.get_num_threads()} torch threads, load average {load:.1f}"
