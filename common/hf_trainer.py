"""Annealing-KD (and Hinton KD) inside your own ``transformers.Trainer`` script.

:class:`AnnealingKDTrainer` trains with an objective of ``methods.objectives`` (the CLIs' losses)
against a frozen teacher, run in eval mode under ``torch.inference_mode`` on the training
batches only (the evaluation loss is the hard-label loss). :func:`train_annealing_kd` runs the
two phases as two ``Trainer.train()`` calls and selects the best weights over both, as the CLIs
do. Works with transformers 4.4x and 5.x; ``annealing_kd.common.api`` does not import it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

from torch import nn
from transformers import Trainer

from annealing_kd.common.methods.annealing import AnnealingSchedule
from annealing_kd.common.methods.losses import task_loss
from annealing_kd.common.methods.objectives import get_objective
from annealing_kd.common.training import frozen_teacher
from annealing_kd.common.training.trainer import freeze

__all__ = ["AnnealingKDTrainer", "AnnealingKDResult", "train_annealing_kd"]


class AnnealingKDTrainer(Trainer):
    """A ``transformers.Trainer`` that trains with ``objective`` against a frozen ``teacher``.

    ``objective``: ``"anneal"`` (phase 1: MSE(z_s, Phi(T) * z_t)), ``"task"`` (hard labels, no
    teacher) or ``"kd"`` (Hinton KD). ``anneal`` runs its schedule up to ``max_temperature`` over
    the Trainer's epochs, or its optimizer steps with ``anneal_per_step``. ``objective_options``:
    the objectives' options by name (``anneal_reduction``, ``kd_alpha``, ...; the CLIs' defaults).
    The teacher reads the student's batch unless ``teacher_forward(teacher, inputs) -> logits``
    is given. Everything else goes to ``Trainer``. The batch needs ``labels``.
    """

    loss_is_scaled_for_ga = False  # transformers 5: our loss is a per-batch mean

    def __init__(self, *args: Any, teacher: nn.Module | None = None, objective: str = "anneal",
                 max_temperature: int = 1, anneal_per_step: bool = False,
                 objective_options: dict[str, Any] | None = None,
                 teacher_forward: frozen_teacher.Forward | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.objective_name, self.objective = objective, get_objective(objective)
        known = {o.name for o in self.objective.options}
        unknown = set(objective_options or {}) - known
        if unknown:
            raise ValueError(f"objective {objective!r} has no option {', '.join(sorted(unknown))}; "
                             f"its options: {', '.join(sorted(known)) or 'none'}")
        if self.objective.needs_teacher and teacher is None:
            raise ValueError(f"objective {objective!r} needs a teacher: pass teacher=")
        self.teacher = freeze(teacher).to(self.args.device) if teacher is not None else None
        self.teacher_forward = teacher_forward
        self.max_temperature, self.anneal_per_step = max_temperature, anneal_per_step
        self.objective_options = dict(objective_options or {})
        self.last_annealing: tuple[int | None, float | None] = (None, None)  # of the last step
        # transformers 4.4x: divide our per-batch mean by the gradient-accumulation steps
        self.model_accepts_loss_kwargs = False

    def annealing(self) -> tuple[int | None, float | None]:
        """(T, Phi) of the current epoch or optimizer step of training; (None, None) without
        annealing. Refuses (``UsageError``) fewer of them than ``max_temperature``."""
        if not self.objective.anneals:
            return None, None
        state, tau = self.state, self.max_temperature
        if self.anneal_per_step:
            return AnnealingSchedule.per_step(state.max_steps, tau)(state.global_step)
        epochs = state.num_train_epochs or math.ceil(self.args.num_train_epochs)
        # state.epoch is e at the start of epoch e, e + k/n after its k-th of n steps
        return AnnealingSchedule.per_epoch(epochs, tau)(math.floor(state.epoch + 1e-6))

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     **kwargs: Any):
        """The objective's loss on a training batch; the hard-label loss in evaluation."""
        key = next((k for k in frozen_teacher.LABEL_KEYS if k in inputs), None)
        if key is None:
            raise ValueError(f"the batch has no labels (keys: {', '.join(inputs)}); every "
                             "objective needs them: keep a 'labels' column in the dataset")
        features = {k: v for k, v in inputs.items() if k not in frozen_teacher.LABEL_KEYS}
        outputs = model(**features)
        logits, labels = frozen_teacher.logits_of(outputs).float(), inputs[key]
        if not model.training:
            loss = task_loss(logits, labels)
        else:
            self.last_annealing = self.annealing()
            targets = None
            if self.objective.needs_teacher:  # the teacher reads ``inputs`` by its own forward
                batch = features if self.teacher_forward is None else inputs
                targets = frozen_teacher.teacher_logits(self.teacher, batch,
                                                        forward=self.teacher_forward)
            loss = self.objective.loss(logits, labels, targets, self.last_annealing[1],
                                       **self.objective_options)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Training logs carry the temperature and Phi of the last step (to every tracker)."""
        if self.objective.anneals and "loss" in logs:
            logs["temperature"], logs["phi"] = self.last_annealing
        super().log(logs, *args, **kwargs)


@dataclass
class AnnealingKDResult:
    """The two phases' trainers and the phase whose best weights the model holds."""

    phase1: AnnealingKDTrainer
    phase2: AnnealingKDTrainer | None
    selected: str


