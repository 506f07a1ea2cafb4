"""Annealing-KD (and Hinton KD) inside your own ``transformers.Trainer`` script.

:class:`AnnealingKDTrainer` with :class:`AnnealingKDTrainingArguments` runs both phases in one
``train()`` call (and resumes from a checkpoint of either); with plain ``TrainingArguments`` it
trains with one objective of ``methods.objectives`` (the CLIs' losses), and
:func:`train_annealing_kd` runs the two phases as two trainers. The frozen teacher runs in eval
mode under ``torch.inference_mode`` on the training batches only (the evaluation loss is the
hard-label loss); before training, the chance-teacher guard checks it on the eval dataset. Works
with transformers 4.4x and 5.x; ``annealing_kd.common.api`` does not import it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainingArguments, enable_full_determinism, set_seed
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import get_last_checkpoint

from .cli.settings import SETTINGS, per_cli
from .methods.annealing import AnnealingSchedule
from .methods.losses import task_loss
from .methods.objectives import get_objective
from .training import frozen_teacher
from .training.guards import check_teacher_logits
from .training.trainer import freeze

__all__ = ["AnnealingKDTrainer", "AnnealingKDTrainingArguments", "AnnealingKDResult",
           "train_annealing_kd"]
PHASES = ("phase1", "phase2")


def _setting(default: Any, name: str, **metadata: Any) -> Any:
    """A dataclass field with the help text of the CLIs' setting ``name`` (the text CLI's)."""
    return field(default=default, metadata={"help": per_cli(SETTINGS[name].help, "text"),
                                            **metadata})


@dataclass
class AnnealingKDTrainingArguments(TrainingArguments):
    """``TrainingArguments`` of Annealing-KD in one :meth:`AnnealingKDTrainer.train` call: phase 1
    writes its checkpoints to ``output_dir/phase1``, phase 2 to ``output_dir/phase2``; each
    phase's epochs replace ``num_train_epochs``. The defaults are the text CLI's."""

    max_temperature: int = _setting(7, "max_temperature")
    num_train_epochs_phase_1: int = _setting(14, "student_epochs_p1")
    num_train_epochs_phase_2: int = _setting(4, "student_epochs_p2")
    anneal_per_step: bool = _setting(False, "anneal_per_step")
    anneal_reduction: str = _setting("mean", "anneal_reduction", choices=["mean", "sum"])
    phase2_objective: str = field(default="task", metadata={
        "help": "the phase-2 loss: an objective of annealing_kd.common.methods.objectives "
                "(task: the hard labels)"})
    fail_on_chance_teacher: bool = _setting(False, "fail_on_chance_teacher")


class AnnealingKDTrainer(Trainer):
    """A ``transformers.Trainer`` that distils a frozen ``teacher`` into the model.

    With :class:`AnnealingKDTrainingArguments`: Annealing-KD, phase 1 then phase 2, in one
    :meth:`train`. With plain ``TrainingArguments``: one ``objective``, ``"anneal"`` (phase 1:
    MSE(z_s, Phi(T) * z_t), its schedule up to ``max_temperature`` over the Trainer's epochs, or
    its optimizer steps with ``anneal_per_step``), ``"task"`` (hard labels, no teacher) or
    ``"kd"`` (Hinton KD); ``objective_options``: the objectives' options by name
    (``anneal_reduction``, ``kd_alpha``, ...; the CLIs' defaults). The teacher reads the
    student's batch unless ``teacher_forward(teacher, inputs) -> logits`` is given. Everything
    else goes to ``Trainer``. The batch needs ``labels``.
    """

    loss_is_scaled_for_ga = False  # transformers 5: our loss is a per-batch mean

    def __init__(self, *args: Any, teacher: nn.Module | None = None, objective: str | None = None,
                 max_temperature: int | None = None, anneal_per_step: bool | None = None,
                 objective_options: dict[str, Any] | None = None,
                 teacher_forward: frozen_teacher.Forward | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        a = self.args
        if isinstance(a, AnnealingKDTrainingArguments):
            given = [k for k, v in (("objective", objective), ("max_temperature", max_temperature),
                                    ("anneal_per_step", anneal_per_step),
                                    ("objective_options", objective_options)) if v is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: with AnnealingKDTrainingArguments, set the "
                                 "annealing settings there (phase 1 anneals, phase 2 trains with "
                                 "phase2_objective)")
            if not a.anneal_per_step:  # refused before any training
                AnnealingSchedule.per_epoch(a.num_train_epochs_phase_1, a.max_temperature)
            get_objective(a.phase2_objective)
            objective, objective_options = "anneal", {"anneal_reduction": a.anneal_reduction}
            max_temperature, anneal_per_step = a.max_temperature, a.anneal_per_step
        self.use_objective(objective or "anneal", objective_options)
        if self.objective.needs_teacher and teacher is None:
            raise ValueError(f"objective {self.objective_name!r} needs a teacher: pass teacher=")
        self.teacher = freeze(teacher).to(self.args.device) if teacher is not None else None
        self.teacher_forward = teacher_forward
        self.max_temperature, self.anneal_per_step = max_temperature or 1, bool(anneal_per_step)
        self.last_annealing: tuple[int | None, float | None] = (None, None)  # of the last step
        self.teacher_check: dict[str, Any] | None = None  # the chance-teacher guard's record
        self.phase_states: dict[str, TrainerState] = {}  # of each phase, by name (one call)
        self.selected_phase: str | None = None  # whose best weights the model holds (one call)
        # transformers 4.4x: divide our per-batch mean by the gradient-accumulation steps
        self.model_accepts_loss_kwargs = False

    def use_objective(self, name: str, options: dict[str, Any] | None = None) -> None:
        """Train with objective ``name`` and its ``options`` from now on."""
        objective = get_objective(name)
        known = {o.name for o in objective.options}
        unknown = set(options or {}) - known
        if unknown:
            raise ValueError(f"objective {name!r} has no option {', '.join(sorted(unknown))}; "
                             f"its options: {', '.join(sorted(known)) or 'none'}")
        self.objective_name, self.objective = name, objective
        self.objective_options = dict(options or {})

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
        key = _label_key(inputs)
        features = {k: v for k, v in inputs.items() if k not in frozen_teacher.LABEL_KEYS}
        outputs = model(**features)
        logits, labels = frozen_teacher.logits_of(outputs).float(), inputs[key]
        if not model.training:
            loss = task_loss(logits, labels)
        else:
            self.last_annealing = self.annealing()
            targets = self.teacher_logits(inputs) if self.objective.needs_teacher else None
            loss = self.objective.loss(logits, labels, targets, self.last_annealing[1],
                                       **self.objective_options)
        return (loss, outputs) if return_outputs else loss

    def teacher_logits(self, inputs: dict[str, Any]):
        """The frozen teacher's logits on a batch (by ``teacher_forward`` if given)."""
        return frozen_teacher.teacher_logits(self.teacher, inputs, forward=self.teacher_forward)

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Training logs carry the temperature and Phi of the last step (to every tracker)."""
        if self.objective.anneals and "loss" in logs:
            logs["temperature"], logs["phi"] = self.last_annealing
        super().log(logs, *args, **kwargs)

    def check_teacher(self) -> dict[str, Any] | None:
        """The chance-teacher guard on the (first) eval dataset, before training: a teacher no
        better than chance is a warning, or with ``fail_on_chance_teacher`` (arguments) a
        ``UsageError``. Logged (``teacher_<metric>``, ``teacher_chance``, ``teacher_at_chance``:
        to every tracker) and kept in ``teacher_check``; None without teacher or eval data."""
        data = self.eval_dataset
        if self.teacher is None or data is None:
            return None
        data = next(iter(data.values())) if isinstance(data, dict) else data
        batches = list(self.get_eval_dataloader(data))
        logits = torch.cat([self.teacher_logits(b).cpu() for b in batches])
        labels = torch.cat([b[_label_key(b)].cpu() for b in batches])
        check = check_teacher_logits(
            logits, labels, "eval", fail=getattr(self.args, "fail_on_chance_teacher", False),
            advice="check that the teacher was fine-tuned on this task, with this label order")
        self.log({f"teacher_{check['metric']}": check["value"], "teacher_chance": check["chance"],
                  "teacher_at_chance": float(check["at_chance"])})
        self.teacher_check = check
        return check

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        """The chance-teacher guard, then training. With :class:`AnnealingKDTrainingArguments`
        both phases: phase 2 from phase 1's best weights (with ``load_best_model_at_end``), as a
        new Trainer would start it (seeded, new optimizer); the model ends with the best weights
        of both phases (ties: phase 1), ``selected_phase`` says which. ``resume_from_checkpoint``:
        a checkpoint folder of either phase, or True for the last one. Returns the last phase's
        ``TrainOutput``."""
        self.check_teacher()
        if not isinstance(self.args, AnnealingKDTrainingArguments):
            return super().train(resume_from_checkpoint, *args, **kwargs)
        full, plan = self.args, self.phase_plan()
        start, checkpoint = self.resume_point(resume_from_checkpoint, len(plan))
        try:
            for i, (name, epochs, objective, options) in enumerate(plan):
                folder = os.path.join(full.output_dir, name)
                if i < start:  # finished before the checkpoint we resume from
                    self.phase_states[name] = _last_state(folder)
                    continue
                if i > start:  # as Trainer.__init__ seeds
                    seed = enable_full_determinism if full.full_determinism else set_seed
                    seed(full.seed)
                    self.optimizer, self.lr_scheduler, self.model_wrapped = None, None, self.model
                self.args = copy.copy(full)
                self.args.output_dir, self.args.num_train_epochs = folder, epochs
                self.use_objective(objective, options)
                output = super().train(checkpoint if i == start else None, *args, **kwargs)
                self.phase_states[name] = self.state
        finally:
            self.args = full
        self.select_phase()
        return output

    def phase_plan(self) -> list[tuple[str, int, str, dict[str, Any]]]:
        """(name, epochs, objective, its options) of each phase to run."""
        a = self.args
        plan = [(PHASES[0], a.num_train_epochs_phase_1, "anneal",
                 {"anneal_reduction": a.anneal_reduction})]
        if a.num_train_epochs_phase_2:
            if not a.load_best_model_at_end:
                warnings.warn("phase 2 starts from phase 1's last weights: set load_best_model_at_"
                              "end=True and metric_for_best_model to start from its best",
                              stacklevel=3)
            plan.append((PHASES[1], a.num_train_epochs_phase_2, a.phase2_objective, {}))
        return plan

    def resume_point(self, resume: str | bool | None, phases: int) -> tuple[int, str | None]:
        """(index of the phase to resume, its checkpoint folder) of ``resume_from_checkpoint``."""
        if not resume:
            return 0, None
        if resume is True:
            for i in reversed(range(phases)):
                folder = os.path.join(self.args.output_dir, PHASES[i])
                last = get_last_checkpoint(folder) if os.path.isdir(folder) else None
                if last:
                    return i, last
            raise ValueError(f"no checkpoint to resume from in {self.args.output_dir}/phase1 "
                             "or /phase2")
        phase = os.path.basename(os.path.dirname(os.path.normpath(resume)))
        if phase not in PHASES[:phases]:
            raise ValueError(f"{resume} is not a checkpoint of a phase: give <output_dir>/phase1/"
                             "checkpoint-N or <output_dir>/phase2/checkpoint-N")
        return PHASES.index(phase), str(resume)

    def select_phase(self) -> str:
        """Load phase 1's best into the model when it is at least as good as phase 2's."""
        first, then = self.phase_states[PHASES[0]], self.phase_states.get(PHASES[1])
        self.selected_phase = PHASES[1] if then else PHASES[0]
        if then and _first_is_better(first, then, self.args):
            self.load_best_checkpoint(first.best_model_checkpoint)
            self.selected_phase = PHASES[0]
        return self.selected_phase

    def load_best_checkpoint(self, checkpoint: str | None = None) -> None:
        """Load the weights of ``checkpoint`` (default: ``state.best_model_checkpoint``) into the
        model: its ``model.safetensors``, or the shards its index names."""
        folder = checkpoint or self.state.best_model_checkpoint
        if folder is None:
            raise ValueError("no best checkpoint: set load_best_model_at_end=True and "
                             "metric_for_best_model")
        from safetensors.torch import load_file

        index = os.path.join(folder, "model.safetensors.index.json")
        files = ["model.safetensors"]
        if os.path.isfile(index):
            with open(index) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        weights = {k: v for name in files for k, v in load_file(os.path.join(folder, name)).items()}
        unexpected = self.accelerator.unwrap_model(self.model).load_state_dict(
            weights, strict=False).unexpected_keys
        if unexpected:
            raise ValueError(f"{folder} holds weights the model lacks: {', '.join(unexpected)}")


def _label_key(inputs: dict[str, Any]) -> str:
    key = next((k for k in frozen_teacher.LABEL_KEYS if k in inputs), None)
    if key is None:
        raise ValueError(f"the batch has no labels (keys: {', '.join(inputs)}); every objective "
                         "needs them: keep a 'labels' column in the dataset")
    return key


def _last_state(folder: str) -> TrainerState:
    """The trainer state of the last checkpoint in ``folder`` (none: an empty state)."""
    last = get_last_checkpoint(folder) if os.path.isdir(folder) else None
    if last is None:
        return TrainerState()
    return TrainerState.load_from_json(os.path.join(last, "trainer_state.json"))


def _first_is_better(first: TrainerState, then: TrainerState, args: TrainingArguments) -> bool:
    """Whether the best of ``first`` is at least as good as that of ``then`` (both kept)."""
    a, b = first.best_metric, then.best_metric
    if not args.load_best_model_at_end or a is None or b is None:
        return False
    return a >= b if args.greater_is_better else a <= b


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
    """Annealing-KD in two ``Trainer.train()`` calls on ``model`` (trained in place); one call,
    with resume: :class:`AnnealingKDTrainingArguments`.

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


def _select(p1: AnnealingKDTrainer, p2: AnnealingKDTrainer) -> str:
    """Load phase 1's best into the model when it is at least as good as phase 2's (ties: the
    earlier epoch, as the CLIs); the phase whose best the model holds."""
    if (p1.args.metric_for_best_model == p2.args.metric_for_best_model
            and p1.args.load_best_model_at_end and _first_is_better(p1.state, p2.state, p2.args)):
        p1.load_best_checkpoint()
        return "phase1"
    return "phase2"
