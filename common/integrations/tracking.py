"""Experiment tracking (``--report_to``, HF's flag and spelling) through accelerate's trackers.

``--report_to`` takes trackers as HF does (``tensorboard mlflow`` or ``tensorboard,mlflow``):
``tensorboard``, ``wandb``, ``mlflow``, ``trackio``, or alone ``none`` (default) or ``all`` (every
one installed). Their local files go to ``<out>/tracking`` (TensorBoard: ``<project_name>/``;
W&B: ``wandb/`` and its cache; MLflow: a file store ``mlruns/`` unless ``MLFLOW_TRACKING_URI`` is
set; trackio: its own store) and the files in those folders are recorded in the run's manifest (growing while
written, with their facts once closed), so ``--overwrite-output-dir`` removes them and nothing
else: a file of yours in ``tracking/`` is not recorded, and an overwrite refuses to delete it. One tracker run per run folder: ``--resume`` continues it
(W&B: the manifest's run id; MLflow: the run tagged with it). Logged: the config, flattened, as
hyper-parameters of that run; at the logging interval ``<phase>/loss``, ``<phase>/lr``,
``<phase>/temperature``, ``<phase>/phi``; per epoch ``<phase>/epoch/<metric>``,
``<phase>/epoch/train_loss``, ``<phase>/epoch/phi`` (at the epoch's last step); at the end
``final/<metric>``, ``final/selected_epoch`` and the chance-teacher guard's
``chance_check/value``, ``/chance``, ``/margin``, ``/at_chance``, ``/warned`` (1 or 0), at the last step. Steps are global: optimizer
steps from the start of the run, phases in order.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import UsageError, setting

TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
CHOICES = ("none", *TRACKERS, "all")
FOLDER = "tracking"
PROJECT = "annealing-kd"
RUN_TAG = "annealing_kd_run"  # MLflow: the tag that holds the run folder's id


def _installed(name: str) -> bool:
    from accelerate.utils import imports

    return getattr(imports, f"is_{name}_available")()


def trackers(report_to: str | list[str] | None) -> list[str]:
    """The trackers ``--report_to`` names (words or comma lists; ``all``: the installed ones, at
    least one); one not installed is a one-line error naming the extra that installs it."""
    words = [report_to] if isinstance(report_to, str) else report_to or []
    names = list(dict.fromkeys(n.strip() for w in words for n in w.split(",") if n.strip()))
    for name in names:
        if name not in CHOICES:
            raise UsageError(f"{setting('report_to')} {name}: not a tracker; choose from "
                             f"{', '.join(CHOICES)}")
    if len(names) > 1 and {"none", "all"} & set(names):
        raise UsageError(f"{setting('report_to')} {' '.join(names)}: none and all stand alone")
    if names in ([], ["none"]):
        return []
    if names == ["all"]:
        found = [t for t in TRACKERS if _installed(t)]
        if not found:
            raise UsageError(f"{setting('report_to')} all: no tracker is installed; pip install "
                             "'annealing-kd[tensorboard]' (or [wandb], [mlflow], [trackio])")
        return found
    for name in names:
        if not _installed(name):
            raise UsageError(f"{setting('report_to')} {name}: {name} is not installed; pip "
                             f"install 'annealing-kd[{name}]'")
    return names


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, int | float | str | bool]:
    """Hyper-parameters as trackers take them: nested dicts as ``a/b`` keys (an empty one: none),
    lists as comma-separated text, anything else not a number, text or bool as its text."""
    flat: dict[str, Any] = {}
    for name, value in config.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{key}/"))
        elif isinstance(value, (list, tuple)):
            flat[key] = ",".join(map(str, value))
        else:
            flat[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


class Tracker:
    """What the trainer logs, through an accelerator made with ``log_with`` (no-op without)."""

    def __init__(self, accelerator, run, names: list[str]) -> None:
        self.acc, self.run, self.names, self.started = accelerator, run, names, False
        self.folder: Path = run / FOLDER

    def start(self, config: dict[str, Any]) -> None:
        """Once the run's folder is ours (``RunDir.start``): the trackers (the run folder's own
        tracker run, continued on ``--resume``) and the config."""
        if not self.names or self.started:
            return
        self.started, main = True, self.acc.is_main_process
        project = config.get("project_name") or PROJECT
        name = config.get("run_name") or self.run.path.resolve().name
        run_id = self.run.manifest.data["run_id"] if main else None
        kwargs: dict[str, dict[str, Any]] = {"trackio": {"name": name}}
        if main and "wandb" in self.names:
            kwargs["wandb"] = self._wandb(name, run_id)
        mlflow_run = None
        if main and "mlflow" in self.names:
            mlflow_run = self._mlflow_run(project, run_id)
            kwargs["mlflow"] = {"run_name": name, "run_id": mlflow_run, "tags": {RUN_TAG: run_id},
                                "logging_dir": str((self.folder / "mlflow").resolve())}
        self.acc.init_trackers(project, init_kwargs=kwargs)
        if main:
            flat = flatten(config)
            for t in self.acc.trackers:
                if t.name == "tensorboard":
                    _tensorboard_hparams(t.writer, flat)
                elif not (t.name == "mlflow" and mlflow_run):  # MLflow refuses changed params
                    t.store_init_configuration(flat)
        self.record()

    def _wandb(self, name: str, run_id: str) -> dict[str, Any]:
        """W&B's arguments: the run folder's own run (continued on ``--resume``), its files and
        the W&B service's logs and caches under ``tracking/wandb``, no links (``latest-run``)."""
        import wandb

        for var, sub in (("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"),
                         ("WANDB_DATA_DIR", "data")):
            os.environ.setdefault(var, str((self.folder / "wandb" / sub).resolve()))
        return {"dir": str(self.folder), "name": name, "id": run_id, "resume": "allow",
                "settings": wandb.Settings(symlink=False)}

    def _mlflow_run(self, project: str, run_id: str) -> str | None:
        """Point MLflow at the run folder's file store (unless ``MLFLOW_TRACKING_URI`` is set);
        the id of the MLflow run this run folder started, if any."""
        import mlflow

        if not os.environ.get("MLFLOW_TRACKING_URI"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for it
            mlflow.set_tracking_uri((self.folder / "mlruns").resolve().as_uri())
        experiment = mlflow.get_experiment_by_name(project)
        found = experiment and mlflow.search_runs(
            [experiment.experiment_id], f"tags.{RUN_TAG} = '{run_id}'", output_format="list")
        return found[0].info.run_id if found else None

    def step(self, phase: str, step: int, values: dict[str, float | None]) -> None:
        if self.started:
            self.acc.log({f"{phase}/{k}": v for k, v in values.items() if v is not None}, step=step)

    def epoch(self, record: dict[str, Any], step: int) -> None:
        """An epoch's record, at the global step of its end."""
        if self.started:
            values = {f"epoch/{k}": v for k, v in record["eval"].items()}
            values.update({"epoch/train_loss": record["train_loss"], "epoch/phi": record["phi"]})
            self.step(record["phase"], step, values)
            self.record()

    def finish(self, final: dict[str, Any], step: int,
               chance_check: dict[str, Any] | None = None) -> None:
        """The final metrics and the chance-teacher guard's numbers (``chance_check/...``) at the
        run's last global step; ends the trackers."""
        if not self.started:
            return
        values = {f"final/{k}": v for k, v in final["metrics"].items() if isinstance(v, float)}
        values.update({f"chance_check/{k}": float(v) for k, v in (chance_check or {}).items()
                       if k != "examples" and isinstance(v, (int, float))})
        self.acc.log({**values, "final/selected_epoch": final["selected_epoch"]}, step=step)
        roots = self.roots()
        self.acc.end_training()
        self.record(closed=True, roots=roots)
        self.started = False

    def roots(self) -> list[Path]:
        """The folders the trackers write in, as they report them (TensorBoard's log dir) or as
        we told them (W&B's ``dir`` and caches, MLflow's file store and logging dir)."""
        found = [Path(t.writer.log_dir) for t in self.acc.trackers if t.name == "tensorboard"]
        names = {"wandb": ["wandb"], "mlflow": ["mlruns", "mlflow"]}
        return found + [self.folder / sub for n in self.names for sub in names.get(n, [])]

    def record(self, closed: bool = False, roots: list[Path] | None = None) -> None:
        """Record the files in the trackers' own folders (flushed; never a file elsewhere in
        ``tracking/``) in the run's manifest: as growing logs while they write, with their facts
        once ``closed``. A link a tracker made (W&B's ``debug-core.log``) becomes a copy."""
        if not self.acc.is_main_process or not self.folder.is_dir():
            return
        for t in self.acc.trackers:
            getattr(getattr(t, "writer", None), "flush", lambda: None)()
        roots = self.roots() if roots is None else roots
        for p in sorted({p for root in roots if root.is_dir() for p in root.rglob("*")}):
            if p.is_symlink():  # W&B's logs/debug-core.log: a copy (none if dangling)
                target = p.resolve()
                if target.is_file():
                    self.run.write(p.relative_to(self.run.path),
                                   lambda tmp, t=target: shutil.copyfile(t, tmp))
                else:
                    p.unlink()
            if p.is_file():
                self.run.manifest.record(p, growing=not closed)
        self.run.manifest.save()


def _tensorboard_hparams(writer, flat: dict[str, Any]) -> None:
    """The hyper-parameters in the run's own folder (beside its scalars, which TensorBoard's
    HParams tab takes as its metrics) and as ``hparams.yml`` there."""
    import yaml
    from torch.utils.tensorboard.summary import hparams

    writer.file_writer.add_summary(hparams(flat, {})[1])  # the session start: hparams only
    writer.flush()
    Path(writer.log_dir, "hparams.yml").write_text(yaml.safe_dump(flat))
