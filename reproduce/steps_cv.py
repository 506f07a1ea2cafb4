"""Step for step on CPU (fp32, one thread): our CIFAR pipeline against the original codes.

* ``annealing``: ``computer_vision_tasks/annealing_kd_train.py --method annealing`` against the
  original Annealing-KD ``TrainManager`` driven as its ``main()`` does (phase 1, load the best
  phase-1 checkpoint, phase 2 with a new ``TrainManager``).
* ``kd``: ``--method kd --kd-reduction elementwise-mean`` against the TAKD code's ``TrainManager``
  (``train.py`` of imirzadeh/Teacher-Assistant-Knowledge-Distillation).

Ours is built from command-line arguments exactly as the CLI does (``cli.parse_args`` and
``pipeline.ImagePipeline``); only its data loaders are replaced by the fixed batches. The
originals are imported from the folders given, never copied. Each comparison runs in its own
process (both originals have top-level modules of the same names).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from annealing_kd.common.training.lr_schedules import LrSchedule
from reproduce.steps_common import (
    FixedBatches,
    StepRecorder,
    loss_diff,
    state_of,
    verdict,
    weight_diff,
)

ANNEALING_FILES = ["annealing_kd_train.py", "data_loader.py", "model_factory.py"]
TAKD_FILES = ["train.py", "data_loader.py", "model_factory.py"]


# ---- the fixed data ---------------------------------------------------------------------------
def our_pipeline(cli: list[str]):
    """Our pipeline exactly as ``annealing_kd_train.py`` builds it from ``cli``."""
    from annealing_kd.computer_vision_tasks.cli import parse_args
    from annealing_kd.computer_vision_tasks.pipeline import ImagePipeline

    return ImagePipeline(parse_args(cli))


def fixed_batches(pipe, n_epochs: int) -> tuple[list[list[Any]], list[Any]]:
    """``n_epochs`` lists of augmented training batches and the evaluation batches, drawn once
    through our pipeline's own loaders (epoch k: its training loader at ``set_epoch(k)``), as
    it yields them (images, labels and, from the tensor loader, dataset indices)."""
    loader = pipe.train_loader
    epochs = []
    for e in range(n_epochs):
        loader.set_epoch(e)
        epochs.append([tuple(t.clone() for t in b) for b in loader])
    return epochs, [tuple(b) for b in pipe.test_loader]


def as_pairs(batches: list) -> list:
    """(images, labels) of each batch: what the originals' loaders yield."""
    return [(b[0], b[1]) for b in batches]


def init_states(spec: dict) -> tuple[dict, dict]:
    """Teacher and student weights, drawn once (our constructors, seeded); both codes load them."""
    from annealing_kd.computer_vision_tasks import model_zoo

    torch.manual_seed(spec["init_seed"])
    teacher = model_zoo.create_model(spec["teacher"], 10, 3, 32, False)
    student = model_zoo.create_model(spec["student"], 10, 3, 32, False)
    return state_of(teacher), state_of(student)


def split_by_pass(record: dict, passes: list[int], bounds: list[tuple[str, int, int]]) -> dict:
    """The record's steps per phase: ``bounds`` = (phase, first pass, end pass) over the fixed
    batches' passes (1-based pass of each step in ``passes``)."""
    out = {}
    for name, lo, hi in bounds:
        keep = [i for i, p in enumerate(passes) if lo < p <= hi]
        out[name] = {k: [record[k][i] for i in keep] for k in ("losses", "lrs")}
    return out


class PassTagger(StepRecorder):
    """A recorder that also notes, for every step, which pass over the batches it belongs to."""

    def __init__(self, batches: FixedBatches) -> None:
        super().__init__()
        self.batches, self.passes = batches, []

    @contextlib.contextmanager
    def active(self):
        handle = register_optimizer_step_pre_hook(
            lambda opt, a, k: self.passes.append(self.batches.passes))
        try:
            with super().active():
                yield self
        finally:
            handle.remove()


@contextlib.contextmanager
def original_on_path(folder: Path, files: list[str], stubs: dict[str, types.ModuleType]):
    """The original's folder first on sys.path (its modules import each other by bare name),
    with ``stubs`` (modules it imports but does not need here) in sys.modules."""
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}")
    sys.path.insert(0, str(folder))
    sys.modules.update(stubs)
    try:
        yield
    finally:
        sys.path.remove(str(folder))


