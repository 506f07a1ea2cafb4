"""The run directory: everything a run writes, its results.json, metrics.jsonl and curves.png."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from common.checkpoint import atomic_write
from common.errors import UsageError

RESULTS = "results.json"
METRICS = "metrics.jsonl"
CURVES = "curves.png"


def environment_info() -> dict[str, Any]:
    """Library versions, device and git commit, for results.json."""
    import importlib.metadata as md

    import torch

    versions = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "transformers", "accelerate", "datasets", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"versions": versions, "device": device, "git_commit": commit,
            "host": platform.node(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


class RunDir:
    """An output directory that is never silently overwritten.

    A finished run (results.json with a ``final`` entry) is kept unless ``overwrite``; an
    unfinished one needs ``resume`` (continue) or ``overwrite`` (start again).
    """

    def __init__(self, path: str | Path, *, overwrite: bool = False, resume: bool = False,
                 is_main: bool = True, check: bool = True) -> None:
        self.path = Path(path)
        self.is_main = is_main
        if check:
            self._check(overwrite, resume)
        if is_main:
            self.path.mkdir(parents=True, exist_ok=True)

    def _check(self, overwrite: bool, resume: bool) -> None:
        if not self.path.exists() or not any(self.path.iterdir()):
            return
        if self.path.is_file():
            raise UsageError(f"output directory {self.path} is a file; choose another path")
        finished = self.finished()
        if overwrite:
            if self.is_main:
                shutil.rmtree(self.path)
            return
        if finished:
            raise UsageError(f"{self.path} holds a finished run; pass --overwrite-output-dir to "
                             "replace it or choose another output directory")
        if not resume:
            raise UsageError(f"{self.path} holds an unfinished run; pass --resume to continue it, "
                             "--overwrite-output-dir to start again, or choose another directory")

    def finished(self) -> bool:
        return bool(self.read_results().get("final"))

    def read_results(self) -> dict[str, Any]:
        return read_results(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        if self.is_main:
            text = json.dumps(data, indent=2, default=_jsonable)
            atomic_write(self.path / name, lambda tmp: Path(tmp).write_text(text + "\n"))

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl: one line per epoch record."""
        if self.is_main:
            text = "".join(json.dumps(r, default=_jsonable) + "\n" for r in records)
            atomic_write(self.path / METRICS, lambda tmp: Path(tmp).write_text(text))

    def write_results(self, config: dict[str, Any], env: dict[str, Any],
                      records: list[dict[str, Any]], final: dict[str, Any] | None = None,
                      **extra: Any) -> None:
        """results.json: config, environment, every epoch record, extras, and the final entry."""
        self.write_json(RESULTS, {"config": config, **env, "epochs": records, **extra,
                                  "final": final})
        self.write_metrics(records)

    def plot_curves(self, records: list[dict[str, Any]], metric: str, title: str = "") -> None:
        """curves.png: Phi and the eval metric per epoch, phase boundaries marked."""
        if not self.is_main or not records:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = list(range(1, len(records) + 1))
        fig, ax = plt.subplots(figsize=(8, 4.5))
        ys = [r.get("eval", {}).get(metric) for r in records]
        ax.plot(x, ys, "o-", color="tab:blue", ms=3, label=f"eval {metric}")
        ax.set_xlabel("epoch (all phases)")
        ax.set_ylabel(metric)
        ax2 = ax.twinx()
        phis = [r.get("phi") for r in records]
        ax2.step(x, [p if p is not None else float("nan") for p in phis], where="mid",
                 color="tab:orange", label="Phi(T)")
        ax2.set_ylabel("Phi(T)")
        ax2.set_ylim(0, 1.05)
        for i in range(1, len(records)):
            if records[i]["phase"] != records[i - 1]["phase"]:
                ax.axvline(i + 0.5, color="grey", ls="--", lw=1)
        for i, r in enumerate(records):
            if i == 0 or r["phase"] != records[i - 1]["phase"]:
                ax.annotate(r["phase"], (i + 1, 1.0), xycoords=("data", "axes fraction"),
                            xytext=(2, -12), textcoords="offset points", fontsize=8)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="lower right")
        ax.set_title(title)
        fig.tight_layout()
        atomic_write(self.path / CURVES, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
        plt.close(fig)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def read_results(run_dir: str | Path) -> dict[str, Any]:
    """The results.json of a run directory ({} when it is missing or unreadable)."""
    try:
        return json.loads((Path(run_dir) / RESULTS).read_text())
    except (OSError, ValueError):
        return {}
