"""Run every row of a results table with the project's CLIs, then write ``<table>.md`` (mean +- std
over seeds beside the published number) and ``<table>.png`` (bar chart).

    python reproduce/run_table.py --table cifar10 --seeds 3 [--scale 0.05] [--dry-run] [--out DIR]

Tables: cifar10, cifar100, glue-roberta, glue-bert (the paper's), fmnist-gap (student resnet8,
teachers resnet20/56/110 on Fashion-MNIST) and movie-reviews (MiniLM-L6 teacher, 2-layer student),
the last two runnable offline. The teacher is trained once (first seed) and shared by every row and
seed; TAKD is KD from an assistant that was itself distilled from the teacher (per seed). A run whose
results.json has a final entry is skipped, an unfinished one is resumed: stop and restart at will.
``--scale`` multiplies every epoch count (at least 1; phase 1 anneals per step when it gets fewer
epochs than tau_max). ``--extra`` flags are appended to every CLI call (e.g. ``--device cuda``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: python reproduce/run_table.py
    sys.path.insert(0, str(ROOT))

from annealing_kd.common.cli.args import Parser, integer, real  # noqa: E402
from annealing_kd.common.cli.entry import run_cli  # noqa: E402
from annealing_kd.common.errors import UsageError  # noqa: E402
from annealing_kd.common.run_folder import (  # noqa: E402
    Manifest,
    OutputFolder,
    content,
    first_change,
    read_results,
)
from annealing_kd.common.run_folder import lock as run_lock  # noqa: E402
from reproduce import published, slurm  # noqa: E402
from reproduce import table_report as tr  # noqa: E402
from reproduce.stats import mean_std, paired, paired_interval  # noqa: E402

CLI = {"cifar": ROOT / "computer_vision_tasks" / "annealing_kd_train.py",
       "glue": ROOT / "NLP_glue_tasks" / "annealing_kd_glue.py"}
PREPARE = ROOT / "demo" / "prepare_data.py"
TABLES = ["cifar10", "cifar100", "glue-roberta", "glue-bert", "fmnist-gap", "fmnist-ablation",
          "fmnist-budget", "movie-reviews"]
MAX_EPOCHS = 100_000
# the recommended short-budget recipe (--recipe no-phase1-decay), a row beside the paper's
RECIPE_ROW = "Annealing-KD (no phase-1 decay)"
RECIPE = ["--recipe", "no-phase1-decay"]
ROW_KEYS = {"teacher": "teacher", "assistant": "assistant", "student alone": "scratch",
            "fine-tune": "finetune", "KD": "kd", "TAKD": "takd", "Annealing-KD": "annealing"}

# Schedules (epochs) per table, before --scale. CIFAR: the paper's README (teacher 200,
# phase 1 200, phase 2 200, tau_max 10); baselines and assistants get phase 1 + phase 2 epochs.
CIFAR_EPOCHS = {"teacher": 200, "p1": 200, "p2": 200, "tau": 10}
FMNIST_EPOCHS = {"teacher": 30, "p1": 20, "p2": 10, "tau": 10}
GLUE_EPOCHS = {"teacher": 3, "p1": 14, "p2": 4, "tau": 7}
MR_EPOCHS = {"teacher": 3, "p1": 4, "p2": 2, "tau": 4}
GLUE_MODELS = {"glue-roberta": ("roberta-large", "roberta-base", "distilroberta-base"),
               "glue-bert": ("bert-large-uncased", "bert-base-uncased",
                             "google/bert_uncased_L-4_H-512_A-8")}
FMNIST_ASSISTANT = {"resnet20": "resnet14", "resnet56": "resnet20", "resnet110": "resnet20"}
# The paper's KD/TAKD rows come from the TAKD code base: T=5, lambda=0.5 and nn.KLDivLoss()'s
# default reduction (mean over batch x classes). The paper tables use that form.
PAPER_KD = {"temperature": "5", "alpha": "0.5", "reduction": "elementwise-mean"}
PAPER_KD_NOTE = ("KD, TAKD (and its assistant) use the paper-era loss of the TAKD code: "
                 "(1 - 0.5) CE + 0.5 T^2 KLDivLoss()(log_softmax(z_s/T), softmax(z_t/T)), T=5, "
                 "KL averaged over batch x classes (`--kd-reduction elementwise-mean`).")


TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "fashion-mnist": 60_000}
CURVE_LABEL = {"paper": "test accuracy (%)", "heldout": "held-out validation accuracy (%)",
               "dev": "dev metric (x100)"}
IMAGE_PAIRING = (
    "every row of a seed starts from the same student weights (drawn from `--seed` alone) and "
    "sees the same batches, order and augmentation, at epoch e of its first phase (the in-memory "
    "tensor loader draws them from (seed, epoch) only; tests/test_pairing.py), so rows are "
    "compared seed by seed (paired tests). Annealing-KD's phase 2 counts its epochs again from 1: "
    "its phase-2 epoch e sees the stream of epoch e, not that of epoch p1 + e as a one-phase row "
    "does. Not paired: the teacher (one run, seed 0, shared by every row); TAKD is paired in its "
    "student's start and data, but its targets come from its own seed's assistant, so its "
    "differences also carry the assistant's seed-to-seed spread.")
TEXT_PAIRING = (
    "every row of a seed starts from the same student (the pretrained body, its new head drawn "
    "from `--seed`), sees the same batches in the same order at epoch e of its first phase and "
    "the same dropout masks (every epoch reseeded from (seed, epoch); the teacher's logits are "
    "computed without drawing from the student's random stream; "
    "tests/test_pairing.py::test_text_rows_are_paired), so rows are compared seed by seed. "
    "Annealing-KD's phase 2 counts its epochs again from 1. Not paired: the teacher (one run); "
    "TAKD's student learns from its own seed's assistant (same start and data, other targets).")


TEXT_TRAINING = ("every row trains on the task's training set and is evaluated on dev every "
                 "epoch; dev selects the epoch and is reported, as the paper (GLUE test labels "
                 "are not public).")


def extra_number(args: argparse.Namespace, flag: str) -> int | None:
    """The last value of an image-CLI flag given in ``--extra`` (its last one wins there)."""
    words = shlex.split(args.extra)
    names = (flag, "--" + flag[2:].replace("-", "_"))
    return next((int(v) for f, v in reversed(list(zip(words, words[1:])))
                 if f in names and v.isdigit()), None)


def val_size(args: argparse.Namespace) -> int | None:
    """--val-size, or the image CLI's --val-size given in --extra (which the runs then get)."""
    return args.val_size if args.val_size is not None else extra_number(args, "--val-size")


def protocol_of(table: str, args: argparse.Namespace) -> str:
    """``--protocol`` of an image table (default: paper for cifar10/cifar100, heldout for the
    others; ``--val-size 0``, also in ``--extra``, means paper); GLUE tables: dev."""
    if table not in ("cifar10", "cifar100", "fmnist-gap", "fmnist-ablation", "fmnist-budget"):
        if args.protocol:
            raise UsageError(f"--protocol applies to the image tables; {table} selects and reports "
                             "on dev (the best dev epoch and the last epoch)")
        return "dev"
    default = "paper" if table in ("cifar10", "cifar100") else "heldout"
    held = val_size(args)
    implied = None if held is None else ("paper" if held == 0 else "heldout")
    protocol = args.protocol or implied or default
    if implied and protocol != implied:
        raise UsageError(f"--protocol {protocol} contradicts --val-size {held} "
                         "(paper: nothing held out, --val-size 0; heldout: --val-size N > 0); "
                         "drop one of them")
    return protocol


