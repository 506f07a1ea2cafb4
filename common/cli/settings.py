"""The settings of both CLIs, each declared once as a :class:`Setting`: the shared ones here (or
beside the objective that reads it), each CLI's own in that CLI (:func:`declare`). No heavy
imports: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import UsageError, setting
from ..integrations import tracking
from .args import Parser, check_number, integer, real, twins, whole_number

CLIS = ("image", "text")


@dataclass(frozen=True)
class Setting:
    """One setting. ``default`` / ``help`` / ``choices`` may be a mapping CLI -> value where the
    CLIs differ, or a function (read when the parser is built); ``flags``: its flag names
    (or CLI -> names; default: the name, spelled by the CLI); ``extra``: CLI -> more
    ``add_argument`` keywords; ``check(value)`` raises a :class:`UsageError`; ``resume``: whether
    ``--resume`` refuses a change."""

    name: str
    help: Any
    default: Any = None
    type: Callable[[str], Any] | None = None
    choices: Any = None
    switch: bool = False  # a flag without a value (store_true)
    check: Callable[[Any], None] | None = None
    resume: bool = True
    flags: Sequence[str] | Mapping[str, Sequence[str]] = ()
    clis: Sequence[str] = CLIS
    group: str = "run settings (both CLIs)"
    extra: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def per_cli(value: Any, cli: str) -> Any:
    """A field's value in ``cli``: a mapping's entry, a function's result."""
    value = value.get(cli) if isinstance(value, Mapping) else value
    return value() if callable(value) else value


SETTINGS: dict[str, Setting] = {}


def register(*settings: Setting) -> None:
    """Declare settings (an objective's options: ``objectives.register_objective``)."""
    for s in settings:
        if SETTINGS.get(s.name, s) != s:
            raise ValueError(f"setting {s.name!r} is declared twice, differently")
        SETTINGS[s.name] = s


def unregister(*names: str) -> None:
    for name in names:
        SETTINGS.pop(name, None)


def settings_of(cli: str) -> list[Setting]:
    return [s for s in SETTINGS.values() if cli in s.clis]


def declare(cli: str, groups: Mapping[str, Sequence[Setting | str]]) -> dict[str, list[str]]:
    """Register a CLI's own settings, given by argument group (in ``--help`` order; a shared
    setting by its name): returns the groups for :func:`parser`."""
    layout: dict[str, list[str]] = {}
    for title, entries in groups.items():
        own = [replace(e, clis=(cli,), group=title) for e in entries if isinstance(e, Setting)]
        register(*own)
        layout[title] = [e if isinstance(e, str) else e.name for e in entries]
    return layout


# ---- flags ------------------------------------------------------------------------------------
def flag_names(s: Setting, cli: str) -> list[str]:
    """The flags of a setting in a CLI: the image CLI takes every name with its ``-``/``_`` twin."""
    names = s.flags.get(cli) if isinstance(s.flags, Mapping) else s.flags
    if cli == "image":
        return twins(*(names or ["--" + s.name.replace("_", "-")]))
    return list(names or ["--" + s.name])


def parser(cli: str, before: Mapping[str, Sequence[str]], after: Mapping[str, Sequence[str]],
           **kwargs: Any) -> Parser:
    """A :class:`Parser` (``kwargs``) with every setting of ``cli`` as a flag, in argument groups:
    the CLI's groups ``before`` (:func:`declare`), the shared settings placed in none of them in
    their own groups, ``after``."""
    p = Parser(**kwargs)
    placed = {name for layout in (before, after) for names in layout.values() for name in names}
    rest: dict[str, list[str]] = {}
    for s in settings_of(cli):
        if s.name not in placed:
            rest.setdefault(s.group, []).append(s.name)
    for title, names in {**before, **rest, **after}.items():
        group = p.add_argument_group(title)
        for s in (SETTINGS[name] for name in names):
            kind = {"action": "store_true"} if s.switch else {
                "default": per_cli(s.default, cli), "type": s.type,
                "choices": per_cli(s.choices, cli)}
            group.add_argument(*flag_names(s, cli), **{"dest": s.name, "help": per_cli(s.help, cli),
                                                       **kind, **s.extra.get(cli, {})})
    p.add_argument(*flag_names(Setting("print_config", None), cli), action="store_true",
                   default=argparse.SUPPRESS, help="print the effective config (YAML, as the run "
                   "writes it to <output dir>/config.yaml) and exit without running")
    p.from_results = lambda saved: config_of(argparse.Namespace(**saved), cli)
    return p


