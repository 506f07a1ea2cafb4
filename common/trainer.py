"""One training loop for both CLIs, on ``accelerate``.

A run is a sequence of :class:`Phase` s (teacher, phase1, phase2, ...). Each phase trains one
model with one objective, evaluates every epoch, keeps its best and last weights and a training
state in ``<run>/<phase>/``, and can be resumed at any epoch boundary. The objectives, registered
by name in :data:`OBJECTIVES` (a new one: :func:`register_objective`):

    task    hard labels (cross-entropy, or MSE for regression)
    anneal  MSE(z_s, Phi(T) * z_t), T stepping down from tau_max to 1 (Annealing-KD phase 1)
    kd      Hinton KD
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from common.checkpoint import (
    WriteFailed,
    commit_epoch,
    load_committed,
    load_weights,
)
from common.errors import UsageError
from common.losses import annealing_loss, hinton_kd_loss, task_loss
from common.lr_schedules import LrFactor, constant
from common.progress import progress_bar
from common.run_dir import RunDir
from common.schedule import check_schedule, phi, temperature
from common.seeding import seed_everything

Batch = Any
Metrics = dict[str, float]


@dataclass(frozen=True)
class Objective:
    """A training loss: ``loss(logits, labels, targets, phi, **options) -> scalar``.

    ``targets`` are the frozen teacher's logits when ``needs_teacher`` (else None); ``phi`` is the
    annealing multiplier when ``anneals`` (else None); ``options`` are the phase's
    :attr:`Phase.options` (each objective takes the keys it knows and ignores the rest)."""

    loss: Callable[..., torch.Tensor]
    needs_teacher: bool = True
    anneals: bool = False


OBJECTIVES: dict[str, Objective] = {}


def register_objective(name: str, *, needs_teacher: bool = True, anneals: bool = False):
    """Decorator: register ``loss`` as the objective ``name`` (usable in any :class:`Phase`)."""

    def add(loss: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        OBJECTIVES[name] = Objective(loss, needs_teacher, anneals)
        return loss

    return add


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; registered: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


@register_objective("task", needs_teacher=False)
def _task(logits, labels, targets, phi, **options) -> torch.Tensor:
    return task_loss(logits, labels)


@register_objective("anneal", anneals=True)
def _anneal(logits, labels, targets, phi, *, anneal_reduction: str = "mean", **options):
    return annealing_loss(logits, targets, phi, anneal_reduction)


@register_objective("kd")
def _kd(logits, labels, targets, phi, *, kd_alpha: float = 0.5, kd_temperature: float = 4.0,
        kd_reduction: str = "batchmean", **options) -> torch.Tensor:
    return hinton_kd_loss(logits, targets, labels, kd_alpha, kd_temperature, kd_reduction)


@dataclass
class Phase:
    """One stage of a run: a model trained with one objective for some epochs."""

    name: str
    objective: str  # a name in OBJECTIVES: "task" | "anneal" | "kd" | ...
    epochs: int
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    lr_factor: LrFactor = constant
    max_temperature: int = 1
    anneal_per_step: bool = False
    max_grad_norm: float | None = None
    max_steps: int = 0  # stop the phase after this many optimizer steps (0: no limit)
    options: dict[str, Any] = field(default_factory=dict)  # the objective's keyword options
    # (optimizer, total steps) -> scheduler; replaces lr_factor (e.g. transformers.get_scheduler)
    make_scheduler: Callable[[torch.optim.Optimizer, int], Any] | None = None


@dataclass
class Batches:
    """How the loop reads a batch: student logits, labels and (for anneal/kd) frozen targets."""

    student_logits: Callable[[nn.Module, Batch], torch.Tensor]
    labels: Callable[[Batch], torch.Tensor]
    teacher_logits: Callable[[Batch], torch.Tensor] | None = None


def make_accelerator(device: str = "auto", amp: str = "none", grad_accum: int = 1):
    """An ``accelerate.Accelerator`` for ``device`` in {auto, cpu, cuda} and ``amp`` in
    {none, bf16, fp16}; works alone and under ``accelerate launch`` / ``torchrun``."""
    from accelerate import Accelerator

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    cpu = device == "cpu" or not torch.cuda.is_available()
    if amp == "fp16" and cpu:
        raise UsageError("fp16 mixed precision needs a GPU; use bf16 or none on the CPU")
    mixed = {"none": "no", "no": "no", "bf16": "bf16", "fp16": "fp16"}.get(amp)
    if mixed is None:
        raise UsageError(f"unknown mixed precision {amp!r}; use none, bf16 or fp16")
    return Accelerator(cpu=cpu, mixed_precision=mixed, gradient_accumulation_steps=grad_accum)


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
    outs, ys = [], []
    for batch in loader:
        logits, y = accelerator.gather_for_metrics((forward(model, batch).float(), labels(batch)))
        outs.append(logits.cpu())
        ys.append(y.cpu())
    model.train(was_training)
    return torch.cat(outs), torch.cat(ys)


class Trainer:
    """Runs phases, records every epoch, writes results.json / metrics.jsonl / curves.png."""

    def __init__(self, accelerator, run: RunDir, *, config: dict[str, Any], env: dict[str, Any],
                 evaluate: Callable[[nn.Module], Metrics], selection_metric: str,
                 selected_on: str, seed: int = 42, resume: bool = False,
                 deterministic: bool = False, log_every: int = 10) -> None:
        self.acc, self.run, self.config, self.env = accelerator, run, config, env
        self.evaluate, self.metric, self.selected_on = evaluate, selection_metric, selected_on
        self.seed, self.resume, self.deterministic, self.log_every = seed, resume, deterministic, log_every
        self.records: list[dict[str, Any]] = []
        self.best: dict[str, dict[str, Any]] = {}  # phase name -> best epoch of that phase
        self.extra: dict[str, Any] = {}

    # ---- one phase -------------------------------------------------------------------------
    def fit(self, model: nn.Module, phase: Phase, loader, batches: Batches) -> dict[str, Any]:
        """Train ``model`` (already ``accelerator.prepare`` d) through ``phase``; return its best
        epoch record. The model holds the last weights afterwards."""
        acc, pdir = self.acc, self.run / phase.name
        if phase.epochs < 1:
            raise UsageError(f"{phase.name} needs at least 1 epoch, got {phase.epochs}")
        if get_objective(phase.objective).needs_teacher and batches.teacher_logits is None:
            raise ValueError(f"phase {phase.name}: objective {phase.objective} needs teacher_logits")
        optimizer = acc.prepare(phase.make_optimizer(model))
        loader = acc.prepare(loader)
        total = self.check_phase(phase, len(loader))
        if phase.make_scheduler is not None:
            scheduler = phase.make_scheduler(optimizer, total)
        else:
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                          lambda s: phase.lr_factor(s, total))

        self.run.start(self.config)  # an overwritten run is removed only now, all input checked
        self.run.claim(phase.name)
        acc.wait_for_everyone()
        start, best, opt_steps = 0, None, 0
        committed = load_committed(pdir, tidy=acc.is_main_process) if self.resume else None
        acc.wait_for_everyone()
        if committed is not None:
            state, edir = committed
            acc.unwrap_model(model).load_state_dict(load_weights(edir / "last.safetensors"))
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start, best, opt_steps = state["epoch"], state["best"], state["opt_steps"]
            self.records = list(state["records"])
            if start >= phase.epochs or state["finished"]:
                self.best[phase.name] = best
                acc.print(f"{phase.name}: finished earlier, best epoch {best['epoch']} "
                          f"{self.metric}={best['metric']:.4f}")
                return best

        saved = start  # the last committed epoch
        for epoch in range(start, phase.epochs):
            tic = time.perf_counter()
            # (seed, epoch) only: every phase and method sees the same stream at epoch e
            seed_everything(self.seed * 1009 + epoch, self.deterministic)
            loader.set_epoch(epoch)  # accelerate passes it to an EpochShuffleSampler
            model.train()
            temp, mult = self._anneal(phase, epoch, opt_steps, total)
            loss_sum = torch.zeros((), device=acc.device)
            n_batches = 0
            bar = progress_bar(loader, f"{phase.name} {epoch + 1}/{phase.epochs}", acc.is_main_process)
            for batch in bar:
                with acc.accumulate(model):
                    if phase.anneal_per_step:
                        temp, mult = self._anneal(phase, epoch, opt_steps, total)
                    loss = self._loss(model, phase, batch, batches, mult)
                    acc.backward(loss)
                    if acc.sync_gradients and phase.max_grad_norm:
                        acc.clip_grad_norm_(model.parameters(), phase.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    if acc.sync_gradients:
                        scheduler.step()
                        opt_steps += 1
                loss_sum += loss.detach().float()
                n_batches += 1
                if n_batches % self.log_every == 1 and acc.is_main_process:
                    bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}",
                                    phi="-" if mult is None else f"{mult:.3f}", refresh=False)
                if phase.max_steps and opt_steps >= phase.max_steps:
                    break
            train_loss = (acc.reduce(loss_sum, "mean") / max(1, n_batches)).item()
            if not math.isfinite(train_loss):
                kept = (f"the last good epoch ({saved}) is kept in {pdir / 'last.safetensors'}"
                        if saved else f"no epoch of {phase.name} was saved")
                raise UsageError(f"{phase.name} epoch {epoch + 1}: the training loss is not finite; "
                                 f"{kept}; lower the learning rate or turn off fp16")
            metrics = self.evaluate(model)
            record = {"phase": phase.name, "epoch": epoch + 1, "temperature": temp, "phi": mult,
                      "lr": scheduler.get_last_lr()[0], "train_loss": train_loss, "eval": metrics,
                      "seconds": round(time.perf_counter() - tic, 3)}
            self.records.append(record)
            value = metrics[self.metric]
            improved = best is None or value > best["metric"] or not math.isfinite(best["metric"])
            if improved:
                best = {"phase": phase.name, "epoch": epoch + 1, "metric": value, "eval": metrics}
            finished = epoch + 1 == phase.epochs or bool(phase.max_steps and opt_steps >= phase.max_steps)
            if acc.is_main_process:
                weights = acc.unwrap_model(model).state_dict()
                state = {"epoch": epoch + 1, "finished": finished, "opt_steps": opt_steps,
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "best": best, "records": self.records}
                try:
                    commit_epoch(pdir, epoch + 1, {"best.safetensors": weights if improved else None,
                                                   "last.safetensors": weights}, state)
                except WriteFailed as exc:
                    kept = (f"the last good epoch ({saved}) is kept; pass --resume once there is "
                            "room" if saved else "no epoch of this phase was saved")
                    raise UsageError(f"could not write {exc.path} ({exc.reason}) at the end of "
                                     f"{phase.name} epoch {epoch + 1}; {kept}") from None
            saved = epoch + 1
            acc.wait_for_everyone()
            self.write_results()
            acc.print(_summary(record, self.metric))
            if finished:
                break
        self.best[phase.name] = best
        return best

    def check_phase(self, phase: Phase, batches_per_epoch: int) -> int:
        """The optimizer steps of ``phase``; refuses an annealing schedule that does not fit them
        (called by :meth:`fit`, and before a run trains anything by ``common.methods``)."""
        steps_per_epoch = math.ceil(batches_per_epoch / self.acc.gradient_accumulation_steps)
        total = steps_per_epoch * phase.epochs
        if phase.max_steps:
            total = min(total, phase.max_steps)
        if get_objective(phase.objective).anneals:
            check_schedule(total if phase.anneal_per_step else phase.epochs, phase.max_temperature,
                           "optimizer steps" if phase.anneal_per_step else "epochs")
        return total

    def _anneal(self, phase: Phase, epoch: int, step: int, total: int) -> tuple[int | None, float | None]:
        if not get_objective(phase.objective).anneals:
            return None, None
        i, n = (min(step, total - 1), total) if phase.anneal_per_step else (epoch, phase.epochs)
        t = temperature(i, n, phase.max_temperature)
        return t, phi(t, phase.max_temperature)

    def _loss(self, model, phase: Phase, batch, batches: Batches, mult: float | None) -> torch.Tensor:
        objective = get_objective(phase.objective)
        logits = batches.student_logits(model, batch).float()
        targets = batches.teacher_logits(batch) if objective.needs_teacher else None
        return objective.loss(logits, batches.labels(batch), targets, mult, **phase.options)

    # ---- across phases ---------------------------------------------------------------------
    def load_best(self, model: nn.Module, phase_name: str) -> None:
        """Load the best weights of a finished phase into ``model``."""
        self.acc.wait_for_everyone()
        self.acc.unwrap_model(model).load_state_dict(
            load_weights(self.run / phase_name / "best.safetensors"))

    def select(self, phase_names: list[str]) -> dict[str, Any]:
        """The best epoch over the given phases by the selection metric (first one on ties)."""
        candidates = [self.best[p] for p in phase_names]
        return max(candidates, key=lambda b: b["metric"])

    def final_entry(self, chosen: dict[str, Any], metrics: Metrics | None = None) -> dict[str, Any]:
        """The ``final`` entry of results.json for the chosen epoch."""
        return {"selected_by": self.metric, "selected_on": self.selected_on,
                "selected_phase": chosen["phase"], "selected_epoch": chosen["epoch"],
                "metrics": metrics if metrics is not None else chosen["eval"]}

    def write_results(self, final: dict[str, Any] | None = None) -> None:
        """metrics.jsonl, curves.png (at the end) and last results.json: a run whose results.json
        has its ``final`` entry is complete."""
        if final is not None:
            self.run.plot_curves(self.records, self.metric, title=str(self.config.get("method", "")))
        self.run.write_results(self.config, self.env, self.records, final, **self.extra)


def _summary(r: dict[str, Any], metric: str) -> str:
    anneal = f" T={r['temperature']} phi={r['phi']:.3f}" if r["phi"] is not None else ""
    evals = " ".join(f"{k}={v:.4f}" for k, v in r["eval"].items())
    return (f"[{r['phase']}] epoch {r['epoch']}{anneal} lr={r['lr']:.2e} "
            f"train_loss={r['train_loss']:.4f} {evals} ({r['seconds']:.1f}s)")
