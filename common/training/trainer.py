"""One training loop for both CLIs, on ``accelerate``.

A run is a sequence of :class:`Phase` s (teacher, phase1, phase2, ...), each training one model
with one objective (``methods.objectives``): it evaluates every epoch, keeps its best and last
weights and a training state in ``<run>/<phase>/``, and can resume at any epoch boundary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import run_folder
from ..errors import UsageError, setting
from ..integrations.curves import plot_curves
from ..integrations.tracking import Tracker
from ..methods.annealing import AnnealingSchedule
from ..methods.objectives import get_objective
from ..run_folder import commit_epoch  # by name: the kill tests patch it here
from .lr_schedules import LrSchedule
from .progress import progress_bar
from .seeding import seed_everything

Batch = Any
Metrics = dict[str, float]


@dataclass
class Phase:
    """One stage of a run: a model trained with one objective for some epochs."""

    name: str
    objective: str  # a name in OBJECTIVES: "task" | "anneal" | "kd" | ...
    epochs: int
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    lr_schedule: LrSchedule = field(default_factory=LrSchedule)
    max_temperature: int = 1
    anneal_per_step: bool = False
    max_grad_norm: float | None = None
    max_steps: int = 0  # stop the phase after this many optimizer steps (0: no limit)
    options: dict[str, Any] = field(default_factory=dict)  # the objectives' keyword options


@dataclass
class _Progress:
    """Where a phase stands: optimizer steps done, the last committed epoch, the best so far."""

    optimizer: Any
    scheduler: Any
    total: int  # optimizer steps of the phase
    epoch: int = 0
    opt_steps: int = 0
    best: dict[str, Any] | None = None


@dataclass
class BatchReader:
    """How the loop reads a batch: student logits, labels and (for anneal/kd) frozen targets."""

    student_logits: Callable[[nn.Module, Batch], torch.Tensor]
    labels: Callable[[Batch], torch.Tensor]
    teacher_logits: Callable[[Batch], torch.Tensor] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Tell targets with per-epoch state (``logit_cache.EpochLogits``) which epoch starts."""
        getattr(self.teacher_logits, "set_epoch", lambda e: None)(epoch)


def make_accelerator(device: str = "auto", amp: str = "none", grad_accum: int = 1,
                     log_with: list[str] | None = None, project_dir: str | None = None):
    """An ``accelerate.Accelerator`` for ``device`` in {auto, cpu, cuda} and ``amp`` in
    {none, bf16, fp16}, alone or under ``accelerate launch``; ``log_with``: its trackers."""
    from accelerate import Accelerator

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("CUDA was asked for but no CUDA GPU is visible; run on the CPU")
    cpu = device == "cpu" or not torch.cuda.is_available()
    if amp == "fp16" and cpu:
        raise UsageError("fp16 mixed precision needs a GPU; use bf16 or none on the CPU")
    mixed = {"none": "no", "no": "no", "bf16": "bf16", "fp16": "fp16"}.get(amp)
    if mixed is None:
        raise UsageError(f"unknown mixed precision {amp!r}; use none, bf16 or fp16")
    tracking = {"log_with": log_with, "project_dir": project_dir} if log_with else {}
    return Accelerator(cpu=cpu, mixed_precision=mixed, gradient_accumulation_steps=grad_accum,
                       **tracking)


def freeze(model: nn.Module) -> nn.Module:
    """A frozen teacher: eval mode, no parameter wants a gradient."""
    return model.eval().requires_grad_(False)


def frozen_logits(teacher: nn.Module, forward: Callable[[nn.Module, Batch], torch.Tensor]):
    """Targets computed on the fly by a frozen teacher, never with autograd."""
    freeze(teacher)

    def targets(batch: Batch) -> torch.Tensor:
        with torch.inference_mode():
            out = forward(teacher, batch).float()
        return out.clone()  # a normal tensor, usable as a loss target

    return targets