def train_annealing_kd(model: nn.Module, teacher: nn.Module, phase1_args, phase2_args=None, *,
                       max_temperature: int, anneal_per_step: bool = False,
                       anneal_reduction: str = "mean",
                       teacher_forward: frozen_teacher.Forward | None = None,
                       trainer_class: type[AnnealingKDTrainer] = AnnealingKDTrainer,
                       **trainer_kwargs: Any) -> AnnealingKDResult:
    """Annealing-KD in two ``Trainer.train()`` calls on ``model`` (trained in place).

    Phase 1 (``phase1_args``) anneals against the frozen ``teacher``; phase 2 (``phase2_args``;
    None: skipped) trains on the hard labels from phase 1's best weights. For best weights, set
    ``load_best_model_at_end=True`` and ``metric_for_best_model`` in both arguments (eval and
    save each epoch, as the CLIs select); the model then ends with the better phase's best.
    ``trainer_kwargs`` (datasets, collator, compute_metrics, ...) go to both trainers.
    """
    if phase2_args is not None and phase1_args.output_dir == phase2_args.output_dir:
        raise ValueError("phase 1 and phase 2 need different output_dir (their checkpoints "
                         f"would overwrite each other in {phase1_args.output_dir})")
    p1 = trainer_class(model=model, args=phase1_args, teacher=teacher, objective="anneal",
                       max_temperature=max_temperature, anneal_per_step=anneal_per_step,
                       objective_options={"anneal_reduction": anneal_reduction},
                       teacher_forward=teacher_forward, **trainer_kwargs)
    p1.train()
    if phase2_args is None:
        return AnnealingKDResult(p1, None, "phase1")
    if not phase1_args.load_best_model_at_end:
        warnings.warn("phase 2 starts from phase 1's last weights: set load_best_model_at_end="
                      "True and metric_for_best_model in phase 1's arguments to start from its best",
                      stacklevel=2)
    p2 = trainer_class(model=p1.model, args=phase2_args, objective="task", **trainer_kwargs)
    p2.train()
    return AnnealingKDResult(p1, p2, _select(p1, p2))


def _select(p1: Trainer, p2: Trainer) -> str:
    """Load phase 1's best into the model when it is at least as good as phase 2's (ties: the
    earlier epoch, as the CLIs); the phase whose best the model holds."""
    a, b = p1.state.best_metric, p2.state.best_metric
    same = (p1.args.metric_for_best_model == p2.args.metric_for_best_model
            and p1.args.load_best_model_at_end and p2.args.load_best_model_at_end)
    if not same or a is None or b is None:
        return "phase2"
    if a >= b if p2.args.greater_is_better else a <= b:
        p1._load_best_model()
        return "phase1"
    return "phase2"