def image_protocol(dataset: str, protocol: str, args: argparse.Namespace) -> tuple[list[str], str]:
    """The --val-size flags of the protocol, and a sentence saying what every student row trains
    on (``--train-subset`` in ``--extra`` included)."""
    n, sub = TRAIN_IMAGES[dataset], extra_number(args, "--train-subset")
    if protocol == "paper":
        used = f"{sub:,} of the {n:,}" if sub else f"all {n:,}"
        return ["--val-size", "0"], (
            f"the paper's: every student row trains on {used} {dataset} training images "
            "(`--val-size 0`: nothing held out) and is evaluated on test every epoch; the epoch "
            "is selected on test, as the paper did (results.json: `selected_on: test`).")
    given = val_size(args)
    held = given if given is not None else min(5000, (sub or n) // 10)
    flags = ["--val-size", str(args.val_size)] if args.val_size is not None else []
    trained = f"{sub:,}" if sub else f"{n - held:,}"
    return flags, (
        f"held out: every student row holds {held:,} of the {n:,} {dataset} training images "
        f"out (`--val-size`{'' if given is not None else ', default: a tenth of the images used, at most 5,000'}"
        f"; drawn from the seed) and trains on {trained}; the epoch is selected on the held-out "
        "images and its test accuracy reported (`--protocol paper`: the paper's protocol).")


def paper_kd_flags(cli: str) -> list[str]:
    """The CLI flags of the paper-era KD loss (see PAPER_KD)."""
    sep = "-" if cli == "cifar" else "_"
    return [arg for key, value in PAPER_KD.items() for arg in (f"--kd{sep}{key}", value)]


@dataclass
class Run:
    """One CLI call: the cell (row, column) and seed it fills, and its output directory."""

    row: str
    column: str
    seed: int
    cli: str  # "cifar" | "glue"
    out: Path
    args: list[str]
    report: bool = True  # False for helper runs that fill no cell of the table
    extra: list[str] = field(default_factory=list)  # --extra (--teacher-extra): in its command

    def command(self, python: str, extra: Sequence[str] = ()) -> list[str]:
        flag = "--output-dir" if self.cli == "cifar" else "--output_dir"
        return [python, str(CLI[self.cli]), *self.args, flag, str(self.out), *extra]

    def results(self) -> dict:
        return read_results(self.out)

    def finished(self) -> bool:
        """A finished run of this row's own command (see :meth:`differs`)."""
        return bool(self.results().get("final")) and self.differs() is None

    def differs(self) -> str | None:
        """What makes a run recorded here another command's: the first setting that ``--resume``
        compares whose recorded value is not this row's (None: the same, or none recorded)."""
        recorded = self.results().get("config") or {}
        if not recorded:
            return None
        from annealing_kd.common.cli import settings
        from annealing_kd.computer_vision_tasks import cli as image_cli
        from annealing_kd.NLP_glue_tasks import cli as text_cli

        cli = image_cli if self.cli == "cifar" else text_cli
        flag = "--output-dir" if self.cli == "cifar" else "--output_dir"
        try:
            row = cli.build_parser().parse_args([*self.args, *self.extra, flag, str(self.out)])
            settings.resolve(row, cli.CLI)
        except (UsageError, SystemExit):
            return None  # the row's own command is refused: its run says so
        change = first_change(recorded, vars(row), settings.resume_keys(cli.CLI))
        return change and f"its {change[0]} is {change[1]!r}, this row's {change[2]!r}"


@dataclass
class Plan:
    table: str
    title: str
    metric: str  # what the numbers are, for the report
    rows: list[str]
    columns: list[str]
    runs: list[Run]
    prepare: list[list[str]] = field(default_factory=list)  # commands run first (data, models)
    published: dict[str, dict[str, float]] = field(default_factory=dict)  # column -> row -> value
    score: bool = False  # add a 'score' column: mean over the columns, per seed
    note: str = ""  # said under the table's header (e.g. which KD loss the rows use)
    protocol: str = "heldout"  # a key of reproduce.table_report.PROTOCOLS
    training: str = ""  # what every row trains on and where it selects its epoch
    pairing: str = ""  # which rows are paired by seed, and which cannot be


# ---- planning ------------------------------------------------------------------------------------
def scaled(epochs: int, scale: float) -> int:
    """``epochs * scale`` rounded half up, at least 1 and at most :data:`MAX_EPOCHS`."""
    value = epochs * scale + 0.5
    if not value < MAX_EPOCHS + 1:
        raise UsageError(f"--scale {scale:g} makes {epochs} epochs {value - 0.5:.4g}, more than "
                         f"{MAX_EPOCHS}; pass a smaller --scale")
    return max(1, int(value))


def parse_epochs(text: str | None) -> dict[str, int]:
    """``--epochs 'teacher=2,p1=2,p2=1,tau=4'`` -> {'teacher': 2, ...} (keys of the table schedule)."""
    if not text:
        return {}
    out = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        digits = value.strip()
        if key.strip() not in ("teacher", "p1", "p2", "tau") or not digits.isascii() \
                or not digits.isdigit() or not 1 <= int(digits) <= MAX_EPOCHS:
            raise UsageError(f"--epochs item {item!r} is not KEY=N with KEY teacher, p1, p2 or tau "
                             f"and N in [1, {MAX_EPOCHS}]; e.g. --epochs teacher=2,p1=2,p2=1,tau=4")
        out[key.strip()] = int(value)
    return out


def schedule(base: dict[str, int], scale: float, override: str | None = None) -> dict[str, int]:
    """Scaled epochs (``override`` replaces some, unscaled); tau_max is kept and phase 1 anneals per
    step when it gets too few epochs."""
    fixed = parse_epochs(override)
    ep = {k: fixed.get(k, scaled(v, scale)) for k, v in base.items() if k != "tau"}
    base = {**base, **{k: v for k, v in fixed.items() if k == "tau"}}
    return {**ep, "tau": base["tau"], "per_step": ep["p1"] < base["tau"]}


def cache_flags(args: argparse.Namespace, out: Path) -> list[str]:
    """The image CLI's --logits-cache-dir for the runs that train a teacher or an assistant
    (their test logits) and those that read one: one cache per table (``<out>/logit-cache``) by
    default, shared by every row and seed."""
    if args.no_logits_cache:
        return []
    return ["--logits-cache-dir", str(args.logits_cache_dir or out / "logit-cache")]


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text.lower()).strip("-")


def cifar_checkpoint(run_dir: Path) -> Path:
    """The best student weights of a CIFAR run (usable as --teacher-checkpoint)."""
    return run_dir / "student" / "best.safetensors"


def glue_checkpoint(run_dir: Path) -> Path:
    """The saved (best) student of a GLUE run, a save_pretrained folder."""
    return run_dir / "student"


