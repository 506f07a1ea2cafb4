"""The run settings every CLI shares: epoch budgets, the annealing schedule, learning rates, the
objectives' options, seed, resume and overwrite.

A :class:`Setting` is declared once, here or beside the objective that reads it
(``annealing_kd.common.methods.objectives``); each CLI gets it as a flag in its own spelling (:func:`flag_names`: the
image CLI writes ``--kd-alpha`` and takes ``--kd_alpha`` too, the text CLI ``--kd_alpha``; a
setting may keep its original flag names per CLI), its value checked (:func:`check`) and, unless
``resume=False``, compared by ``--resume`` (:func:`resume_keys`). Each CLI's own settings (data,
models, tokenizers, image sizes) stay in that CLI. No heavy imports: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from annealing_kd.common.cli.args import check_number, integer, real, twins, whole_number
from annealing_kd.common.errors import UsageError, setting
from annealing_kd.common.integrations import tracking

CLIS = ("image", "text")


@dataclass(frozen=True)
class Setting:
    """One run setting. ``default`` / ``help`` may be a mapping CLI -> value where the CLIs
    differ; ``flags``: CLI -> its flag names (default: the name, spelled by the CLI);
    ``check(value)`` raises a :class:`UsageError` naming ``setting(name)``."""

    name: str
    help: str | Mapping[str, str]
    default: Any = None
    type: Callable[[str], Any] | None = None
    choices: Sequence[str] | None = None
    switch: bool = False  # a flag without a value (store_true)
    check: Callable[[Any], None] | None = None
    resume: bool = True  # --resume refuses a change
    flags: Mapping[str, Sequence[str]] = field(default_factory=dict)
    clis: Sequence[str] = CLIS
    group: str = "run settings (both CLIs)"

    def default_for(self, cli: str) -> Any:
        return self.default.get(cli) if isinstance(self.default, Mapping) else self.default

    def help_for(self, cli: str) -> str:
        return self.help.get(cli, "") if isinstance(self.help, Mapping) else self.help


SETTINGS: dict[str, Setting] = {}


def register(*settings: Setting) -> None:
    """Declare settings (an objective's options: ``annealing_kd.common.methods.objectives.register_objective``)."""
    for s in settings:
        if SETTINGS.get(s.name, s) != s:
            raise ValueError(f"setting {s.name!r} is declared twice, differently")
        SETTINGS[s.name] = s


def unregister(*names: str) -> None:
    for name in names:
        SETTINGS.pop(name, None)


def settings_of(cli: str) -> list[Setting]:
    return [s for s in SETTINGS.values() if cli in s.clis]


# ---- flags ------------------------------------------------------------------------------------
def flag_names(s: Setting, cli: str) -> list[str]:
    """The flags of a setting in a CLI: the image CLI takes every name with its ``-``/``_`` twin."""
    if cli == "image":
        return twins(*(s.flags.get(cli) or ["--" + s.name.replace("_", "-")]))
    return list(s.flags.get(cli) or ["--" + s.name])


def add_arguments(parser: argparse.ArgumentParser, cli: str) -> None:
    """Every setting of ``cli`` as a flag, in argument groups."""
    groups: dict[str, Any] = {}
    for s in settings_of(cli):
        g = groups.get(s.group) or groups.setdefault(s.group, parser.add_argument_group(s.group))
        kw: dict[str, Any] = {"dest": s.name, "help": s.help_for(cli)}
        if s.switch:
            kw.update(action="store_true")
        else:
            kw.update(default=s.default_for(cli), type=s.type, choices=s.choices)
        g.add_argument(*flag_names(s, cli), **kw)


def flag_speller(parser: argparse.ArgumentParser) -> Callable[[str], str]:
    """``name -> flag`` for messages: the parser's flag whose name is the setting's (else its
    first flag; ``--name`` for a name the parser does not know)."""
    flags: dict[str, str] = {}
    for action in parser._actions:
        names = [o for o in action.option_strings if o.startswith("--")]
        same = [o for o in names if o[2:].replace("-", "_") == action.dest]
        if same:
            flags[action.dest] = same[0]
        elif names:
            flags.setdefault(action.dest, names[0])
    return lambda name: flags.get(name, "--" + name)


# ---- values -----------------------------------------------------------------------------------
# the epoch budget of a step (annealing_kd.common.methods.Step.budget) -> its setting; a new method's own
# budget names fall back to the student's
BUDGETS = {"teacher": "teacher_epochs", "assistant": "assistant_epochs",
           "student": "student_epochs", "phase1": "student_epochs_p1",
           "phase2": "student_epochs_p2"}
# a setting -> the budget whose steps take another setting's value instead, when that one is set
BY_BUDGET = {"learning_rate": {"phase2": "phase2_learning_rate",
                                "teacher": "teacher_learning_rate"},  # the text CLI's own
             "lr_milestones": {"phase1": "phase1_lr_milestones"}}


def budget_setting(budget: str) -> str:
    return BUDGETS.get(budget, BUDGETS["student"])


def resolve(args: argparse.Namespace) -> None:
    """Fill the defaults that follow from other settings: the student's epochs are phase 1 +
    phase 2 (Annealing-KD's budget), the assistant's the student's."""
    if getattr(args, "student_epochs", None) is None:
        args.student_epochs = args.student_epochs_p1 + args.student_epochs_p2
    if getattr(args, "assistant_epochs", None) is None:
        args.assistant_epochs = args.student_epochs


def epochs(args: argparse.Namespace, budget: str) -> int:
    return getattr(args, budget_setting(budget))


def for_budget(args: argparse.Namespace, name: str, budget: str) -> Any:
    """A setting's value for the steps of ``budget`` (e.g. ``learning_rate`` of phase 2 is
    ``phase2_learning_rate`` when that is set)."""
    special = BY_BUDGET.get(name, {}).get(budget)
    value = getattr(args, special, None) if special else None
    return getattr(args, name) if value is None else value


def resume_keys(cli: str) -> list[str]:
    return [s.name for s in settings_of(cli) if s.resume]


# ---- checks -----------------------------------------------------------------------------------
def check(args: argparse.Namespace, cli: str) -> None:
    """Refuse bad settings before anything loads: each value, and resume with overwrite (a
    method's steps: :func:`annealing_kd.common.methods.objectives.check_steps`)."""
    resolve(args)
    for s in settings_of(cli):
        value = getattr(args, s.name, None)
        if s.check is not None and value is not None:
            s.check(value)
    if args.resume and args.overwrite_output_dir:
        raise UsageError(f"{setting('resume')} and {setting('overwrite_output_dir')} contradict "
                         "each other; pass one")


def positive(name: str) -> Callable[[Any], None]:
    return lambda v: check_number(name, v, low=0, strict=True)


def at_least(name: str, low: float) -> Callable[[Any], None]:
    return lambda v: check_number(name, v, low=low)


def milestones(text: str) -> tuple[float, ...]:
    """``--lr-milestones``: fractions of a phase's optimizer steps, increasing, in (0, 1);
    ``none``: a constant learning rate."""
    if text.strip().lower() == "none":
        return ()
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers (e.g. 0.5,0.75) or none") from None
    if not all(0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: each milestone is a fraction of the phase in "
                                         "(0, 1), e.g. 0.5,0.75")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise argparse.ArgumentTypeError(f"{text!r}: milestones must increase, e.g. 0.5,0.75")
    return values


OBJECTIVE_GROUP = "objective options (both CLIs)"

register(Setting(
    "report_to", "experiment tracking through accelerate's trackers, written to "
    "<output dir>/tracking: none, tensorboard, wandb, mlflow, trackio (each an extra: pip install "
    "'annealing-kd[tensorboard]') or all (every one installed)", "none", choices=tracking.CHOICES,
    check=tracking.check_report_to, resume=False))

register(
    Setting("teacher_epochs", "epochs to train the teacher (when it is trained here)",
            {"image": 200, "text": 3}, whole_number, flags={"image": ["--teacher_epochs"]}),
    Setting("assistant_epochs", "epochs of the TAKD assistant (default: the student's)", None,
            whole_number, flags={"text": ["--assistant_epochs"]}),
    Setting("student_epochs", "epochs of the student for scratch/finetune, kd and takd (default: "
            "phase 1 + phase 2, Annealing-KD's budget)", None, whole_number,
            flags={"text": ["--num_train_epochs"]}),
    Setting("student_epochs_p1", "Annealing-KD phase-1 epochs (annealed teacher logits)",
            {"image": 200, "text": 14}, whole_number,
            flags={"image": ["--student_epochs_p1"], "text": ["--num_train_epochs_phase_1"]}),
    Setting("student_epochs_p2", "Annealing-KD phase-2 epochs (hard labels, from the best phase-1 "
            "student); 0: phase 1 only, the final student is its best epoch",
            {"image": 100, "text": 4}, whole_number,
            flags={"image": ["--student_epochs_p2"], "text": ["--num_train_epochs_phase_2"]}),
    Setting("max_temperature", "tau_max of the annealing schedule", {"image": 10, "text": 7}, integer,
            flags={"image": ["--max_temperature"]}),
    Setting("anneal_per_step", "step the annealing temperature per optimizer step instead of per "
            "epoch", switch=True),
    Setting("learning_rate", {
        "image": "SGD lr of ResNets (and torchvision:/timm: models), multiplied by 0.1 at each "
                 "--lr-milestones fraction of a phase; plain CNNs: constant lr/10 (0.01 by default, "
                 "as the original)",
        "text": "AdamW peak learning rate"}, {"image": 0.1, "text": 5e-5}, real,
            check=positive("learning_rate")),
    Setting("phase2_learning_rate", "base learning rate of Annealing-KD's phase 2 (default: the "
            "learning rate)", None, real, check=positive("phase2_learning_rate")),
    Setting("lr_milestones", "fractions of each phase's optimizer steps at which the lr is "
            "multiplied by 0.1 (ResNets, torchvision:/timm: models); none: constant",
            "0.5,0.75", milestones, clis=("image",)),
    Setting("phase1_lr_milestones", "the same for Annealing-KD's phase 1 only (default: "
            "--lr-milestones)", None, milestones, clis=("image",)),
    Setting("seed", "seed of initialisation, data order and split", {"image": 20, "text": 42}, integer,
            check=lambda v: check_number("seed", v, low=0, high=2**32 - 1)),  # numpy's seeds
    Setting("resume", "continue the unfinished run in the output directory with the same "
            "settings (refused if there is none)", switch=True, resume=False),
    Setting("overwrite_output_dir", "replace a run in the output directory", switch=True,
            resume=False),
)