@contextlib.contextmanager
def in_dir(path: Path):
    old = Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_ours(pipe, init: dict, epochs: list, test: list, bounds) -> dict:
    """Train our pipeline on the fixed batches; per-phase steps, the final weights of each phase
    (read from its run folder) and the per-epoch accuracy."""
    from annealing_kd.common.run_folder import load_weights, read_results

    pipe.models["student"].load_state_dict(init)
    batches = FixedBatches(epochs)
    pipe.train_loader, pipe.sel_loader, pipe.test_loader = batches, test, test
    rec = PassTagger(batches)
    tic = time.perf_counter()
    with rec.active(), contextlib.redirect_stdout(io.StringIO()):
        pipe.train()
    secs = time.perf_counter() - tic
    run = Path(pipe.args.output_dir)
    phases = split_by_pass(rec.take(), rec.passes, bounds)
    results = read_results(run)
    out = {"seconds": secs, "phases": {}, "set_epoch": batches.set_epochs}
    for name in phases:
        acc = [e["eval"]["test_accuracy"] for e in results["epochs"] if e["phase"] == name]
        out["phases"][name] = {"record": phases[name], "last": load_weights(run / name / "last.safetensors"),
                               "best": load_weights(run / name / "best.safetensors"),
                               "accuracy": acc}
    return out


def accuracies(log: str) -> list[float]:
    """Per-epoch accuracy (fraction) from the originals' ``{"metric": ..., "value": %}`` lines."""
    import json

    return [json.loads(line)["value"] / 100 for line in log.splitlines()
            if line.startswith('{"metric"')]


# ---- Annealing-KD against the original ---------------------------------------------------------
def run_original_annealing(spec: dict, init: dict, epochs, test, bounds,
                           where: str = "original") -> dict:
    folder = Path(spec["original"])
    out = Path(spec["out"]) / where
    with original_on_path(folder, ANNEALING_FILES, {}), in_dir(out):
        import annealing_kd_train as orig  # the original's module, from --original

        ckpt = str(out / "student_checkpoint.tar")
        teacher = orig.load_checkpoint(orig.create_cnn_model(spec["teacher"], "cifar10", use_cuda=False),
                                       str(Path(spec["out"]) / "teacher.tar"))
        student = orig.create_cnn_model(spec["student"], "cifar10", use_cuda=False)
        student.load_state_dict(init)
        config = {"epochs_p1": spec["p1"], "epochs_p2": spec["p2"], "learning_rate": 0.1,
                  "momentum": 0.9, "weight_decay": 1e-4, "device": "cpu",
                  "is_plane": not orig.is_resnet(spec["student"]), "trial_id": None,
                  "T_student": 5, "lambda_student": 0.5, "name": spec["student"],
                  "checkpoint_name": ckpt}
        batches, test = FixedBatches([as_pairs(e) for e in epochs]), as_pairs(test)
        rec, logs, result = PassTagger(batches), io.StringIO(), {}
        tic = time.perf_counter()
        with rec.active(), contextlib.redirect_stdout(logs):
            # its main(): phase 1, the best phase-1 checkpoint, phase 2 with a new TrainManager
            orig.TrainManager(spec["tau_max"], 1, student, teacher=teacher, train_loader=batches,
                              test_loader=test, train_config=config).train()
            result["phase1"] = {"last": state_of(student), "best": state_of(torch.load(ckpt)["model_state_dict"])}
            p1_log = logs.getvalue()
            student = orig.load_checkpoint(student, ckpt)
            orig.TrainManager(spec["tau_max"], 2, student, teacher=teacher, train_loader=batches,
                              test_loader=test, train_config=config).train()
            result["phase2"] = {"last": state_of(student)}
        secs = time.perf_counter() - tic
    phases = split_by_pass(rec.take(), rec.passes, bounds)
    result["phase1"]["accuracy"] = accuracies(p1_log)
    result["phase2"]["accuracy"] = accuracies(logs.getvalue()[len(p1_log):])
    for name in phases:
        result[name]["record"] = phases[name]
    return {"seconds": secs, "phases": result}