def plan_cifar(table: str, args: argparse.Namespace, out: Path) -> Plan:
    """Rows of the CIFAR table (or the Fashion-MNIST capacity-gap table: one column per teacher)."""
    gap = table == "fmnist-gap"
    ep = schedule(FMNIST_EPOCHS if gap else CIFAR_EPOCHS, args.scale, args.epochs)
    dataset = {"cifar10": "cifar10", "cifar100": "cifar100", "fmnist-gap": "fashion-mnist"}[table]
    student = args.student or "resnet8"
    teachers = args.teacher.split(",") if args.teacher else (
        ["resnet20", "resnet56", "resnet110"] if gap else ["resnet110"])
    if len(teachers) > 1 and not gap:
        raise UsageError("several teachers (comma-separated --teacher) make the fmnist-gap table only")
    protocol = protocol_of(table, args)
    split, training = image_protocol(dataset, protocol, args)
    common = ["--dataset", dataset, "--dataset-dir", args.dataset_dir or "./data", *split]
    steps = ep["p1"] + ep["p2"]
    kd = paper_kd_flags("cifar")
    kd_ours = kd[:-1] + ["batchmean"] if gap else kd  # gap table: "KD" is ours, plus the paper's
    anneal = ["--method", "annealing", "--student_epochs_p1", str(ep["p1"]),
              "--student_epochs_p2", str(ep["p2"]), "--max_temperature", str(ep["tau"])]
    anneal += ["--anneal-per-step"] if ep["per_step"] else []
    seeds = list(range(args.seeds))
    recipe_row = RECIPE_ROW if gap else f"{RECIPE_ROW} (not in the paper)"
    runs: list[Run] = []
    scratch: dict[int, Path] = {}
    columns = []
    for teacher in teachers:
        column = f"teacher {teacher}" if gap else {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[table]
        columns.append(column)
        assistant = args.assistant or (FMNIST_ASSISTANT.get(teacher, "resnet20") if gap else "resnet20")
        base = out / (teacher if gap else dataset)
        t_dir = base / "teacher"
        runs.append(Run("teacher", column, seeds[0], "cifar", t_dir, [
            *common, "--method", "scratch", "--student", teacher,
            "--student-epochs", str(ep["teacher"]), "--seed", str(seeds[0]),
            *cache_flags(args, out)]))  # its test logits: cached for the rows that read it
        t_ckpt = ["--teacher", teacher, "--teacher-checkpoint", str(cifar_checkpoint(t_dir)),
                  *cache_flags(args, out)]
        for seed in seeds:
            s = ["--seed", str(seed)]
            a_dir = base / f"assistant-{assistant}-s{seed}"
            if seed not in scratch:  # the student alone does not depend on the teacher
                scratch[seed] = out / f"scratch-{student}-s{seed}"
            runs += [
                Run("assistant", column, seed, "cifar", a_dir, [
                    *common, "--method", "kd", *kd, *t_ckpt, "--student", assistant,
                    "--student-epochs", str(steps), *s], report=not gap),
                Run("student alone", column, seed, "cifar", scratch[seed], [
                    *common, "--method", "scratch", "--student", student,
                    "--student-epochs", str(steps), *s]),
                Run("KD", column, seed, "cifar", base / f"kd-s{seed}", [
                    *common, "--method", "kd", *kd_ours, *t_ckpt, "--student", student,
                    "--student-epochs", str(steps), *s]),
                Run("TAKD", column, seed, "cifar", base / f"takd-s{seed}", [
                    *common, "--method", "kd", *kd, "--teacher", assistant, "--teacher-checkpoint",
                    str(cifar_checkpoint(a_dir)), *cache_flags(args, out), "--student", student,
                    "--student-epochs", str(steps), *s]),  # reads the assistant's test logits
                Run("Annealing-KD", column, seed, "cifar", base / f"annealing-s{seed}", [
                    *common, *anneal, *t_ckpt, "--student", student, *s]),
                Run(recipe_row, column, seed, "cifar", base / f"annealing-recipe-s{seed}", [
                    *common, *anneal, *RECIPE, *t_ckpt, "--student", student, *s]),
            ]
            if gap:
                runs.append(Run("KD (paper-era)", column, seed, "cifar", base / f"kd-paper-s{seed}", [
                    *common, "--method", "kd", *kd, *t_ckpt, "--student", student,
                    "--student-epochs", str(steps), *s]))
    rows = (["teacher", "student alone", "KD", "KD (paper-era)", "TAKD", "Annealing-KD"] if gap
            else list(published.CIFAR_ROWS)) + [recipe_row]
    pub = {} if gap else {c: published.CIFAR[c] for c in columns}
    title = (f"Fashion-MNIST: teacher {teachers[0]}, student {student}" if gap and len(teachers) == 1
             else f"Fashion-MNIST capacity gap: student {student}, teachers of growing size" if gap
             else f"{columns[0]}: teacher {teachers[0]}, student {student}")
    note = ("KD: ours, `--kd-reduction batchmean` (KL summed over classes, mean over the batch); "
            "KD (paper-era), TAKD and its assistant: " + PAPER_KD_NOTE.split(": ", 1)[1]
            + " Both KD rows: T=5, lambda=0.5.") if gap else PAPER_KD_NOTE
    return Plan(table, title, "test accuracy (%)", rows, columns, _dedupe(runs), published=pub,
                note=note, protocol=protocol, training=training, pairing=IMAGE_PAIRING)


# The controlled experiment of why Annealing-KD trails KD (issue 18): one teacher, rows that
# change one thing each, every row the same total epochs; (row, extra CLI flags, phase epochs).
ABLATION_EPOCHS = {"teacher": 15, "p1": 20, "p2": 10, "tau": 10}


def ablation_rows(p1: int, p2: int, tau: int) -> list[tuple[str, list[str]]]:
    """Rows of fmnist-ablation with their method flags (total epochs p1 + p2 in every row)."""
    total = p1 + p2
    half = total // 2

    def akd(e1: int, e2: int, t: int, *more: str) -> list[str]:
        return ["--method", "annealing", "--student_epochs_p1", str(e1), "--student_epochs_p2",
                str(e2), "--max_temperature", str(t), *more]

    kd = paper_kd_flags("cifar")
    return [
        ("student alone", ["--method", "scratch", "--student-epochs", str(total)]),
        ("KD", ["--method", "kd", *kd[:-1], "batchmean", "--student-epochs", str(total)]),
        ("KD (paper-era)", ["--method", "kd", *kd, "--student-epochs", str(total)]),
        ("Annealing-KD", akd(p1, p2, tau)),
        ("AKD phase 1 only", akd(total, 0, tau)),
        ("AKD phase 2 at lr 0.001", akd(p1, p2, tau, "--phase2-learning-rate", "0.001")),
        ("AKD no lr decay in phase 1", akd(p1, p2, tau, "--phase1-lr-milestones", "none")),
        ("AKD p1 = p2", akd(half, total - half, min(tau, half))),
        ("AKD tau_max = 1", akd(p1, p2, 1)),
    ]


# The budget sweep (issue 30): the ablation's teacher, a resnet8 student on fewer images, one
# column per total student budget B; phase 1 gets two thirds of B, tau_max = min(10, phase 1).
BUDGETS = (8, 16, 32, 64)


def budget_list(text: str) -> tuple[int, ...]:
    """``--budgets``: comma-separated whole numbers of epochs, each in [2, MAX_EPOCHS]."""
    items = [b.strip() for b in text.split(",")]
    if not all(b.isascii() and b.isdigit() and 2 <= int(b) <= MAX_EPOCHS for b in items):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of epoch "
                                         f"budgets in [2, {MAX_EPOCHS}], e.g. 8,16,32")
    return tuple(int(b) for b in items)


def budget_split(total: int) -> tuple[int, int, int]:
    """(phase-1 epochs, phase-2 epochs, tau_max) of a total budget: the ablation's 20 + 10 of 30
    in proportion, tau_max 10 where phase 1 has at least 10 epochs, else one per epoch."""
    p1 = max(1, round(2 * total / 3))
    return p1, total - p1, min(10, p1)


def plan_budget(args: argparse.Namespace, out: Path) -> Plan:
    """fmnist-budget: student alone, KD, Annealing-KD (the paper's schedule) and Annealing-KD
    without phase 1's step decay, at each total budget of ``--budgets``, rows paired by seed."""
    ep = schedule(ABLATION_EPOCHS, 1.0, args.epochs)
    budgets = list(args.budgets or BUDGETS)
    teacher, student = args.teacher or "resnet20", args.student or "resnet8"
    protocol = protocol_of("fmnist-budget", args)
    split, training = image_protocol("fashion-mnist", protocol, args)
    common = ["--dataset", "fashion-mnist", "--dataset-dir", args.dataset_dir or "./data", *split]
    t_dir = out / teacher / "teacher"
    runs = [Run("teacher", f"{budgets[0]} epochs", 0, "cifar", t_dir, [
        *common, "--method", "scratch", "--student", teacher, "--student-epochs",
        str(ep["teacher"]), "--seed", "0", *cache_flags(args, out)])]
    t_ckpt = ["--teacher", teacher, "--teacher-checkpoint", str(cifar_checkpoint(t_dir)),
              *cache_flags(args, out)]
    rows = ["student alone", "KD", "Annealing-KD", RECIPE_ROW]
    for total in budgets:
        p1, p2, tau = budget_split(total)
        named = dict(ablation_rows(p1, p2, tau))
        flags = {"student alone": named["student alone"], "KD": named["KD"],
                 "Annealing-KD": named["Annealing-KD"],
                 RECIPE_ROW: [*named["Annealing-KD"], *RECIPE]}
        for seed in range(args.seeds):
            for row in rows:
                uses_teacher = row != "student alone"
                runs.append(Run(row, f"{total} epochs", seed, "cifar",
                                out / f"b{total}" / f"{slug(row)}-s{seed}",
                                [*common, *flags[row], *(t_ckpt if uses_teacher else []),
                                 "--student", student, "--seed", str(seed)]))
    note = ("Columns: the student's total epochs B; Annealing-KD: phase 1 round(2B/3) epochs, "
            "phase 2 the rest, tau_max = min(10, phase 1); KD: T=5, lambda=0.5 (batchmean). "
            f"{RECIPE_ROW}: the same with a constant phase-1 learning rate "
            "(`--recipe no-phase1-decay`, i.e. `--phase1-lr-milestones none`).")
    return Plan("fmnist-budget", f"Fashion-MNIST: Annealing-KD against KD by epoch budget "
                f"(teacher {teacher}, student {student})", "test accuracy (%)",
                ["teacher", *rows], [f"{b} epochs" for b in budgets], runs, note=note,
                protocol=protocol, training=training, pairing=IMAGE_PAIRING)