def flag_of(cli: str, name: str) -> str:
    """How ``cli`` writes setting ``name`` in messages: its first flag (``--name`` for a name
    that is not one of its settings)."""
    s = SETTINGS.get(name)
    return flag_names(s, cli)[0] if s and cli in s.clis else "--" + name


# ---- config files: <output dir>/config.yaml, --print_config ------------------------------------
NOT_CONFIG = ("resume", "overwrite_output_dir")  # how a run starts, not what it is


def config_of(args: argparse.Namespace, cli: str) -> dict[str, Any]:
    """The settings of ``args`` as a config file that reproduces the run: each by its name (as
    results.json's config), a tuple as a list (empty: ``none``). Settings stored under another's
    name (``--cuda``) and :data:`NOT_CONFIG` are left out."""
    config: dict[str, Any] = {}
    for s in settings_of(cli):
        if s.name in NOT_CONFIG or not hasattr(args, s.name):
            continue
        value = getattr(args, s.name)
        if isinstance(value, tuple | list):
            value = list(value) or "none"
        config[s.name] = value
    return config


def config_yaml(args: argparse.Namespace, cli: str) -> str:
    import yaml

    return yaml.safe_dump(config_of(args, cli), sort_keys=False)


def print_config(args: argparse.Namespace, cli: str) -> bool:
    """``--print_config``: print the effective config; True when the run is then not started."""
    if getattr(args, "print_config", False):
        print(config_yaml(args, cli), end="")
    return getattr(args, "print_config", False)


# ---- values -----------------------------------------------------------------------------------
# the epoch budget of a step (annealing_kd.common.methods.PhasePlan.budget) -> its setting; a new
# method's own budget names fall back to the student's
BUDGETS = {"teacher": "teacher_epochs", "assistant": "assistant_epochs",
           "student": "student_epochs", "phase1": "student_epochs_p1",
           "phase2": "student_epochs_p2"}
# a setting -> the budget whose steps take another setting's value instead, when that one is set
BY_BUDGET = {"learning_rate": {"phase2": "phase2_learning_rate",
                                "teacher": "teacher_learning_rate"},  # the text CLI's own
             "lr_milestones": {"phase1": "phase1_lr_milestones"},
             "lr_scheduler_type": {"phase1": "phase1_lr_scheduler_type"}}  # the text CLI's own


def budget_setting(budget: str) -> str:
    return BUDGETS.get(budget, BUDGETS["student"])


def resolve(args: argparse.Namespace, cli: str) -> None:
    """Fill the defaults that follow from other settings: the student's epochs are phase 1 +
    phase 2 (Annealing-KD's budget), the assistant's the student's, and what ``--recipe`` sets
    (a setting given otherwise contradicts it)."""
    for name, value in RECIPES[args.recipe].get(cli, {}).items():
        if getattr(args, name) not in (None, value):
            raise UsageError(f"{setting('recipe')} {args.recipe} sets {setting(name)}; drop one "
                             "of the two")
        setattr(args, name, value)
    if getattr(args, "student_epochs", None) is None:
        args.student_epochs = args.student_epochs_p1 + args.student_epochs_p2
    if getattr(args, "assistant_epochs", None) is None:
        args.assistant_epochs = args.student_epochs


def recipe_notes(args: argparse.Namespace) -> list[str]:
    """The run summary's line on ``--recipe`` (none for the paper's schedule)."""
    return [] if args.recipe == "paper" else [f"recipe: {args.recipe} (not the paper's schedule)"]


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
    resolve(args, cli)
    for s in settings_of(cli):
        value = getattr(args, s.name, None)
        if s.check is not None and value is not None:
            s.check(value)
    if args.resume and args.overwrite_output_dir:
        raise UsageError(f"{setting('resume')} and {setting('overwrite_output_dir')} contradict "
                         "each other; pass one")


def positive(name: str) -> Callable[[Any], None]:
    return lambda v: check_number(name, v, low=0, strict=True)


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