def annealing(spec: dict) -> dict:
    """Annealing-KD, both phases, against the original CIFAR code."""
    p1, p2 = spec["p1"], spec["p2"]
    teacher_state, init = init_states(spec)
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state_dict": teacher_state}, out / "teacher.tar")
    cli = ["--dataset", "cifar10", "--dataset-dir", spec["data_dir"], "--method", "annealing",
           "--teacher", spec["teacher"], "--teacher-checkpoint", str(out / "teacher.tar"),
           "--student", spec["student"], "--student_epochs_p1", str(p1),
           "--student_epochs_p2", str(p2), "--max_temperature", str(spec["tau_max"]),
           "--batch-size", str(spec["batch_size"]), "--learning-rate", "0.1", "--momentum", "0.9",
           "--weight-decay", "1e-4", "--val-size", "0", "--seed", str(spec["seed"]),
           "--device", "cpu", "--num-workers", "0", "--output-dir", str(out / "ours"),
           "--overwrite-output-dir"]
    pipe = our_pipeline(cli)
    epochs, test = fixed_batches(pipe, p1 + p2)
    bounds = [("phase1", 0, p1), ("phase2", p1, p1 + p2)]
    if spec["arithmetic"] == "control":  # the original against itself, one weight 1 ulp apart
        ours = run_original_annealing(spec, init, epochs, test, bounds)
        orig = run_original_annealing(spec, one_ulp_apart(init), epochs, test, bounds,
                                      where="original-perturbed")
    else:
        ours = run_ours(pipe, init, epochs, test, bounds)
        orig = run_original_annealing(spec, init, epochs, test, bounds)
    rows = []
    for name in ("phase1", "phase2"):
        a, b = ours["phases"][name], orig["phases"][name]
        row = {"comparison": "annealing", "phase": name, "loss": loss_diff(a["record"], b["record"]),
               "weights": weight_diff(a["last"], b["last"]),
               "accuracy": {"ours": a["accuracy"], "original": b["accuracy"]}}
        if name == "phase1":  # phase 2 starts from it on both sides
            row["best_start"] = weight_diff(a["best"], b["best"])
        row.update(verdict(row))
        rows.append(row)
    nb, tau = len(epochs[0]), spec["tau_max"]
    notes = [*data_notes(spec, epochs, test),
             f"Phase 1: {p1} epochs ({p1 * nb} steps), tau_max {tau}: {tau} temperature stages of "
             f"{p1 // tau * nb} steps; phase 2: {p2} epochs ({p2 * nb} steps) from the best phase-1 "
             "checkpoint; SGD lr 0.1 (the original hard-codes it), x0.1 from half and x0.01 from "
             "three quarters of each phase, momentum 0.9, weight decay 1e-4.",
             "The original: its `TrainManager` driven as its `main()` does: phase 1, "
             "`load_checkpoint` of the best phase-1 checkpoint it saved, phase 2 with a new "
             "`TrainManager` (a new SGD).",
             f"Ours: `{our_command(cli)}`.", *arithmetic_note(spec)]
    if spec["arithmetic"] == "ours" and tau & (tau - 1):  # not a power of 2
        notes.append(phi_rounding(teacher_state, spec["teacher"], epochs[0][0][0], (tau, 10)))
    return {"rows": rows, "notes": notes,
            "seconds": {"ours": ours["seconds"], "original": orig["seconds"]},
            "set_epoch": ours.get("set_epoch"), "steps_per_epoch": nb}


def one_ulp_apart(state: dict) -> dict:
    """A copy of ``state`` with the first element of the classifier bias moved to the next
    float32 up: the smallest perturbation there is."""
    out = {k: v.clone() for k, v in state.items()}
    b = out["fc.bias"]
    b[0] = torch.nextafter(b[0], torch.tensor(float("inf")))
    return out


def data_notes(spec: dict, epochs: list, test: list) -> list[str]:
    nb, bs = len(epochs[0]), spec["batch_size"]
    return [f"Data: {nb * bs} Fashion-MNIST training images (zero-padded to 32x32, grey repeated "
            f"to 3 channels) in {nb} batches of {bs}, augmented (crop 32 pad 4, flip) and shuffled "
            "once per epoch by our pipeline's own training loader; "
            f"{sum(len(b[1]) for b in test)} test images for the per-epoch evaluation and "
            "selection (ours `--val-size 0`, as the original).",
            f"Teacher {spec['teacher']} and student {spec['student']} drawn once (our "
            f"constructors, seed {spec['init_seed']}; the teacher untrained, in eval mode: only its "
            "logits matter here) and loaded into both codes, the teacher through each code's own "
            "checkpoint loader."]


def our_command(cli: list[str]) -> str:
    import shlex

    return shlex.join(["python", "computer_vision_tasks/annealing_kd_train.py", *cli])


def arithmetic_note(spec: dict) -> list[str]:
    if spec.get("arithmetic") == "control":
        return ["Control row: NOT ours. The original against itself, the second run's initial "
                "classifier bias[0] moved to the next float32 (one ulp); columns 'ours' = the "
                "original, 'original' = the perturbed original. It shows how far this setting "
                "amplifies the smallest possible difference."]
    if spec.get("arithmetic") != "original":
        return []
    what = ("`z_t * T / tau_max` (T = 1 .. tau_max) instead of our `Phi * z_t`"
            if spec["kind"] == "annealing" else
            "`(1 - a) * CE + a * tau * tau * nn.KLDivLoss()(log_softmax(z_s/tau), softmax(z_t/tau))` "
            "instead of our log-target KL summed and divided")
    return [f"Diagnostic row: our objective replaced, from the harness, by the same loss written "
            f"as the original writes it, {what}; everything else is ours as shipped."]