@torch.inference_mode()
def predict(accelerator, model: nn.Module, loader, forward, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """All logits and labels of a prepared loader, gathered over processes, in order."""
    was_training = model.training
    model.eval()
    pairs = [accelerator.gather_for_metrics((forward(model, b).float(), labels(b))) for b in loader]
    model.train(was_training)
    return torch.cat([p[0].cpu() for p in pairs]), torch.cat([p[1].cpu() for p in pairs])


class Trainer:
    """Runs phases, records every epoch, writes results.json / metrics.jsonl / curves.png.
    ``evaluate(model)`` gives an epoch's metrics (or each :meth:`fit` gets its own); ``files``
    (name -> text, e.g. config.yaml) are written once the run has started."""

    def __init__(self, accelerator, run: run_folder.RunDir, *, config: dict[str, Any],
                 env: dict[str, Any], evaluate: Callable[[nn.Module], Metrics] | None,
                 selection_metric: str, selected_on: str, seed: int = 42, resume: bool = False,
                 deterministic: bool = False, log_every: int = 10,
                 trackers: list[str] | None = None, files: dict[str, str] | None = None) -> None:
        self.acc, self.run, self.config, self.env = accelerator, run, config, env
        self.files = dict(files or {})
        self.evaluate, self.metric, self.selected_on = evaluate, selection_metric, selected_on
        self.seed, self.resume, self.deterministic, self.log_every = seed, resume, deterministic, log_every
        self.records: list[dict[str, Any]] = []
        self.best: dict[str, dict[str, Any]] = {}  # phase name -> best epoch of that phase
        self.extra: dict[str, Any] = {}
        self.steps_done = 0  # optimizer steps of the earlier phases (trackers' global step)
        self.tracker = Tracker(accelerator, run, trackers or [])  # --report_to

    # ---- one phase -------------------------------------------------------------------------
    def fit(self, model: nn.Module, phase: Phase, loader, batches: BatchReader,
            evaluate: Callable[[nn.Module], Metrics] | None = None) -> dict[str, Any]:
        """Train ``model`` (accelerator-prepared) through ``phase``, evaluated each epoch by
        ``evaluate`` (or the trainer's); return its best epoch. The model keeps the last weights."""
        if phase.epochs < 1:
            raise UsageError(f"{phase.name} needs at least 1 epoch, got {phase.epochs}")
        if get_objective(phase.objective).needs_teacher and batches.teacher_logits is None:
            raise ValueError(f"phase {phase.name}: objective {phase.objective} needs teacher_logits")
        optimizer = self.acc.prepare(phase.make_optimizer(model))
        loader = self.acc.prepare(loader)
        total = self.check_phase(phase, len(loader))
        state = _Progress(optimizer, phase.lr_schedule.build(optimizer, total), total)
        self.run.start(self.config)  # an overwritten run is removed only now, all input checked
        while self.files:
            name, text = self.files.popitem()
            self.run.write(name, lambda tmp, text=text: Path(tmp).write_text(text))
        self.tracker.start(self.config)
        if self._resume(model, phase, state):
            self.steps_done += state.opt_steps
            return state.best
        for epoch in range(state.epoch, phase.epochs):
            tic = time.perf_counter()
            temp, phi, train_loss = self._train_epoch(model, phase, loader, batches, state, epoch)
            if not math.isfinite(train_loss):
                kept = (f"the last good epoch ({state.epoch}) is kept in "
                        f"{self.run / phase.name / 'last.safetensors'}" if state.epoch
                        else f"no epoch of {phase.name} was saved")
                raise UsageError(f"{phase.name} epoch {epoch + 1}: the training loss is not "
                                 f"finite; {kept}; lower the learning rate or turn off fp16")
            record = {"phase": phase.name, "epoch": epoch + 1, "temperature": temp, "phi": phi,
                      "lr": state.scheduler.get_last_lr()[0], "train_loss": train_loss,
                      "eval": (evaluate or self.evaluate)(model),
                      "seconds": round(time.perf_counter() - tic, 3)}
            finished = epoch + 1 == phase.epochs or bool(
                phase.max_steps and state.opt_steps >= phase.max_steps)
            self._commit(model, phase, state, record, finished)
            self.tracker.epoch(record, self.steps_done + state.opt_steps)
            self.write_results()
            self.acc.print(_summary(record, self.metric))
            if finished:
                break
        self.best[phase.name] = state.best
        self.steps_done += state.opt_steps
        return state.best

    def _resume(self, model: nn.Module, phase: Phase, state: _Progress) -> bool:
        """With ``resume``: load the phase's committed epoch into ``model`` and ``state``; True
        when the phase had finished."""
        acc, pdir = self.acc, self.run / phase.name
        acc.wait_for_everyone()
        committed = (run_folder.load_committed(pdir, tidy=acc.is_main_process,
                                               manifest=self.run.manifest) if self.resume else None)
        acc.wait_for_everyone()
        if committed is None:
            return False
        saved, edir = committed
        acc.unwrap_model(model).load_state_dict(run_folder.load_weights(edir / "last.safetensors"))
        state.optimizer.load_state_dict(saved["optimizer"])
        state.scheduler.load_state_dict(saved["scheduler"])
        state.epoch, state.best, state.opt_steps = saved["epoch"], saved["best"], saved["opt_steps"]
        self.records = list(saved["records"])
        if state.epoch < phase.epochs and not saved["finished"]:
            return False
        self.best[phase.name] = state.best
        acc.print(f"{phase.name}: finished earlier, best epoch {state.best['epoch']} "
                  f"{self.metric}={state.best['metric']:.4f}")
        return True

    def _train_epoch(self, model: nn.Module, phase: Phase, loader, batches: BatchReader,
                     state: _Progress, epoch: int) -> tuple[int | None, float | None, float]:
        """One epoch of optimizer steps: (temperature, Phi at its end, mean training loss)."""
        acc = self.acc
        # (seed, epoch) only: every phase and method sees the same stream at epoch e
        seed_everything(self.seed * 1009 + epoch, self.deterministic)
        loader.set_epoch(epoch)  # accelerate passes it to an EpochShuffleSampler
        batches.set_epoch(epoch)  # cached teacher logits: this epoch's file
        model.train()
        temp, phi = self._anneal(phase, epoch, state.opt_steps, state.total)
        loss_sum, n_batches = torch.zeros((), device=acc.device), 0
        bar = progress_bar(loader, f"{phase.name} {epoch + 1}/{phase.epochs}", acc.is_main_process)
        for batch in bar:
            with acc.accumulate(model):
                if phase.anneal_per_step:
                    temp, phi = self._anneal(phase, epoch, state.opt_steps, state.total)
                loss = self._loss(model, phase, batch, batches, phi)
                acc.backward(loss)
                if acc.sync_gradients and phase.max_grad_norm:
                    acc.clip_grad_norm_(model.parameters(), phase.max_grad_norm)
                state.optimizer.step()
                state.optimizer.zero_grad(set_to_none=True)
                if acc.sync_gradients:
                    lr = state.scheduler.get_last_lr()[0]  # the one this step used
                    state.scheduler.step()
                    state.opt_steps += 1
                    if self.tracker.started and (state.opt_steps - 1) % self.log_every == 0:
                        self.tracker.step(phase.name, self.steps_done + state.opt_steps, {
                            "loss": loss.item(), "lr": lr, "temperature": temp, "phi": phi})
            loss_sum += loss.detach().float()
            n_batches += 1
            if (n_batches - 1) % self.log_every == 0 and acc.is_main_process:
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{state.scheduler.get_last_lr()[0]:.2e}",
                                phi="-" if phi is None else f"{phi:.3f}", refresh=False)
            if phase.max_steps and state.opt_steps >= phase.max_steps:
                break
        return temp, phi, (acc.reduce(loss_sum, "mean") / max(1, n_batches)).item()

    def _commit(self, model: nn.Module, phase: Phase, state: _Progress, record: dict[str, Any],
                finished: bool) -> None:
        """Keep an epoch's record and commit the epoch, all or nothing: the last weights, the best
        (when it is the phase's best so far) and the training state."""
        acc, epoch, value, best = self.acc, record["epoch"], record["eval"][self.metric], state.best
        self.records.append(record)
        improved = best is None or value > best["metric"] or not math.isfinite(best["metric"])
        if improved:
            state.best = {"phase": phase.name, "epoch": epoch, "metric": value,
                          "eval": record["eval"]}
        if acc.is_main_process:
            weights = acc.unwrap_model(model).state_dict()
            saved = {"epoch": epoch, "finished": finished, "opt_steps": state.opt_steps,
                     "optimizer": state.optimizer.state_dict(),
                     "scheduler": state.scheduler.state_dict(), "best": state.best,
                     "records": self.records}
            files = {"best.safetensors": weights if improved else None, "last.safetensors": weights}
            try:
                commit_epoch(self.run / phase.name, epoch, files, saved,
                                        self.run.manifest)
            except run_folder.WriteFailed as exc:
                kept = (f"the last good epoch ({state.epoch}) is kept; pass {setting('resume')} "
                        "once there is room" if state.epoch else "no epoch of this phase was saved")
                raise UsageError(f"could not write {exc.path} ({exc.reason}) at the end of "
                                 f"{phase.name} epoch {epoch}; {kept}") from None
        state.epoch = epoch
        acc.wait_for_everyone()

    def check_phase(self, phase: Phase, batches_per_epoch: int) -> int:
        """The optimizer steps of ``phase``; refuses an annealing schedule that does not fit them
        (called by :meth:`fit`, and by ``methods.run.plan`` before a run trains anything)."""
        steps = math.ceil(batches_per_epoch / self.acc.gradient_accumulation_steps) * phase.epochs
        total = min(steps, phase.max_steps) if phase.max_steps else steps
        self._anneal(phase, 0, 0, total)  # building the schedule checks it
        return total

    def _anneal(self, phase: Phase, epoch: int, step: int, total: int) -> tuple[int | None, float | None]:
        if not get_objective(phase.objective).anneals:
            return None, None
        if phase.anneal_per_step:
            return AnnealingSchedule.per_step(total, phase.max_temperature)(step)
        return AnnealingSchedule.per_epoch(phase.epochs, phase.max_temperature)(epoch)

    def _loss(self, model, phase: Phase, batch, batches: BatchReader, phi: float | None) -> torch.Tensor:
        objective = get_objective(phase.objective)
        logits = batches.student_logits(model, batch).float()
        targets = batches.teacher_logits(batch) if objective.needs_teacher else None
        return objective.loss(logits, batches.labels(batch), targets, phi, **phase.options)

    # ---- across phases ---------------------------------------------------------------------
    def load_best(self, model: nn.Module, phase_name: str) -> None:
        """Load the best weights of a finished phase into ``model``."""
        self.acc.wait_for_everyone()
        self.acc.unwrap_model(model).load_state_dict(
            run_folder.load_weights(self.run / phase_name / "best.safetensors"))

    def select(self, phase_names: list[str]) -> dict[str, Any]:
        """The best epoch over the given phases by the selection metric (first one on ties)."""
        return max((self.best[p] for p in phase_names), key=lambda b: b["metric"])

    def final_entry(self, chosen: dict[str, Any], metrics: Metrics | None = None) -> dict[str, Any]:
        """The ``final`` entry of results.json for the chosen epoch."""
        return {"selected_by": self.metric, "selected_on": self.selected_on,
                "selected_phase": chosen["phase"], "selected_epoch": chosen["epoch"],
                "metrics": metrics if metrics is not None else chosen["eval"]}

    def results(self, final: dict[str, Any] | None = None) -> dict[str, Any]:
        """What results.json holds (the model card reads it before it is written)."""
        return {"config": self.config, **self.env, "epochs": self.records, **self.extra,
                "final": final}

    def write_results(self, final: dict[str, Any] | None = None) -> None:
        """metrics.jsonl, curves.png (at the end) and results.json, complete once it has ``final``."""
        if final is not None:
            self.tracker.finish(final, self.steps_done,
                                (self.extra.get("teacher") or {}).get("chance_check"))
            plot_curves(self.run, self.records, self.metric, title=str(self.config.get("method", "")))
        self.run.write_results(self.config, self.env, self.records, final, **self.extra)


def _summary(r: dict[str, Any], metric: str) -> str:
    anneal = f" T={r['temperature']} phi={r['phi']:.3f}" if r["phi"] is not None else ""
    evals = " ".join(f"{k}={v:.4f}" for k, v in r["eval"].items())
    return (f"[{r['phase']}] epoch {r['epoch']}{anneal} lr={r['lr']:.2e} "
            f"train_loss={r['train_loss']:.4f} {evals} ({r['seconds']:.1f}s)")