def plan_ablation(args: argparse.Namespace, out: Path) -> Plan:
    """fmnist-ablation: Fashion-MNIST, one teacher, a resnet8 student, rows paired by seed (same
    initial student weights, data order and augmentation in every row of a seed)."""
    ep = schedule(ABLATION_EPOCHS, args.scale, args.epochs)
    teacher, student = args.teacher or "resnet20", args.student or "resnet8"
    protocol = protocol_of("fmnist-ablation", args)
    split, training = image_protocol("fashion-mnist", protocol, args)
    common = ["--dataset", "fashion-mnist", "--dataset-dir", args.dataset_dir or "./data", *split]
    t_dir = out / teacher / "teacher"
    column = f"teacher {teacher}"
    runs = [Run("teacher", column, 0, "cifar", t_dir, [
        *common, "--method", "scratch", "--student", teacher, "--student-epochs",
        str(ep["teacher"]), "--seed", "0", *cache_flags(args, out)])]
    t_ckpt = ["--teacher", teacher, "--teacher-checkpoint", str(cifar_checkpoint(t_dir)),
              *cache_flags(args, out)]
    rows = ablation_rows(ep["p1"], ep["p2"], ep["tau"])
    for seed in range(args.seeds):
        for row, flags in rows:
            uses_teacher = flags[1] != "scratch"
            runs.append(Run(row, column, seed, "cifar", out / f"{slug(row)}-s{seed}", [
                *common, *flags, *(t_ckpt if uses_teacher else []), "--student", student,
                "--seed", str(seed)]))
    note = (f"Every row: {ep['p1'] + ep['p2']} student epochs in all, the same initial weights, "
            "data order and augmentation per seed. KD: T=5, lambda=0.5 (batchmean; paper-era: "
            "elementwise-mean). Annealing-KD: tau_max and the phases as named in the row.")
    return Plan("fmnist-ablation", f"Fashion-MNIST: why Annealing-KD trails KD (teacher {teacher}, "
                f"student {student})", "test accuracy (%)", ["teacher", *[r for r, _ in rows]],
                [column], runs, note=note, protocol=protocol, training=training,
                pairing=IMAGE_PAIRING)


def _dedupe(runs: list[Run]) -> list[Run]:
    """Each output directory once (the student alone fills every column of the gap table)."""
    seen: set[Path] = set()
    unique = []
    for run in runs:
        if run.out not in seen:
            seen.add(run.out)
            unique.append(run)
    return unique


@dataclass
class TextSetup:
    """What the rows of a text table share: tasks (column, task name), models, data, flags."""

    tasks: list[tuple[str, str]]
    rows: list[str]
    hyper: list[str]
    teacher_model: str
    student_model: str
    assistant_model: str | None = None
    data_dir: Path | None = None  # movie reviews: the students' SST-2 folder
    teacher_data: Path | None = None  # movie reviews: the teacher's (more sentences)
    prepare: list[list[str]] = field(default_factory=list)


def movie_review_setup(args: argparse.Namespace, out: Path) -> TextSetup:
    data_dir = Path(args.data_dir) if args.data_dir else out / "data" / "movie-reviews"
    sizes = ["--dev-size", str(args.dev_size)]
    prepare: list[list[str]] = []
    if not args.data_dir:
        prepare.append([args.python, str(PREPARE), "movie-reviews", "--out", str(data_dir), *sizes,
                        *(["--train-size", str(args.train_size)] if args.train_size else [])])
    teacher_data = data_dir
    if args.teacher_train_size:  # same shuffle and dev split: the students' sentences + more
        teacher_data = out / "data" / "teacher-train"
        prepare.append([args.python, str(PREPARE), "movie-reviews", "--out", str(teacher_data),
                        *sizes, "--train-size", str(args.teacher_train_size)])
    student_model = args.student or str(out / "models" / "minilm-2-layers")
    if not args.student:
        prepare.append([args.python, str(PREPARE), "small-student", "--layers", "2",
                        "--out", student_model] + (["--teacher", args.teacher] if args.teacher else []))
    return TextSetup([("movie reviews", "sst-2")],
                     ["teacher", "fine-tune", "KD", "KD (paper-era)", "Annealing-KD", RECIPE_ROW],
                     ["--max_seq_length", "64", "--learning_rate", args.learning_rate or "5e-5"],
                     args.teacher or "MiniLM-L6", student_model, None, data_dir, teacher_data,
                     prepare)


def glue_setup(table: str, args: argparse.Namespace) -> TextSetup:
    from annealing_kd.NLP_glue_tasks.tasks import get_task

    defaults = GLUE_MODELS[table]
    names = args.tasks.split(",") if args.tasks else [t.lower() for t in published.GLUE_TASKS]
    return TextSetup([(get_task(n).folder, get_task(n).name) for n in names],
                     list(published.GLUE_ROWS),
                     ["--max_seq_length", "128", "--learning_rate", args.learning_rate or "2e-5"],
                     args.teacher or defaults[0], args.student or defaults[2],
                     args.assistant or defaults[1])


def text_task_runs(column: str, task: str, setup: TextSetup, args: argparse.Namespace, out: Path,
                   ep: dict, mr: bool) -> list[Run]:
    """Every run of one task column: the teacher (seed 0), then each row for each seed."""
    common = ["--task_name", task, "--do_train", *setup.hyper]
    if mr:
        common += ["--data_dir", str(setup.data_dir)]
    elif args.data_dir:
        common += ["--data_dir", str(Path(args.data_dir) / column)]
    base, seeds = out / slug(column), list(range(args.seeds))
    t_dir = base / "teacher"
    t_common = common if not mr else [*common[:-1], str(setup.teacher_data)]
    if args.teacher_learning_rate:
        i = t_common.index("--learning_rate") + 1
        t_common = [*t_common[:i], args.teacher_learning_rate, *t_common[i + 1:]]
    runs = [Run("teacher", column, seeds[0], "glue", t_dir, [
        *t_common, "--method", "finetune", "--student_model_name_or_path",
        _teacher_source(setup.teacher_model), "--num_train_epochs", str(ep["teacher"]),
        "--seed", str(seeds[0])])]
    teacher = ["--teacher_model_name_or_path", str(glue_checkpoint(t_dir))]
    student = ["--student_model_name_or_path", setup.student_model]
    every = ["--num_train_epochs", str(ep["p1"] + ep["p2"])]
    kd = paper_kd_flags("glue")
    # movie reviews: "KD" is ours (batchmean), "KD (paper-era)" the TAKD code's form; same T, lambda
    kd_ours = kd[:-1] + ["batchmean"] if mr else kd
    anneal = ["--method", "annealing", "--num_train_epochs_phase_1", str(ep["p1"]),
              "--num_train_epochs_phase_2", str(ep["p2"]), "--max_temperature", str(ep["tau"])]
    anneal += ["--anneal_per_step"] if ep["per_step"] else []
    for seed in seeds:
        s = ["--seed", str(seed)]
        runs += [Run("fine-tune", column, seed, "glue", base / f"finetune-s{seed}", [
                     *common, "--method", "finetune", *student, *every, *s]),
                 Run("KD", column, seed, "glue", base / f"kd-s{seed}", [
                     *common, "--method", "kd", *kd_ours, *teacher, *student, *every, *s])]
        if mr:
            runs.append(Run("KD (paper-era)", column, seed, "glue", base / f"kd-paper-s{seed}", [
                *common, "--method", "kd", *kd, *teacher, *student, *every, *s]))
        if setup.assistant_model:
            a_dir = base / f"assistant-s{seed}"
            runs += [Run("assistant", column, seed, "glue", a_dir, [
                         *common, "--method", "kd", *kd, *teacher, "--student_model_name_or_path",
                         setup.assistant_model, *every, *s], report=False),
                     Run("TAKD", column, seed, "glue", base / f"takd-s{seed}", [
                         *common, "--method", "kd", *kd, "--teacher_model_name_or_path",
                         str(glue_checkpoint(a_dir)), *student, *every, *s])]
        runs.append(Run("Annealing-KD", column, seed, "glue", base / f"annealing-s{seed}", [
            *common, *anneal, *teacher, *student, *s]))
        if mr:
            runs.append(Run(RECIPE_ROW, column, seed, "glue", base / f"annealing-recipe-s{seed}", [
                *common, *anneal, *RECIPE, *teacher, *student, *s]))
    return runs