# ---- KD against the TAKD code -----------------------------------------------------------------
def takd_effective(step: int, total: int) -> float:
    """The TAKD code's schedule as it runs (its ``epoch < int(epoch/2.0)`` is never true): with
    base lr 0.1, x0.1 until 3/4 of the phase, x0.01 after; per step, which is its per-epoch
    schedule when the epoch count is a multiple of 4."""
    return 0.01 if step >= 3 * total // 4 else 0.1


@dataclasses.dataclass(frozen=True)
class TakdSchedule(LrSchedule):
    """:func:`takd_effective` as a phase's learning-rate schedule (a factor per optimizer step)."""

    def build(self, optimizer: Any, total: int) -> Any:
        from torch.optim.lr_scheduler import LambdaLR

        return LambdaLR(optimizer, lambda step: takd_effective(step, total))


def with_takd_schedule(pipe) -> None:
    """Give our KD phase the TAKD code's effective learning-rate schedule, from outside (the
    pipeline's ``phase`` hook; every other Phase setting is the CLI's)."""
    make = pipe.phase
    pipe.phase = lambda step: dataclasses.replace(make(step), lr_schedule=TakdSchedule())


def run_takd(spec: dict, init: dict, epochs, test, bounds) -> dict:
    folder = Path(spec["takd"])
    out = Path(spec["out"]) / "takd"
    nni = types.ModuleType("nni")  # imported at the top of its train.py, used only in __main__
    with original_on_path(folder, TAKD_FILES, {"nni": nni}), in_dir(out):
        import train as takd  # the TAKD code's module, from --takd

        teacher = takd.load_checkpoint(takd.create_cnn_model(spec["teacher"], "cifar10"),
                                       str(Path(spec["out"]) / "teacher.tar"))
        student = takd.create_cnn_model(spec["student"], "cifar10")
        student.load_state_dict(init)
        config = {"epochs": spec["epochs"], "learning_rate": 0.1, "momentum": 0.9,
                  "weight_decay": 1e-4, "device": "cpu", "is_plane": not takd.is_resnet(spec["student"]),
                  "trial_id": None, "T_student": spec["kd_temperature"],
                  "lambda_student": spec["kd_alpha"], "name": spec["student"]}
        batches, test = FixedBatches([as_pairs(e) for e in epochs]), as_pairs(test)
        rec, logs = PassTagger(batches), io.StringIO()
        tic = time.perf_counter()
        with rec.active(), contextlib.redirect_stdout(logs):
            takd.TrainManager(student, teacher=teacher, train_loader=batches, test_loader=test,
                              train_config=config).train()
        secs = time.perf_counter() - tic
    phases = split_by_pass(rec.take(), rec.passes, bounds)
    return {"seconds": secs, "phases": {"student": {"record": phases["student"], "last": state_of(student),
                                                    "accuracy": accuracies(logs.getvalue())}}}


