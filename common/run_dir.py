"""The run directory: everything a run writes, its results.json, metrics.jsonl and curves.png."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from common.checkpoint import atomic_write
from common.errors import UsageError, setting

RESUME, OVERWRITE = setting("resume"), setting("overwrite_output_dir")  # as each CLI spells them
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


MARKER = ".annealing-kd-run.json"
# what a run of ours writes at the top of its folder (phases add their names to the marker)
OWN_NAMES = {MARKER, RESULTS, METRICS, CURVES, "eval_results.json", "predictions", "teacher",
             "assistant", "student", "phase1", "phase2"}


class RunDir:
    """An output directory that is never silently overwritten.

    A finished run (results.json with a ``final`` entry) is kept unless ``overwrite``; an
    unfinished one needs ``resume`` (continue) or ``overwrite`` (start again). Overwrite removes
    only what a run of ours wrote, never a folder that holds one of ``inputs`` (setting -> path),
    the working directory or its parents, and only when :meth:`start` is called, after the
    caller has checked and loaded every input.
    """

    def __init__(self, path: str | Path, *, overwrite: bool = False, resume: bool = False,
                 is_main: bool = True, check: bool = True,
                 inputs: dict[str, str | None] | None = None) -> None:
        self.path = Path(path)
        self.is_main = is_main
        self.started = False
        self._mark = check  # a folder written without the checks (evaluation only) is no run
        self._remove: list[Path] = []  # the old run's entries, removed by start()
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"output directory {self.path} is a file; choose another path")
        if check:
            self._check(overwrite, resume, inputs or {})
        if is_main:
            self._make()

    def _make(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create output directory {self.path} ({exc.strerror}); "
                             "choose another output directory") from None
        if not os.access(self.path, os.W_OK) or os.statvfs(self.path).f_flag & os.ST_RDONLY:
            raise UsageError(f"output directory {self.path} is not writable (read-only file "
                             "system or no permission); choose another output directory")

    def _check(self, overwrite: bool, resume: bool, inputs: dict[str, str | None]) -> None:
        if resume and overwrite:
            raise UsageError(f"{RESUME} and {OVERWRITE} contradict each other; pass one")
        entries = sorted(self.path.iterdir()) if self.path.is_dir() else []
        if not entries:
            if resume:
                raise UsageError(f"{RESUME}: there is no run to resume in {self.path}; leave out "
                                 f"{RESUME} to start one")
            return
        if not self.ours():
            raise UsageError(f"{self.path} is not empty and holds no run of annealing-kd (it has "
                             f"{entries[0].name!r}); choose a new or empty output directory")
        if overwrite:
            self._check_removable(entries, inputs)
            return
        if self.finished():
            raise UsageError(f"{self.path} holds a finished run; pass {OVERWRITE} to "
                             "replace it or choose another output directory")
        if not resume:
            raise UsageError(f"{self.path} holds an unfinished run; pass {RESUME} to continue it, "
                             f"{OVERWRITE} to start again, or choose another directory")
        if self.is_main:
            for tmp in self.path.rglob(".*.tmp"):  # left by a stop in the middle of a write
                tmp.unlink()

    def _check_removable(self, entries: list[Path], inputs: dict[str, str | None]) -> None:
        here = self.path.resolve()
        cwd = Path.cwd().resolve()
        if here in (Path(here.anchor), Path.home().resolve()) or here == cwd or here in cwd.parents:
            raise UsageError(f"{OVERWRITE} will not empty {self.path} (the root, home or "
                             "working directory, or a parent of it); choose another output directory")
        for key, value in inputs.items():
            if value and Path(value).exists():
                where = Path(value).resolve()
                if where == here or here in where.parents:
                    raise UsageError(f"{OVERWRITE} would delete {value} ({setting(key)}) inside "
                                     f"{self.path}; choose another output directory")
        own = OWN_NAMES | set(self.marker().get("names", []))
        for entry in entries:
            if entry.name not in own and not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                raise UsageError(f"{OVERWRITE}: {entry} was not written by a run; move "
                                 "it away or choose another output directory")
        self._remove = entries

    def start(self, config: dict[str, Any] | None = None) -> None:
        """Called before a run writes anything: removes the run being overwritten (once every
        input was checked) and writes the marker that recognises a run of ours."""
        if self.started or not self.is_main:
            self.started = True
            return
        self.started = True
        try:
            for entry in self._remove:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink(missing_ok=True)
            self._remove = []
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot replace the run in {self.path} ({exc.strerror}); "
                             "remove it by hand or choose another output directory") from None
        if self._mark and not (self.path / MARKER).exists():
            self.write_json(MARKER, {"program": "annealing-kd", "config": config or {}, "names": []})

    def claim(self, name: str) -> None:
        """Record a top-level entry this run writes, so that an overwrite may remove it."""
        marker = self.marker()
        if self.is_main and name not in OWN_NAMES and name not in marker.get("names", []):
            self.write_json(MARKER, {**marker, "names": [*marker.get("names", []), name]})

    def marker(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / MARKER).read_text())
        except (OSError, ValueError):
            return {}

    def ours(self) -> bool:
        """Whether the folder holds a run of annealing-kd (our marker or our results.json)."""
        return bool(self.marker()) or "config" in self.read_results()

    def saved_config(self) -> dict[str, Any]:
        """The settings the run in this folder was started with."""
        return self.read_results().get("config") or self.marker().get("config") or {}

    def finished(self) -> bool:
        return bool(self.read_results().get("final"))

    def read_results(self) -> dict[str, Any]:
        return read_results(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        if name != MARKER:
            self.start()
        if self.is_main:
            text = json.dumps(data, indent=2, default=_jsonable)
            atomic_write(self.path / name, lambda tmp: Path(tmp).write_text(text + "\n"))

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl: one line per epoch record."""
        self.start()
        if self.is_main:
            text = "".join(json.dumps(r, default=_jsonable) + "\n" for r in records)
            atomic_write(self.path / METRICS, lambda tmp: Path(tmp).write_text(text))

    def write_results(self, config: dict[str, Any], env: dict[str, Any],
                      records: list[dict[str, Any]], final: dict[str, Any] | None = None,
                      **extra: Any) -> None:
        """results.json: config, environment, every epoch record, extras, and the final entry."""
        self.write_metrics(records)
        self.write_json(RESULTS, {"config": config, **env, "epochs": records, **extra,
                                  "final": final})

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


def check_same_run(saved: dict[str, Any], now: dict[str, Any], keys: list[str]) -> None:
    """--resume must continue the same experiment: refuse any of ``keys`` that changed."""
    for key in keys:
        value = json.loads(json.dumps(now.get(key), default=_jsonable))  # as results.json has it
        if key in saved and saved[key] != value:
            raise UsageError(f"{RESUME}: {setting(key)} was {saved[key]!r} in this run, now "
                             f"{value!r}; resume with the original settings or start a new "
                             "output directory")


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