# --recipe: named schedules; each sets settings that stay available one by one (per CLI)
RECIPES = {
    "paper": {},  # the paper's schedule
    "no-phase1-decay": {"image": {"phase1_lr_milestones": ()},  # a constant phase-1 rate
                        "text": {"phase1_lr_scheduler_type": "constant_with_warmup"}},
}


register(
    Setting("report_to", "experiment trackers (accelerate's), written to <output dir>/tracking: "
            "one or more of tensorboard, wandb, mlflow, trackio (space- or comma-separated; each "
            "an extra: pip install 'annealing-kd[tensorboard]'), or none, or all (every one "
            "installed)", "none", check=tracking.trackers, resume=False,
            extra={cli: {"nargs": "+"} for cli in CLIS}),
    Setting("run_name", "the run's name in the trackers (default: the output directory's name)",
            resume=False),
    Setting("project_name", "the trackers' project (W&B project, MLflow experiment, TensorBoard "
            "folder in <output dir>/tracking)", tracking.PROJECT, resume=False),
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
    Setting("max_temperature", "tau_max of the annealing schedule", {"image": 10, "text": 7},
            integer, flags={"image": ["--max_temperature"]}),
    Setting("anneal_per_step", "step the annealing temperature per optimizer step instead of per "
            "epoch", switch=True),
    Setting("learning_rate", {
        "image": "SGD lr of ResNets and torchvision:/timm: models, x0.1 at each --lr-milestones "
                 "fraction of a phase; plain CNNs: constant lr/10 (0.01 by default, as the "
                 "original)",
        "text": "AdamW peak learning rate"}, {"image": 0.1, "text": 5e-5}, real,
            check=positive("learning_rate")),
    Setting("phase2_learning_rate", "base learning rate of Annealing-KD's phase 2 (default: the "
            "learning rate)", None, real, check=positive("phase2_learning_rate")),
    Setting("lr_milestones", "fractions of each phase's optimizer steps at which the lr is "
            "multiplied by 0.1 (ResNets, torchvision:/timm: models); none: constant",
            "0.5,0.75", milestones, clis=("image",)),
    Setting("phase1_lr_milestones", "the same for Annealing-KD's phase 1 only (default: "
            "--lr-milestones)", None, milestones, clis=("image",)),
    Setting("seed", "seed of initialisation, data order and split", {"image": 20, "text": 42},
            integer, check=lambda v: check_number("seed", v, low=0, high=2**32 - 1)),  # numpy's seeds
    Setting("resume", "continue the unfinished run in the output directory with the same "
            "settings (refused if there is none)", switch=True, resume=False),
    Setting("overwrite_output_dir", "replace a run in the output directory", switch=True,
            resume=False),
    Setting("fail_on_chance_teacher", "stop with an error (exit 2) instead of a warning when "
            "the teacher is no better than chance on the selection split", switch=True,
            resume=False),
    Setting("recipe", "paper: the paper's schedule; no-phase1-decay: Annealing-KD's phase 1 at "
            "a constant learning rate (image: --phase1-lr-milestones none; text: "
            "--phase1_lr_scheduler_type constant_with_warmup), which beat the paper's schedule "
            "at short budgets (docs/results/)", "paper", choices=list(RECIPES)),
    # placed by each CLI in its own groups (:func:`declare`)
    Setting("weight_decay", {"image": "SGD weight decay", "text": "on weight matrices only"},
            {"image": 1e-4, "text": 0.0}, real),
    Setting("deterministic", "ask torch for deterministic kernels", switch=True, resume=False),
    Setting("logging_steps", {"image": "log the loss, lr, temperature and Phi every N optimizer "
                                       "steps (progress bar, --report-to)",
                              "text": "progress-bar update interval"},
            {"image": 10, "text": 50}, integer, resume=False),
    Setting("output_dir", {"image": "everything the run writes (default: "
                                    "runs/<dataset>-<method>-<teacher>-<student>)",
                           "text": "where the run writes everything"},
            resume=False, extra={"text": {"required": True}}),
    Setting("logits_cache_dir", {
        "image": "cache the frozen teacher's logits here, one file per epoch (and evaluation "
                 "split), shared by runs with the same teacher, data, augmentation, seed and "
                 "precision: later runs read them instead of running the teacher (one process only)",
        "text": "teacher-logit cache (default: ~/.cache/annealing-kd/teacher_logits)"},
            resume=False),
)