def kd(spec: dict) -> dict:
    """KD (elementwise-mean soft term) against the TAKD code's training loop."""
    teacher_state, init = init_states(spec)
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state_dict": teacher_state}, out / "teacher.tar")
    cli = ["--dataset", "cifar10", "--dataset-dir", spec["data_dir"], "--method", "kd",
           "--teacher", spec["teacher"], "--teacher-checkpoint", str(out / "teacher.tar"),
           "--student", spec["student"], "--student-epochs", str(spec["epochs"]),
           "--kd-temperature", str(spec["kd_temperature"]), "--kd-alpha", str(spec["kd_alpha"]),
           "--kd-reduction", "elementwise-mean", "--batch-size", str(spec["batch_size"]),
           "--learning-rate", "0.1", "--momentum", "0.9", "--weight-decay", "1e-4",
           "--val-size", "0", "--seed", str(spec["seed"]), "--device", "cpu", "--num-workers", "0",
           "--output-dir", str(out / "ours"), "--overwrite-output-dir"]
    pipe = our_pipeline(cli)
    with_takd_schedule(pipe)
    epochs, test = fixed_batches(pipe, spec["epochs"])
    bounds = [("student", 0, spec["epochs"])]
    ours = run_ours(pipe, init, epochs, test, bounds)
    theirs = run_takd(spec, init, epochs, test, bounds)
    a, b = ours["phases"]["student"], theirs["phases"]["student"]
    row = {"comparison": "kd", "phase": "student", "loss": loss_diff(a["record"], b["record"]),
           "weights": weight_diff(a["last"], b["last"]),
           "accuracy": {"ours": a["accuracy"], "original": b["accuracy"]}}
    row.update(verdict(row))
    e, nb = spec["epochs"], len(epochs[0])
    notes = [*data_notes(spec, epochs, test),
             f"{e} epochs ({e * nb} steps), tau {spec['kd_temperature']:g}, alpha "
             f"{spec['kd_alpha']:g}; SGD momentum 0.9, weight decay 1e-4.",
             "Our KD loop with the TAKD code's effective schedule, set from the harness (our "
             "pipeline's phase with its lr factor replaced): its `epoch < int(epoch/2.0)` is never "
             f"true, so it trains at lr 0.01 until epoch int(3E/4) = {3 * e // 4} and 0.001 after; "
             "our default is 0.1 / 0.01 / 0.001 at 1/2 and 3/4.",
             "The TAKD code: its `train.py` `TrainManager` (with a stub `nni` module: it is "
             "imported at the top of the file and used only in `__main__`).",
             f"Ours: `{our_command(cli)}` (and the schedule above).", *arithmetic_note(spec)]
    return {"rows": [row], "notes": notes,
            "seconds": {"ours": ours["seconds"], "original": theirs["seconds"]},
            "set_epoch": ours.get("set_epoch"), "steps_per_epoch": nb}


# ---- diagnostic: our objectives with the originals' float32 expressions ------------------------
def use_original_arithmetic(spec: dict) -> None:
    """Diagnostic only (rows labelled so): replace our objective, in ``annealing_kd.common.methods.objectives.OBJECTIVES``,
    by the same loss written as the original writes it, so that a run shows whether anything but
    that expression's rounding differs. Annealing: ``z_t * T / tau_max`` (T = 1 .. tau_max)
    instead of ``Phi * z_t``; KD: ``(1 - a) * CE + a * tau * tau * nn.KLDivLoss()(log_softmax,
    softmax)`` instead of our ``log_target`` KL summed and divided."""
    import torch.nn.functional as F
    from torch import nn

    from annealing_kd.common.methods import objectives

    tau_max = spec.get("tau_max")

    def anneal(logits, labels, targets, phi, **options):
        t = round(phi * tau_max)  # the original's integer T, counting up
        return F.mse_loss(logits, targets * t / tau_max)

    def kd(logits, labels, targets, phi, *, kd_alpha, kd_temperature, **options):
        tau = kd_temperature
        kl = nn.KLDivLoss()(F.log_softmax(logits / tau, dim=1), F.softmax(targets / tau, dim=1))
        return (1 - kd_alpha) * nn.CrossEntropyLoss()(logits, labels) + kd_alpha * tau * tau * kl

    name, loss = ("anneal", anneal) if spec["kind"] == "annealing" else ("kd", kd)
    objectives.OBJECTIVES[name] = dataclasses.replace(objectives.OBJECTIVES[name], loss=loss)


def phi_rounding(teacher_state: dict, arch: str, x: torch.Tensor, taus) -> str:
    """Phi's float32 rounding measured on the teacher's logits of one batch: ours ``Phi * z``
    (one rounding of a double Phi) against the original's ``z * T / tau_max`` (two roundings)."""
    from annealing_kd.computer_vision_tasks import model_zoo

    teacher = model_zoo.create_model(arch, 10, 3, 32, False)
    teacher.load_state_dict(teacher_state)
    with torch.no_grad():
        z = teacher.eval()(x)
    parts = []
    for tau in taus:
        worst, rel, differ = 0.0, 0.0, 0
        for t in range(1, tau + 1):
            ours, orig = (1.0 - (tau - t) / tau) * z, z * t / tau
            d = (ours - orig).abs()
            worst = max(worst, d.max().item())
            rel = max(rel, (d / orig.abs().clamp_min(1e-30)).max().item())
            differ += int((d > 0).sum())
        parts.append(f"tau_max {tau}: {differ} of {z.numel() * tau} targets differ, by at most "
                     f"{worst:.1e} ({rel:.1e} relative)")
    return ("Phi's float32 rounding on this teacher's logits of one batch, every T (ours "
            "`Phi * z_t`, Phi a double rounded once; the original `z_t * T / tau_max`, two "
            "roundings; identical when tau_max is a power of 2): " + "; ".join(parts) + ".")