def plan_glue(table: str, args: argparse.Namespace, out: Path) -> Plan:
    """Rows of a GLUE table (one column per task) or of the movie-review table (SST-2 format)."""
    mr = table == "movie-reviews"
    ep = schedule(MR_EPOCHS if mr else GLUE_EPOCHS, args.scale, args.epochs)
    setup = movie_review_setup(args, out) if mr else glue_setup(table, args)
    setup.hyper += ["--per_gpu_train_batch_size", "32", "--per_gpu_eval_batch_size", "64",
                    "--logits_cache_dir", str(args.logits_cache_dir or out / "logit-cache")]
    runs = [r for column, task in setup.tasks
            for r in text_task_runs(column, task, setup, args, out, ep, mr)]
    columns = [c for c, _ in setup.tasks]
    if mr:
        title = "Movie-review polarity (SST-2 format): MiniLM-L6 teacher, 2-layer student"
        note = ("KD: ours, `--kd_reduction batchmean` (KL summed over classes, mean over the batch); "
                "KD (paper-era): " + PAPER_KD_NOTE.split(": ", 1)[1].replace("--kd-", "--kd_")
                + " Both KD rows: T=5, lambda=0.5. dev accuracy both selects the epoch and is "
                "reported (as the GLUE CLI does on GLUE dev).")
        return Plan(table, title, "dev accuracy (%)", setup.rows, columns, runs, setup.prepare,
                    note=note, protocol=protocol_of(table, args), training=TEXT_TRAINING,
                    pairing=TEXT_PAIRING)
    pub = published.GLUE_ROBERTA if table == "glue-roberta" else published.GLUE_BERT
    title = (f"GLUE dev: teacher {setup.teacher_model}, assistant {setup.assistant_model}, "
             f"student {setup.student_model}")
    return Plan(table, title, "GLUE dev metric (x100; CoLA MCC, MRPC F1, STS-B Pearson, others "
                "accuracy, MNLI matched)", setup.rows, columns, runs, published=pub,
                score=len(columns) > 1, note=PAPER_KD_NOTE.replace("--kd-reduction", "--kd_reduction"),
                protocol=protocol_of(table, args), training=TEXT_TRAINING, pairing=TEXT_PAIRING)


def _teacher_source(name: str) -> str:
    """'MiniLM-L6' is the offline all-MiniLM-L6-v2 package; anything else is passed through."""
    if name != "MiniLM-L6":
        return name
    from demo.prepare_data import minilm_path

    return str(minilm_path())


def make_plan(args: argparse.Namespace) -> Plan:
    out = Path(args.out or f"runs/{args.table}")
    if args.table in ("glue-roberta", "glue-bert", "movie-reviews"):
        return plan_glue(args.table, args, out)
    if args.table == "fmnist-ablation":
        return plan_ablation(args, out)
    if args.table == "fmnist-budget":
        return plan_budget(args, out)
    return plan_cifar(args.table, args, out)


# ---- running -------------------------------------------------------------------------------------
def extra_for(run: Run, args: argparse.Namespace, extra: list[str]) -> list[str]:
    """--extra for every run; the teacher's run gets --teacher-extra after it (last flag wins)."""
    return extra + (shlex.split(args.teacher_extra) if run.row == "teacher" else [])


def depends_on(run: Run, runs: Sequence[Run]) -> list[int]:
    """Indices of the runs whose output ``run`` reads (its teacher or assistant checkpoint)."""
    return [i for i, other in enumerate(runs) if other.out != run.out
            and any(arg == str(other.out) or arg.startswith(f"{other.out}{os.sep}") for arg in run.args)]


def output_folder(plan: Plan, args: argparse.Namespace) -> OutputFolder:
    """``--out``: what run_table writes there is recorded in its manifest (reports, logs) or is
    a run of its own (children); two processes may share it (``--run-seeds``), so no lock."""
    return OutputFolder(args.out or f"runs/{plan.table}", "run_table", lock=False)


def complete(folder: Path) -> bool:
    """Whether a prepared folder holds every file its manifest records (a stopped preparation
    does not)."""
    found = Manifest.read(folder)
    return found is not None and bool(found.files) and all(
        (folder / rel).is_file() for rel in found.files)


def prepare(plan: Plan, args: argparse.Namespace) -> OutputFolder:
    """--out, its runs recorded as children, and the data and models the plan prepares (a
    preparation that stopped half-way is done again)."""
    folder = output_folder(plan, args)
    out = folder.path
    for cmd in plan.prepare:
        target = Path(cmd[cmd.index("--out") + 1])
        if out in target.parents:
            folder.child(target.relative_to(out))
        if not complete(target):
            print("prepare:", shlex.join(cmd), flush=True)
            if subprocess.run(cmd).returncode != 0:
                raise UsageError(f"preparing {target} failed; see the output above")
    folder.children(run.out.relative_to(out) for run in plan.runs if out in run.out.parents)
    return folder


def launch(run: Run, folder: OutputFolder, args: argparse.Namespace, extra: list[str],
           env: dict[str, str]) -> tuple[subprocess.Popen, float, Path]:
    """Start one run (``--resume`` when its folder holds something), output appended to its log."""
    cmd = run.command(args.python, extra_for(run, args, extra))
    if content(run.out):
        cmd.append("--resume")
    log = folder.log(f"logs/{run.out.relative_to(folder.path).as_posix().replace('/', '__')}.log")
    with open(log, "a") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    return proc, time.perf_counter(), log


def run_names(plan: Plan) -> dict[int, str]:
    return {i: f"[{i + 1}/{len(plan.runs)}] {run.row} | {run.column} | seed {run.seed}"
            for i, run in enumerate(plan.runs)}


def refuse_other_commands(plan: Plan) -> None:
    """A finished run of another command is never adopted nor replaced."""
    for run in plan.runs:
        if run.results().get("final") and (why := run.differs()):
            raise UsageError(f"{run.out} holds a finished run of another command ({why}): an "
                             "earlier --scale, --epochs or --extra, or not this table's; pass "
                             "another --out, or move that folder away")


def submit(plan: Plan, args: argparse.Namespace) -> None:
    """--launcher slurm: submit what is neither finished nor queued, and return."""
    if not shutil.which("sbatch"):
        raise UsageError("--launcher slurm needs the SLURM client (sbatch, squeue, scontrol) on "
                         "the PATH: run on the cluster's login node")
    slurm.sbatch_options(args)  # checked before anything is written
    refuse_other_commands(plan)
    try:
        held = slurm.queue()  # the scheduler answers before anything is written
        slurm.submit(plan, prepare(plan, args), args, run_names(plan), depends_on, held)
    except RuntimeError as exc:
        raise UsageError(f"{exc}; check the cluster options (--partition, --account, ...)") from None
    print("submitted; follow with: the same command and --status; report with --report-only",
          flush=True)


def execute(plan: Plan, args: argparse.Namespace, extra: list[str]) -> None:
    """Run what is not finished yet, in plan order, up to ``--jobs`` at a time (a run starts once
    the runs it reads are finished; one that another process is running is waited for). After a
    failure nothing new starts; the runs in flight finish and the error is raised. At
    ``--deadline-s`` the runs in flight are stopped (``--resume`` continues them) and the report
    covers what finished."""
    refuse_other_commands(plan)
    folder = prepare(plan, args)
    env = alone = {**os.environ, "TQDM_MININTERVAL": "30"}
    if args.jobs > 1:  # share the cores between the runs in flight
        env = {**env, "OMP_NUM_THREADS": os.environ.get(
            "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))}
    # --feeders-alone: the runs others read first, each alone with every core (a fixed thread
    # count per run, whatever the timing: the weights of a run never depend on the scheduling)
    feeders = ({j for run in plan.runs for j in depends_on(run, plan.runs)}
               if args.feeders_alone and args.jobs > 1 else set())
    stop_at = time.monotonic() + args.deadline_s if args.deadline_s else math.inf
    names = run_names(plan)
    done = set()
    for i, run in enumerate(plan.runs):
        if run.finished():
            print(f"{names[i]}: finished earlier, skipped", flush=True)
            done.add(i)
    waiting = [i for i in range(len(plan.runs)) if i not in done]
    running: dict[int, tuple[subprocess.Popen, float, Path]] = {}
    failed: list[str] = []
    elsewhere: set[int] = set()  # runs that another process holds
    while waiting or running:
        if time.monotonic() >= stop_at:
            for proc, _, _ in running.values():
                proc.terminate()
            for proc, _, _ in running.values():
                proc.wait()
            print(f"deadline of {args.deadline_s:g}s reached: {len(running) + len(waiting)} runs "
                  "unfinished (rerun the same command to continue them)", flush=True)
            return
        for i in sorted(waiting, key=lambda i: i not in feeders):  # feeders first, in plan order
            if failed or len(running) >= args.jobs or feeders & set(running):
                break
            run = plan.runs[i]
            needs = depends_on(run, plan.runs)
            if any(j in waiting or j in running for j in needs):
                continue
            if any(j not in done for j in needs):  # what it reads failed: never runs
                waiting.remove(i)
                continue
            if i in feeders and running:  # it runs once the runs in flight are done
                break
            holder = run_lock.holder(run.out) if run.out.is_dir() else None
            if holder or (i in elsewhere and run.finished()):
                if i not in elsewhere:
                    print(f"{names[i]}: another process runs it ({holder}); waiting", flush=True)
                    elsewhere.add(i)
                elif not holder:
                    waiting.remove(i)
                    done.add(i)
                continue
            waiting.remove(i)
            running[i] = launch(run, folder, args, extra, alone if i in feeders else env)
            print(f"{names[i]}: running, log {running[i][2]}", flush=True)
        for i, (proc, tic, log) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[i]
            folder.done(log)
            run = plan.runs[i]
            if proc.returncode != 0 or not run.finished():
                tail = log.read_text(errors="replace").splitlines()[-8:]
                print("\n".join([f"--- last lines of {log}:", *tail, "---"]), file=sys.stderr)
                failed.append(f"{names[i]} failed (exit {proc.returncode}); see {log}")
                continue
            done.add(i)
            print(f"{names[i]}: done in {time.perf_counter() - tic:.0f}s, {run_value(run):.2f}",
                  flush=True)
        if running or elsewhere & set(waiting):
            time.sleep(0.2)
        elif failed:
            break
    if failed:
        raise UsageError("; ".join(failed) + "; finished runs are kept, rerun the same command "
                         "to continue")


def run_value(run: Run) -> float:
    """The run's first figure in percent (:func:`reproduce.table_report.figures`): the test
    accuracy of the CIFAR student of its protocol's epoch, or the paper's GLUE metric on dev of
    the best dev epoch (STS-B: Pearson, as the paper reports, while the student is selected on
    corr as the original did)."""
    return tr.figures(run.results(), run.cli)["selected"]


# ---- report --------------------------------------------------------------------------------------
Values = dict[str, dict[str, dict[str, dict[int, float]]]]  # figure -> row -> column -> seed -> value


def collect(plan: Plan) -> Values:
    """{figure: {row: {column: {seed: value}}}} over the finished runs (the score column
    included), for both figures of :data:`reproduce.table_report.FIGURES`."""
    values: Values = {f: {row: {} for row in plan.rows} for f in tr.FIGURES}
    for run in plan.runs:
        if run.report and run.row in plan.rows and run.finished():
            for f, v in tr.figures(run.results(), run.cli).items():
                values[f][run.row].setdefault(run.column, {})[run.seed] = v
    for by_row in values.values():
        _share_and_score(plan, by_row)
    return values


def _share_and_score(plan: Plan, values: dict[str, dict[str, dict[int, float]]]) -> None:
    """The student alone fills every column (one run per seed); 'score': mean over the columns,
    per seed."""
    if len({r.column for r in plan.runs if r.row == "student alone"}) == 1:
        alone = {s: v for col in values.get("student alone", {}).values() for s, v in col.items()}
        for column in plan.columns:
            if alone:
                values["student alone"][column] = dict(alone)
    if plan.score:
        for cols in values.values():
            seeds = set.intersection(*(set(cols.get(c, {})) for c in plan.columns))
            if seeds:
                cols["score"] = {s: statistics.fmean(cols[c][s] for c in plan.columns)
                                 for s in sorted(seeds)}


def collect_curves(plan: Plan) -> dict[str, dict[str, dict]]:
    """{row: {column: mean curve over seeds}} of the finished student rows."""
    found: dict[str, dict[str, list]] = {}
    for run in plan.runs:
        if run.report and run.row in plan.rows and run.row != "teacher" and run.finished():
            c = tr.curve(run.results())
            if c:
                found.setdefault(run.row, {}).setdefault(run.column, []).append(c)
    return {row: {col: tr.mean_curve(cs) for col, cs in by.items()}
            for row in plan.rows if (by := found.get(row))}


def run_seconds(run: Run) -> float | None:
    """Wall seconds of a finished run: from its results.json 'started' to the file's last write."""
    started = run.results().get("started")
    if not started or not run.finished():
        return None
    begin = datetime.strptime(started, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    return (run.out / "results.json").stat().st_mtime - begin


def references(plan: Plan) -> list[str]:
    """The rows every other row is tested against: the student alone (or fine-tune), KD, and
    KD (paper-era) where both KD losses are rows, or Annealing-KD in fmnist-ablation."""
    alone = next((r for r in ("student alone", "fine-tune") if r in plan.rows), None)
    third = ("Annealing-KD" if plan.table in ("fmnist-ablation", "fmnist-budget")
             else "KD (paper-era)")
    return [r for r in (alone, "KD", third) if r in plan.rows]


def significance(plan: Plan, values: Values, columns: list[str]) -> tuple[list[str], dict]:
    """Per figure, every student row against each reference row: paired and Welch tests."""
    refs = references(plan)
    rows = [r for r in plan.rows if r not in ("teacher", "assistant")]
    labels = tr.PROTOCOLS[plan.protocol].labels
    lines: list[str] = []
    records = {}
    for f in tr.FIGURES:
        more, records[f] = tr.comparison_lines(rows, refs, columns, values[f],
                                               f"Tests, {labels[f]}")
        lines += more
    return lines, records


def seconds_lines(plan: Plan) -> list[str]:
    """Wall seconds per row: runs timed, mean per run and total."""
    lines = ["| row | runs timed | seconds per run (mean) | seconds (total) |",
             "| --- | ---: | ---: | ---: |"]
    rows = [*plan.rows, *sorted({r.row for r in plan.runs} - set(plan.rows))]
    for row in rows:
        secs = [t for r in plan.runs if r.row == row and (t := run_seconds(r)) is not None]
        if secs:
            lines.append(f"| {row} | {len(secs)} | {statistics.fmean(secs):.0f} | {sum(secs):.0f} |")
    return [*lines, ""] if len(lines) > 2 else []


def cache_lines(plan: Plan) -> list[str]:
    """Teacher seconds per row: computing logits (live) and reading them from the cache, and the
    teacher time the cache saved: each file read, at its stream's measured seconds per file."""
    per_key: dict[str, list[float]] = {}  # stream key -> [live seconds, files computed]
    rows: dict[str, list[float]] = {}  # row -> [live s, files computed, files read, read s]
    reads: list[tuple[str, int]] = []
    for run in plan.runs:
        lc = run.results().get("logit_cache") if run.finished() else None
        for s in (lc or {}).get("streams", {}).values():
            computed = s["files_written"] + s["files_live"]
            k = per_key.setdefault(s["key"], [0.0, 0])
            k[0] += s["live_seconds"]
            k[1] += computed
            if s.get("own"):  # the run's own evaluation, kept for its readers
                continue
            r = rows.setdefault(run.row, [0.0, 0, 0, 0.0])
            for i, v in enumerate((s["live_seconds"], computed, s["files_read"], s["read_seconds"])):
                r[i] += v
            reads.append((s["key"], s["files_read"]))
    if not rows:
        return []
    saved = sum(n * per_key[k][0] / per_key[k][1] for k, n in reads if per_key[k][1])
    saved -= sum(r[3] for r in rows.values())
    lines = ["Teacher logits (`--logits-cache-dir`): seconds the teacher ran (live) and seconds "
             "spent reading its cached logits instead, per row (files: epochs and evaluation "
             "splits).", "",
             "| row | teacher seconds (live) | files computed | files read | seconds reading |",
             "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {row} | {r[0]:.0f} | {r[1]} | {r[2]} | {r[3]:.1f} |" for row, r in rows.items()]
    live = sum(r[0] for r in rows.values())
    return [*lines, "", f"The teacher ran {live:.0f} s; the cache saved about {saved:.0f} s of "
            "teacher time (each file read, at the seconds per file measured where it was "
            "computed, less the reading).", ""]


def table_lines(plan: Plan, values: Values, columns: list[str], seeds: int) -> list[str]:
    """The main table: per column both figures (labelled) and the published figure if any."""
    labels = tr.PROTOCOLS[plan.protocol].labels
    header, rule = ["row"], ["---"]
    for c in columns:
        header += [f"{c}: {labels[f]}" for f in tr.FIGURES]
        header += [f"{c}: paper"] if c in plan.published else []
        rule += ["---:"] * (len(tr.FIGURES) + (c in plan.published))
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    for row in plan.rows:
        cells = [row]
        for c in columns:
            cells += [tr.fmt(values[f][row].get(c, {}), 1 if row == "teacher" else seeds)
                      for f in tr.FIGURES]
            if c in plan.published:
                p = plan.published[c].get(row)
                cells.append("–" if p is None else f"{p:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def protocol_lines(plan: Plan) -> list[str]:
    """What the runs train on and the two figures the report gives (the report's and the dry
    run's header)."""
    return [f"Protocol: {plan.training}", "",
            f"Figures (two per row): {tr.PROTOCOLS[plan.protocol].legend}", ""]


def notes_lines(plan: Plan, notes: str | None) -> list[str]:
    """The conclusion: ``--notes FILE``'s lines; fmnist-ablation keeps a slot for it."""
    if notes:
        return ["## Conclusion", "", *Path(notes).read_text().splitlines(), ""]
    if plan.table == "fmnist-ablation":
        return ["## Conclusion", "", "_Not written yet: rerun with `--report-only --notes FILE` "
                "to put a text file's lines here._", ""]
    return []


def _json_safe(obj):
    """NaN (a test that could not be made) as null."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def against_kd(plan: Plan, values: dict) -> dict[str, dict[str, dict]]:
    """{row: {column: paired difference vs KD (points), its 95% interval, p, pairs}} over the
    seeds both rows finished (fmnist-budget)."""
    found: dict[str, dict[str, dict]] = {}
    for row in plan.rows:
        if row in ("teacher", "KD"):
            continue
        for column in plan.columns:
            mine, kd = values[row].get(column, {}), values["KD"].get(column, {})
            seeds = sorted(set(mine) & set(kd))
            if len(seeds) < 2:
                continue
            a, b = [mine[s] for s in seeds], [kd[s] for s in seeds]
            low, high = paired_interval(a, b)
            found.setdefault(row, {})[column] = {"diff": paired(a, b)["diff"], "low": low,
                                                 "high": high, "p": paired(a, b)["p"],
                                                 "pairs": len(seeds)}
    return found


def against_kd_lines(diffs: dict[str, dict[str, dict]], figure: str) -> list[str]:
    lines = [f"**Against KD, {figure}** (row minus KD, percentage points, paired by seed; 95% "
             "t-interval of the mean difference; p: `scipy.stats.ttest_rel`):", "",
             "| row | budget | pairs | diff vs KD | 95% interval | p |",
             "| --- | --- | ---: | ---: | --- | ---: |"]
    for row, by_col in diffs.items():
        for column, d in by_col.items():
            lines.append(f"| {row} | {column} | {d['pairs']} | {d['diff']:+.2f} | "
                         f"[{d['low']:+.2f}, {d['high']:+.2f}] | {d['p']:.3f} |")
    return [*lines, ""]


def plot_against_kd(plan: Plan, diffs: dict[str, dict[str, dict]], path: Path | str) -> None:
    """Budget on x, the paired difference vs KD on y (95% interval bars), one line per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    budgets = {c: int(c.split()[0]) for c in plan.columns}
    for row, by_col in diffs.items():
        cols = [c for c in plan.columns if c in by_col]
        xs = [budgets[c] for c in cols]
        ms = [by_col[c]["diff"] for c in cols]
        err = [[m - by_col[c]["low"] for c, m in zip(cols, ms)],
               [by_col[c]["high"] - m for c, m in zip(cols, ms)]]
        ax.errorbar(xs, ms, yerr=err, marker="o", capsize=3, label=row)
    ax.axhline(0.0, color="k", lw=0.8, ls="--", label="KD")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(budgets.values()), [str(b) for b in budgets.values()])
    ax.set_xlabel("total student epochs")
    ax.set_ylabel("test accuracy minus KD (points)")
    ax.set_title(plan.title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def write_report(plan: Plan, args: argparse.Namespace, command: str) -> tuple[Path, Path]:
    """``<table>.md``, ``<table>.json`` (every value), ``<table>.png`` (bars) and
    ``<table>-curves.png`` (per-epoch curves), recorded in --out's manifest; a file of one of
    these names that run_table did not write refuses the report before anything is written.
    Returns md and png."""
    folder = output_folder(plan, args)
    out = folder.path
    md, js, png, cpng, kpng = (out / f"{plan.table}{ext}" for ext in (
        ".md", ".json", ".png", "-curves.png", "-vs-kd.png"))
    folder.check_free(md, js, png, cpng, kpng)
    values = collect(plan)
    budget = plan.table == "fmnist-budget"
    diffs = {f: against_kd(plan, values[f]) for f in tr.FIGURES} if budget else {}
    columns = plan.columns + (["score"] if plan.score else [])
    tests, records = significance(plan, values, columns)
    curves = collect_curves(plan)
    sources = getattr(args, "from_", None) or []
    lines = [f"# {plan.title}", "",
             f"Command: `{command}`", "",
             f"{plan.metric}; ours: mean ± std over {args.seeds} seed(s) (sample std; n given when "
             "fewer runs finished); the teacher is trained once and shared by all rows and seeds."
             + (" paper: the published figure." if plan.published else ""), "",
             *protocol_lines(plan),
             *([plan.note, ""] if plan.note else []),
             *table_lines(plan, values, columns, args.seeds),
             f"Pairing: {plan.pairing}", "",
             *[line for f in diffs for line in against_kd_lines(
                 diffs[f], tr.PROTOCOLS[plan.protocol].labels[f])],
             *([f"Chart: [{kpng.name}]({kpng.name}) (selected epoch).", ""] if diffs else []),
             *tests, *seconds_lines(plan), *cache_lines(plan)]
    if curves:
        lines += [f"Per-epoch curves ([{cpng.name}]({cpng.name})): the {CURVE_LABEL[plan.protocol]} "
                  "of every epoch, mean over the seeds that finished, one line per row, all "
                  "phases in order (a dotted line where a row's next phase starts), and the "
                  "learning rate below.", ""]
    lines += notes_lines(plan, args.notes)
    lines += [f"Runs: {sum(r.finished() for r in plan.runs)} of {len(plan.runs)} finished; "
              f"scale {args.scale}; outputs under `{out}`"
              + (f"; finished runs read from {', '.join(f'`{s}`' for s in sources)}"
                 if sources else "") + ".", ""]
    folder.write_text(md.name, "\n".join(lines))
    folder.write_text(js.name, json.dumps(_json_safe(
        {"command": command, "protocol": plan.protocol,
         "figures": tr.PROTOCOLS[plan.protocol].labels,
         "values": values, "published": plan.published, "tests": records, "curves": curves,
         "against_kd": diffs,
         "notes": Path(args.notes).read_text().splitlines() if args.notes else None}),
        indent=2) + "\n")
    folder.write(png.name, lambda tmp: plot(plan, values[tr.FIGURES[0]], columns, tmp))
    if diffs:
        folder.write(kpng.name, lambda tmp: plot_against_kd(plan, diffs[tr.FIGURES[0]], tmp))
    if curves:
        folder.write(cpng.name, lambda tmp: tr.plot_curves(
            curves, plan.columns, plan.title, CURVE_LABEL[plan.protocol], tmp))
    return md, png


def plot(plan: Plan, values, columns: list[str], path: Path | str) -> None:
    """Grouped bars: ours (mean, std error bar) per row within each column; paper as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / max(1, len(plan.rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(columns) * max(1, len(plan.rows)) / 3), 4.5))
    lows = []
    for i, row in enumerate(plan.rows):
        xs, ms, ss, px, py = [], [], [], [], []
        for j, c in enumerate(columns):
            x = j + (i - (len(plan.rows) - 1) / 2) * width
            vals = list(values[row].get(c, {}).values())
            if vals:
                m, s = mean_std(vals)
                xs.append(x)
                ms.append(m)
                ss.append(s or 0.0)
                lows.append(m - (s or 0.0))
            p = plan.published.get(c, {}).get(row)
            if p is not None:
                px.append(x)
                py.append(p)
                lows.append(p)
        ax.bar(xs, ms, width, yerr=ss, capsize=2, label=row)
        if px:
            ax.plot(px, py, "kD", ms=4, label="paper" if i == 0 else None)
    ax.set_xticks(range(len(columns)), columns, rotation=20 if len(columns) > 4 else 0)
    ax.set_ylabel(plan.metric.split(";")[0].split("(x100")[0])
    if lows:
        finite = [v for v in lows if math.isfinite(v)]
        ax.set_ylim(max(0.0, min(finite) - 5), None)
    ax.set_title(plan.title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


# ---- command line --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", required=True, choices=TABLES)
    p.add_argument("--seeds", type=integer, default=3, help="seeds 0..N-1 for every student row")
    p.add_argument("--scale", type=real, default=1.0,
                   help="multiply every epoch count by this (e.g. 0.05 for a quick look)")
    p.add_argument("--out", default=None, help="output folder (default: runs/<table>)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--report-only", action="store_true",
                   help="write the report from the finished runs, run nothing")
    p.add_argument("--from", dest="from_", action="append", default=[], metavar="FOLDER",
                   help="with --report-only: also read finished runs from this earlier --out of "
                        "the same table (repeatable; read only, never written); a run is taken "
                        "from --out, else from the first --from folder where it finished")
    p.add_argument("--notes", default=None, metavar="FILE",
                   help="the report's conclusion: the lines of this text file")
    p.add_argument("--protocol", choices=["paper", "heldout"], default=None,
                   help="image tables: paper (every training image, --val-size 0, the epoch "
                        "selected on test; default of cifar10/cifar100) or heldout (--val-size "
                        "images held out and selection on them; default of the Fashion-MNIST "
                        "tables). The report gives both the protocol's figure and the last epoch")
    p.add_argument("--dataset-dir", default=None, help="CIFAR/Fashion-MNIST --dataset-dir")
    p.add_argument("--data-dir", default=None,
                   help="GLUE root holding the task folders (CoLA, SST-2, ...; default: the hub "
                        "through `datasets`), or the movie-review --data_dir")
    p.add_argument("--tasks", default=None, help="GLUE tables: comma-separated subset of tasks")
    p.add_argument("--val-size", type=integer, default=None,
                   help="CIFAR CLI --val-size (default: the CLI's, a held-out validation split)")
    p.add_argument("--teacher", default=None,
                   help="override the table's teacher model (fmnist-gap: comma-separated list)")
    p.add_argument("--assistant", default=None, help="override the table's assistant model")
    p.add_argument("--student", default=None, help="override the table's student model")
    p.add_argument("--epochs", default=None,
                   help="replace some of the table's epochs (not scaled), e.g. "
                        "'teacher=2,p1=2,p2=1,tau=4' (students: p1 + p2; Annealing-KD: p1, p2)")
    p.add_argument("--learning-rate", default=None, help="GLUE CLI --learning_rate of every run")
    p.add_argument("--teacher-learning-rate", default=None,
                   help="GLUE tables: the teacher's --learning_rate (default: --learning-rate)")
    p.add_argument("--train-size", type=integer, default=None,
                   help="movie reviews: training sentences (default: all but the dev ones)")
    p.add_argument("--teacher-train-size", type=integer, default=None,
                   help="movie reviews: the teacher trains on this many (the students' sentences "
                        "and the next ones of the same shuffle; default: the students' set)")
    p.add_argument("--dev-size", type=integer, default=1000, help="movie reviews: dev sentences")
    p.add_argument("--run-seeds", default=None,
                   help="run only these seeds (comma-separated; the teacher always), e.g. to split "
                        "a table over two processes; the report covers every finished run")
    p.add_argument("--budgets", type=budget_list, default=None,
                   help="fmnist-budget: the total student epochs of each column, comma-separated "
                        "(default: 8,16,32,64)")
    p.add_argument("--rows", default=None,
                   help="run only these rows (comma-separated names as in the table, e.g. "
                        "'KD,Annealing-KD'; the runs they read always); the report covers every "
                        "finished run")
    p.add_argument("--extra", default="", help="flags appended to every CLI call (one string)")
    p.add_argument("--teacher-extra", default="",
                   help="flags appended to the teacher's call after --extra, e.g. "
                        "'--train-subset 60000' for a teacher trained on more images than the students")
    p.add_argument("--jobs", type=integer, default=1,
                   help="runs at a time (a run waits for the checkpoints it reads), e.g. 12 on "
                        "one GPU with many CPU cores; OMP_NUM_THREADS is cores / jobs")
    p.add_argument("--feeders-alone", action="store_true",
                   help="with --jobs N: the runs that other runs read (the teacher, each "
                        "assistant) go first, each alone with every core (on a CPU, rather than "
                        "one core working while the runs waiting for it leave the others idle)")
    p.add_argument("--deadline-s", type=real, default=None,
                   help="stop the runs in flight after this many seconds and report what finished")
    p.add_argument("--logits-cache-dir", default=None,
                   help="the teacher-logit cache of every run that reads the table's teacher "
                        "(default: <out>/logit-cache); tables may share one")
    p.add_argument("--no-logits-cache", action="store_true",
                   help="image tables: every run computes its teacher's logits itself")
    p.add_argument("--python", default=sys.executable, help="interpreter for the CLIs")
    slurm.add_arguments(p)
    return p


def _seed_list(text: str | None) -> set[int] | None:
    if text is None:
        return None
    try:
        return {int(x) for x in text.split(",")}
    except ValueError:
        raise UsageError(f"--run-seeds {text!r} is not a comma-separated list of integers, "
                         "e.g. 0,2,4") from None


def _row_list(text: str | None, plan: Plan) -> set[str] | None:
    if text is None:
        return None
    rows = {r.strip() for r in text.split(",") if r.strip()}
    known = {r.row for r in plan.runs}
    if not rows or rows - known:
        raise UsageError(f"--rows {text!r}: unknown row(s) {', '.join(sorted(rows - known)) or '(none)'}; "
                         f"the rows of {plan.table} are {', '.join(sorted(known))}")
    return rows


def select_runs(plan: Plan, seeds: set[int] | None, rows: set[str] | None) -> Plan:
    """The runs of the chosen seeds and rows, and every run they read."""
    chosen = [r for r in plan.runs if (seeds is None or r.seed in seeds)
              and (rows is None or r.row in rows)]
    needed = {j for r in chosen for j in depends_on(r, plan.runs)}
    needed |= {j for j in list(needed) for j in depends_on(plan.runs[j], plan.runs)}
    keep = [r for i, r in enumerate(plan.runs) if r in chosen or i in needed
            or (r.row == "teacher" and rows is None)]
    return replace(plan, runs=keep)


def _check_sources(args: argparse.Namespace) -> None:
    """--from needs --report-only and existing folders; --notes a readable file."""
    if args.from_ and not args.report_only:
        raise UsageError("--from reads runs for a report: add --report-only (runs are only ever "
                         "written under --out)")
    for src in args.from_:
        if not Path(src).is_dir():
            raise UsageError(f"--from {src} is not a folder; give an earlier --out of this table")
    if args.notes:
        try:
            Path(args.notes).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--notes {args.notes} cannot be read as text "
                             f"({getattr(exc, 'strerror', None) or exc}); give a text file") from None


def read_from(plan: Plan, args: argparse.Namespace) -> Plan:
    """The plan with each run that has not finished under --out read from the first --from
    folder where it finished (the same path under that folder); those folders are only read."""
    out = Path(args.out or f"runs/{plan.table}")
    runs = []
    for run in plan.runs:
        if not run.finished() and out in run.out.parents:
            rel = run.out.relative_to(out)
            run = next((moved for src in args.from_
                        if (moved := replace(run, out=Path(src) / rel)).finished()), run)
        runs.append(run)
    return replace(plan, runs=runs)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.seeds <= 1000:
        raise UsageError(f"--seeds must be at least 1 (and at most 1000), got {args.seeds}")
    if not 1 <= args.jobs <= 1024:
        raise UsageError(f"--jobs must be at least 1 (and at most 1024), got {args.jobs}")
    if not args.scale > 0:
        raise UsageError(f"--scale must be positive, got {args.scale}")
    if args.tasks and not args.table.startswith("glue"):
        raise UsageError("--tasks applies to the glue-roberta and glue-bert tables only")
    for flag, text in (("--extra", args.extra), ("--teacher-extra", args.teacher_extra)):
        try:
            shlex.split(text)
        except ValueError as exc:
            raise UsageError(f"{flag} is not a valid shell string ({exc})") from None
    extra = shlex.split(args.extra)
    parse_epochs(args.epochs)
    run_seeds = _seed_list(args.run_seeds)
    _check_sources(args)
    plan = make_plan(args)
    plan = replace(plan, runs=[replace(r, extra=extra_for(r, args, extra)) for r in plan.runs])
    todo = select_runs(plan, run_seeds, _row_list(args.rows, plan))
    command = shlex.join(["python", "reproduce/run_table.py",
                          *(argv if argv is not None else sys.argv[1:])])
    if args.from_:
        plan = read_from(plan, args)
    if args.dry_run:
        print("\n".join(f"# {line}" for line in [f"{plan.title} ({plan.table})",
                                                  *protocol_lines(plan)] if line))
        for cmd in plan.prepare:
            print(shlex.join(cmd))
        for run in todo.runs:
            print(shlex.join(run.command(args.python, extra_for(run, args, extra))))
        return 0
    if not args.report_only and not shutil.which(args.python):
        raise UsageError(f"--python {args.python!r} is not an executable file; pass the Python "
                         "interpreter that runs the CLIs")
    if args.status:
        try:
            print("\n".join(slurm.status(todo, Path(args.out or f"runs/{plan.table}"),
                                          run_names(todo))))
        except (RuntimeError, FileNotFoundError) as exc:
            raise UsageError(f"--status cannot ask the scheduler ({exc})") from None
        return 0
    if args.launcher == "slurm" and not args.report_only:
        submit(todo, args)
        return 0
    try:
        if not args.report_only:
            execute(todo, args, extra)
    except UsageError:
        write_report(plan, args, command)  # what finished so far
        raise
    md, png = write_report(plan, args, command)
    print(md.read_text())
    print(f"wrote {md} and {png}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
