"""Our code against the original code, in two modes.

    python reproduce/against_original.py --steps --original /path/to/Annealing_KD [--takd /path/to/TAKD]
    python reproduce/against_original.py --original /path/to/Annealing_KD [--out DIR] [--seeds 5]

``--steps``: step for step (``reproduce/steps.py``): the same initial weights and batches given to
both codes, the loss of every optimizer step and the final weights of each phase compared.

Without it, the low-power statistical comparison: same data, same settings, independent seeds,
our CIFAR CLI against the original code's ``TrainManager``.

The original (huawei-noah/Efficient-NLP, ``Annealing_KD/computer_vision_tasks``) is imported from
``--original`` at run time, never copied. Both codes get the same real data: a fixed subset of
Fashion-MNIST, zero-padded to 32x32 and repeated to 3 channels so that the CIFAR models take it.

* The original: its ``get_cifar(10, crop=True)`` (crop 32 pad 4, flip, its normalisation, batch
  128) with torchvision's CIFAR10 class swapped, in its process only, for our arrays; its
  ``TrainManager`` on CPU with the ``train_config`` of its ``main()``; phase 2 starts from the
  best phase-1 checkpoint, as its ``main()`` does. Each run is its own process (1 torch thread).
* Ours: ``computer_vision_tasks/annealing_kd_train.py`` as a user runs it, on the same images
  written in the ``cifar-10-batches-py`` layout (``--dataset cifar10``), ``--val-size 0``.

One teacher is trained once by the original and loaded by both. Runs go one after another. The
report (``against-original.md`` and ``.json``) has Phi per epoch of both, the test accuracy
(mean +- std over seeds) of both per method and a two-sided Welch t-test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import pickle
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: python reproduce/against_original.py
    sys.path.insert(0, str(ROOT))

from annealing_kd.common.cli.entry import run_cli  # noqa: E402
from annealing_kd.common.errors import UsageError  # noqa: E402
from annealing_kd.common.run_folder import read_results  # noqa: E402
from reproduce.stats import ALPHA, detectable_difference, mean_std, welch  # noqa: E402

CLI = ROOT / "computer_vision_tasks" / "annealing_kd_train.py"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
METHODS = ["annealing", "scratch"]
ORIGINAL_FILES = ["annealing_kd_train.py", "data_loader.py", "model_factory.py"]


# ---- data -----------------------------------------------------------------------------------
def to_rgb32(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 32, 32, 3): 2 pixels of zero padding, the grey repeated."""
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected (N, 28, 28) images, got {images.shape}")
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    return np.repeat(padded[..., None], 3, axis=-1).astype(np.uint8)


def balanced_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` images, as equal a number per class as ``n`` allows (fixed by seed)."""
    classes = np.unique(labels)
    if not 1 <= n <= len(labels):
        raise UsageError(f"subset of {n} images asked for, {len(labels)} available")
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    take = [n // len(classes) + (i < n % len(classes)) for i in range(len(classes))]
    return np.sort(np.concatenate([idx[:k] for idx, k in zip(per_class, take)]))


def load_fashion(folder: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels from the four ``*-idx?-ubyte.gz`` files in ``folder``."""
    import gzip

    prefix = "train" if train else "t10k"
    arrays = []
    for kind, offset in (("images-idx3", 16), ("labels-idx1", 8)):
        path = folder / f"{prefix}-{kind}-ubyte.gz"
        if not path.is_file():
            raise UsageError(f"{path} not found; pass --fashion-dir with the four Fashion-MNIST "
                             "*-ubyte.gz files")
        raw = np.frombuffer(gzip.open(path).read(), dtype=np.uint8, offset=offset)
        arrays.append(raw.reshape(-1, 28, 28) if kind.startswith("images") else raw)
    return arrays[0], arrays[1].astype(np.int64)


def write_cifar10_layout(folder: Path, train_x: np.ndarray, train_y: np.ndarray,
                         test_x: np.ndarray, test_y: np.ndarray, classes: Sequence[str]) -> Path:
    """The arrays (N, 32, 32, 3) as ``folder/cifar-10-batches-py`` (5 train batches, test_batch,
    batches.meta), the python layout torchvision's CIFAR10 reads."""
    base = folder / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)

    def dump(name: str, x: np.ndarray, y: np.ndarray) -> None:
        rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # CHW, row-major, as CIFAR
        with open(base / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": rows, "labels": [int(v) for v in y]}, f)

    for i, idx in enumerate(np.array_split(np.arange(len(train_x)), 5)):
        dump(f"data_batch_{i + 1}", train_x[idx], train_y[idx])
    dump("test_batch", test_x, test_y)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(classes), "num_vis": 3072,
                     "num_cases_per_batch": math.ceil(len(train_x) / 5)}, f)
    return base


# ---- the original, in its own process --------------------------------------------------------
def original_cv_dir(path: str | os.PathLike) -> Path:
    """``path`` or ``path/computer_vision_tasks``, whichever holds the original's CV files."""
    p = Path(path)
    for cand in (p, p / "computer_vision_tasks"):
        if all((cand / f).is_file() for f in ORIGINAL_FILES):
            return cand.resolve()
    raise UsageError(f"--original {p}: no {', '.join(ORIGINAL_FILES)} there or in its "
                     "computer_vision_tasks/; pass the Annealing_KD folder of huawei-noah/Efficient-NLP")


class _Tee(io.TextIOBase):
    """stdout to a log file and to a list of lines."""

    def __init__(self, log) -> None:
        self.log, self.text = log, []

    def write(self, s: str) -> int:
        self.log.write(s)
        self.log.flush()
        self.text.append(s)
        return len(s)


def parse_original_log(text: str, tau_max: int | None) -> list[dict]:
    """Per epoch of one ``TrainManager.train()``: temperature, Phi = T / tau_max (phase 1 with a
    teacher, ``tau_max`` given: T starts at 1, ``temperature is T`` lines step it) and test
    accuracy as a fraction (its ``{"metric": ..., "value": %}`` line after ``epoch k/n``)."""
    temp = 1 if tau_max else None
    epochs: list[dict] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("temperature is ") and tau_max:
            temp = int(line.split()[-1])
        elif line.startswith("epoch ") and "/" in line:
            k = int(line.split()[1].split("/")[0])
            epochs.append({"epoch": k, "temperature": temp,
                           "phi": temp / tau_max if tau_max else None, "test_accuracy": None})
        elif line.startswith('{"metric"') and epochs:
            epochs[-1]["test_accuracy"] = float(json.loads(line)["value"]) / 100
    return epochs


def run_original(spec: dict) -> dict:
    """One run of the original (teacher, annealing or scratch), as its ``main()`` would do it."""
    import torch

    torch.set_num_threads(1)
    cv = original_cv_dir(spec["original"])
    sys.path.insert(0, str(cv))
    import annealing_kd_train as orig  # noqa: PLC0415  (the original's module)
    import data_loader  # noqa: PLC0415
    import torchvision

    from annealing_kd.computer_vision_tasks.data import ArrayImages

    arrays = np.load(spec["data"])

    def dataset(root, train, download, transform):  # stands in for torchvision's CIFAR10
        split = "train" if train else "test"
        return ArrayImages(arrays[f"{split}_x"], arrays[f"{split}_y"], transform)

    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    ckpt = str(out / "checkpoint.tar")
    base = {"learning_rate": spec["learning_rate"], "momentum": 0.9, "weight_decay": 1e-4,
            "device": "cpu", "is_plane": not orig.is_resnet(spec["student"]), "trial_id": None,
            "T_student": 5, "lambda_student": 0.5, "checkpoint_name": ckpt}
    tau = spec["tau_max"]
    tic = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        tee = _Tee(log)
        with contextlib.redirect_stdout(tee), \
                _patched(torchvision.datasets, "CIFAR10", dataset), \
                _patched(data_loader, "NUM_WORKERS", 0):
            train_loader, test_loader = data_loader.get_cifar(10, crop=True)
            torch.manual_seed(spec["seed"])
            kind = spec["kind"]
            model = orig.create_cnn_model(spec["teacher"] if kind == "teacher" else spec["student"],
                                          "cifar10", use_cuda=False)
            phases = []
            if kind in ("teacher", "scratch"):
                config = {**base, "epochs": spec["epochs"], "name": spec["teacher" if kind ==
                                                                           "teacher" else "student"]}
                best = orig.TrainManager(tau, 1, model, teacher=None, train_loader=train_loader,
                                         test_loader=test_loader, train_config=config).train()
                phases.append(("student" if kind == "scratch" else "teacher", None))
            else:
                teacher = orig.load_checkpoint(
                    orig.create_cnn_model(spec["teacher"], "cifar10", use_cuda=False),
                    spec["teacher_checkpoint"])
                config = {**base, "epochs_p1": spec["p1"], "epochs_p2": spec["p2"],
                          "name": spec["student"]}
                for phase in (1, 2):
                    start = len(tee.text)
                    if phase == 2:
                        model = orig.load_checkpoint(model, ckpt)
                    best = orig.TrainManager(tau, phase, model, teacher=teacher,
                                             train_loader=train_loader, test_loader=test_loader,
                                             train_config=config).train()
                    phases.append((f"phase{phase}", "".join(tee.text[start:])))
            text = "".join(tee.text)
    epochs = []
    for name, part in phases:
        for e in parse_original_log(text if part is None else part,
                                    tau if name == "phase1" else None):
            epochs.append({"phase": name, **e})
    result = {"kind": kind, "seed": spec["seed"], "best_test_accuracy": best / 100,
              "epochs": epochs, "training_seconds": round(time.perf_counter() - tic, 1)}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


@contextlib.contextmanager
def _patched(obj, name: str, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


# ---- report ---------------------------------------------------------------------------------
def verdict(method: str, ours: Sequence[float], original: Sequence[float], test: dict) -> str:
    """The sentence the report is for."""
    (mo, _), (mr, _) = mean_std(ours), mean_std(original)
    what = f"{method} test accuracy"
    if math.isnan(test["p"]):
        return f"ours and the original cannot be compared by a t-test on {what} ({test['note']})."
    if test["p"] >= ALPHA:
        return (f"ours and the original are statistically indistinguishable on {what} "
                f"(Welch p = {test['p']:.3f} >= {ALPHA}; difference {100 * (mo - mr):+.2f} points).")
    return (f"ours and the original differ on {what}: ours {100 * mo:.2f}% vs the original "
            f"{100 * mr:.2f}% ({100 * (mo - mr):+.2f} points, Welch p = {test['p']:.4f} < {ALPHA}).")


def phi_table(ours: list[float | None], original: list[float | None]) -> list[str]:
    rows = ["| phase-1 epoch | Phi ours | Phi original | same |", "|---:|---:|---:|:---:|"]
    for i in range(max(len(ours), len(original))):
        a = ours[i] if i < len(ours) else None
        b = original[i] if i < len(original) else None
        fa = "-" if a is None else f"{a:.4f}"
        fb = "-" if b is None else f"{b:.4f}"
        same = "yes" if a is not None and b is not None and math.isclose(a, b) else "NO"
        rows.append(f"| {i + 1} | {fa} | {fb} | {same} |")
    return rows


def phase1_phi(epochs: list[dict]) -> list[float | None]:
    return [e["phi"] for e in epochs if e["phase"] == "phase1"]


def summarize(runs: list[dict], methods: Sequence[str]) -> dict:
    """Per method: accuracies of both codes, mean, std, Welch test, verdict; Phi of both."""
    out: dict = {}
    rows = [(m, m, "test_accuracy") for m in methods]
    if "annealing" in methods and all("best_last_phase_test_accuracy" in r for r in runs):
        rows.append(("annealing phase 2", "annealing", "best_last_phase_test_accuracy"))
    for row, m, key in rows:
        acc = {code: [r[key] for r in runs if r["method"] == m and r["code"] == code]
               for code in ("ours", "original")}
        if not acc["ours"] or not acc["original"]:
            continue
        test = welch(acc["ours"], acc["original"])
        out[row] = {"test_accuracy": acc, "mean_std": {c: mean_std(v) for c, v in acc.items()},
                    "welch": test, "verdict": verdict(row, acc["ours"], acc["original"], test),
                    "detectable_difference": (detectable_difference(acc["ours"], acc["original"])
                                              if min(map(len, acc.values())) > 1 else None)}
    phis = {code: next((phase1_phi(r["epochs"]) for r in runs
                        if r["method"] == "annealing" and r["code"] == code), [])
            for code in ("ours", "original")}
    out["phi"] = phis
    out["phi_identical"] = bool(phis["ours"]) and len(phis["ours"]) == len(phis["original"]) and all(
        a is not None and b is not None and math.isclose(a, b)
        for a, b in zip(phis["ours"], phis["original"]))
    return out


STEPS_JSON = "against-original-steps.json"


def write_report(path_md: Path, report: dict | None = None, steps: dict | None = None) -> None:
    """The report: the step-for-step section (``--steps``) first, then the low-power statistical
    comparison; either one missing is read from its JSON beside ``path_md`` (if there is one)."""
    from reproduce.steps import section

    if report is None and path_md.with_suffix(".json").is_file():
        report = json.loads(path_md.with_suffix(".json").read_text())
    if steps is None and (path_md.parent / STEPS_JSON).is_file():
        steps = json.loads((path_md.parent / STEPS_JSON).read_text())
    lines = ["# Ours against the original code", ""]
    if steps:
        lines += section(steps)
    if report:
        lines += statistical_lines(report)
    path_md.write_text("\n".join(lines))


def statistical_lines(report: dict) -> list[str]:
    """The low-power statistical comparison (the default mode)."""
    s, c = report["summary"], report["settings"]
    lines = [
        "## Low-power statistical comparison: same data, same settings, independent seeds",
        "",
        f"Written by `reproduce/against_original.py` on {report['finished']} "
        f"({report['seconds']:.0f} s wall time in all, runs one after another, 1 torch thread each; "
        "a run's seconds below are the wall time of its process, start-up included).",
        "",
        "```",
        report["command"],
        "```",
        "",
        "### Verdict",
        "",
        *[f"- {s[r]['verdict']}" for r in _rows(s)],
        f"- Phi per phase-1 epoch is {'identical' if s['phi_identical'] else 'NOT identical'} "
        "in both codes (table below).",
        "",
        "### Setup",
        "",
        f"- Data: Fashion-MNIST zero-padded to 32x32, grey repeated to 3 channels; "
        f"{c['train_images']} training images and {c['test_images']} test images (class-balanced "
        f"subsets fixed by seed {c['subset_seed']}), the same images for both codes.",
        f"- Teacher {c['teacher']} trained once by the original's TrainManager "
        f"({c['teacher_epochs']} epochs, seed 20, best epoch on test as the original): test "
        f"accuracy {100 * report['teacher']['original_test_accuracy']:.2f}% (original's eval), "
        f"{_pct(report['teacher'].get('ours_test_accuracy'))} (our CLI's eval of the same weights).",
        f"- Student {c['student']}; Annealing-KD: phase 1 {c['p1']} epochs, phase 2 {c['p2']} "
        f"epochs, tau_max {c['tau_max']}; student alone (scratch): {c['p1'] + c['p2']} epochs "
        f"(the original's TrainManager without teacher; ours `--method scratch`).",
        f"- SGD lr {c['learning_rate']}, momentum 0.9, weight decay 1e-4, batch 128; lr x0.1 at 1/2 "
        "and x0.01 at 3/4 of each phase; selection of the best epoch on the test set in both "
        "(the original's only mode; ours `--val-size 0`).",
        f"- Seeds: {', '.join(map(str, c['seeds']))} (each code seeds its own RNG; runs are "
        "independent samples, not paired).",
        "",
        "### Test accuracy (%), mean +- std over seeds",
        "",
        "`annealing`: the CLI's final student (ours: best epoch of phase 1 + phase 2); "
        "`annealing phase 2`: the best phase-2 epoch, what the original reports. The last column: "
        "the difference this test would detect with 80% power at these spreads.",
        "",
        "| method | ours | original | difference | Welch t | p (two-sided) | detectable |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in _rows(s):
        (mo, so), (mr, sr) = s[m]["mean_std"]["ours"], s[m]["mean_std"]["original"]
        w, dd = s[m]["welch"], s[m].get("detectable_difference")
        lines.append(f"| {m} | {100 * mo:.2f} +- {100 * (so or 0):.2f} | {100 * mr:.2f} +- "
                     f"{100 * (sr or 0):.2f}"
                     f" | {100 * (mo - mr):+.2f} | {w['t']:.3f} | {w['p']:.4f} | "
                     f"{'-' if dd is None else f'{100 * dd:.1f}'} |")
    lines += ["", "Per seed (ours / original):", ""]
    for m in _rows(s):
        acc = s[m]["test_accuracy"]
        lines.append(f"- {m}: " + "; ".join(
                f"{100 * a:.2f} / {100 * b:.2f}" for a, b in zip(acc["ours"], acc["original"])))
    if report.get("notes"):
        lines += ["", "### What this says", "", *report["notes"]]
    lines += ["", "### Phi per phase-1 epoch", "", *phi_table(s["phi"]["ours"], s["phi"]["original"]),
              "", "### Differences that remain", "", *[f"- {d}" for d in report["differences"]],
              "", "### Seconds", "",
              "| run | seconds |", "|---|---:|",
              *[f"| {k} | {v:.0f} |" for k, v in report["timings"].items()], ""]
    return lines


def _rows(summary: dict) -> list[str]:
    return [k for k, v in summary.items() if isinstance(v, dict) and "mean_std" in v]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


DIFFERENCES = [
    "Normalisation: the original normalises with CIFAR-100's statistics (its get_cifar, for "
    "CIFAR-10 too), ours with CIFAR-10's (`--dataset cifar10`); the shared teacher was trained "
    "under the original's, so our CLI feeds it inputs shifted by about 0.02 and scaled by about "
    "0.95 (its test accuracy under both is in the setup).",
    "Learning-rate decay: the original sets lr per epoch (0.1, x0.1 from epoch int(E/2), x0.01 "
    "from int(3E/4)) and ignores --learning-rate; ours per optimizer step at step total//2 and "
    "3*total//4. With phase lengths that are multiples of 4 epochs the boundaries fall on the "
    "same epochs.",
    "Final student: the original reports the best phase-2 epoch; ours the best epoch over phase 1 "
    "and phase 2 (per-run numbers in the JSON give ours' phase-2 best too).",
    "Data order and augmentation draws: the original's DataLoader shuffles with torch's global "
    "RNG (0 workers here instead of its 2: same results, less CPU), ours with a (seed, epoch) "
    "sampler; model initialisation draws differ too. Runs are independent samples.",
    "Teacher forward: the original runs the teacher with autograd on every phase-1 batch, ours "
    "under no_grad (same logits).",
]


# ---- orchestration --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--original", required=True,
                   help="the Annealing_KD folder of huawei-noah/Efficient-NLP (or its "
                   "computer_vision_tasks folder)")
    p.add_argument("--out", default="runs/against-original", help="where every run writes")
    p.add_argument("--report", default=str(ROOT / "docs" / "results" / "against-original.md"),
                   help="the Markdown report (the .json beside it)")
    p.add_argument("--fashion-dir", default="/usr/share/datasets/fashion-mnist",
                   help="the four Fashion-MNIST *-ubyte.gz files")
    # defaults: about 40 minutes on 2 busy CPU cores (measured 2026-11-28; see the report)
    p.add_argument("--train-images", type=int, default=500)
    p.add_argument("--test-images", type=int, default=500)
    p.add_argument("--teacher", default="resnet20")
    p.add_argument("--student", default="resnet8")
    p.add_argument("--teacher-epochs", type=int, default=16)
    p.add_argument("--p1", type=int, default=4, help="phase-1 epochs (a multiple of --tau-max)")
    p.add_argument("--p2", type=int, default=4, help="phase-2 epochs")
    p.add_argument("--tau-max", type=int, default=4)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--report-only", action="store_true",
                   help="rebuild the report from the .json beside --report (no runs)")
    p.add_argument("--notes", default=None,
                   help="with --report-only: a text file whose lines go into the report (with "
                   "--steps: into its step section)")
    p.add_argument("--run-original", default=None, help=argparse.SUPPRESS)  # worker: spec.json
    s = p.add_argument_group("step for step (--steps): same weights, same batches, every step's loss")
    s.add_argument("--steps", action="store_true",
                   help="run the step-for-step comparisons instead of the statistical one")
    s.add_argument("--takd", default=None,
                   help="the TAKD code's folder (imirzadeh/Teacher-Assistant-Knowledge-"
                   "Distillation): adds KD --kd-reduction elementwise-mean against its loop")
    s.add_argument("--step-batch-size", type=int, default=32, help="CIFAR comparisons' batch size")
    s.add_argument("--step-batches", type=int, default=10, help="batches per epoch")
    s.add_argument("--step-test-images", type=int, default=128,
                   help="test images evaluated after every epoch (selection, as the original)")
    s.add_argument("--step-p1", type=int, default=8, help="phase-1 epochs (a multiple of 4 and "
                   "of --step-tau)")
    s.add_argument("--step-p2", type=int, default=4, help="phase-2 epochs (a multiple of 4)")
    s.add_argument("--step-tau", type=int, default=4, help="tau_max")
    s.add_argument("--step-phi-tau", type=int, default=3,
                   help="also Annealing-KD at this tau_max, 4*tau phase-1 epochs (not a power of 2: "
                   "Phi's float32 rounding differs); 0 skips it")
    s.add_argument("--step-kd-epochs", type=int, default=8, help="KD epochs (a multiple of 4)")
    s.add_argument("--step-glue-train", type=int, default=128,
                   help="GLUE: training sentences (movie reviews as SST-2); 0 skips GLUE")
    s.add_argument("--step-resume", action="store_true",
                   help="keep the comparisons that finished in --out with the same settings")
    s.add_argument("--step-quick", action="store_true",
                   help="GLUE: only the comparison with the optimizer ours uses (for a quick check)")
    s.add_argument("--step-worker", default=None, help=argparse.SUPPRESS)  # worker: spec.json
    return p


def check_step_args(args) -> None:
    """Epoch counts whose step-decay and temperature boundaries coincide in both codes."""
    for flag, value in (("--step-p1", args.step_p1), ("--step-p2", args.step_p2),
                        ("--step-kd-epochs", args.step_kd_epochs)):
        if value < 4 or value % 4:
            raise UsageError(f"{flag} {value}: give a multiple of 4 (the step decay at 1/2 and 3/4 "
                             "then falls on the same epoch in both codes)")
    if args.step_tau < 1 or args.step_p1 % args.step_tau:
        raise UsageError(f"--step-p1 {args.step_p1} is not a multiple of --step-tau "
                         f"{args.step_tau}; pick a multiple (equal temperature stages)")
    for flag, value in (("--step-batch-size", args.step_batch_size),
                        ("--step-batches", args.step_batches),
                        ("--step-test-images", args.step_test_images)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if args.step_phi_tau < 0 or args.step_glue_train < 0:
        raise UsageError("--step-phi-tau and --step-glue-train must be >= 0 (0 skips)")


def prepare_data(args, out: Path, n_train: int | None = None, n_test: int | None = None) -> Path:
    """The subset as ``out/data.npz`` (for the original) and ``out/data/cifar-10-batches-py``."""
    data_npz = out / "data.npz"
    out.mkdir(parents=True, exist_ok=True)
    (tx, ty), (vx, vy) = (load_fashion(Path(args.fashion_dir), t) for t in (True, False))
    tr = balanced_subset(ty, n_train or args.train_images, seed=0)
    te = balanced_subset(vy, n_test or args.test_images, seed=1)
    arrays = {"train_x": to_rgb32(tx[tr]), "train_y": ty[tr].astype(np.int64),
              "test_x": to_rgb32(vx[te]), "test_y": vy[te].astype(np.int64)}
    np.savez(data_npz, **arrays)
    write_cifar10_layout(out / "data", arrays["train_x"], arrays["train_y"], arrays["test_x"],
                         arrays["test_y"], FASHION_CLASSES)
    return data_npz


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def original_process(spec: dict, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.json"
    spec_path.write_text(json.dumps({**spec, "out": str(out)}))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--original", spec["original"],
           "--run-original", str(spec_path)]
    tic = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    secs = time.perf_counter() - tic
    if proc.returncode != 0:
        raise UsageError(f"the original's run in {out} failed (exit {proc.returncode}): "
                         f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}; "
                         f"see {out}/log.txt")
    return {**json.loads((out / "result.json").read_text()), "seconds": round(secs, 1)}


def ours_process(cli_args: list[str], out: Path) -> tuple[dict, str, float]:
    cmd = [sys.executable, str(CLI), *cli_args, "--output-dir", str(out), "--overwrite-output-dir"]
    tic = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    secs = time.perf_counter() - tic
    out.mkdir(parents=True, exist_ok=True)
    (out / "log.txt").write_text(proc.stdout)
    if proc.returncode != 0:
        raise UsageError(f"our CLI failed (exit {proc.returncode}) in {out}: "
                         f"{proc.stdout.strip().splitlines()[-1]}; command: {shlex.join(cmd)}")
    return read_results(out), shlex.join(cmd), secs


def ours_record(res: dict, method: str, seed: int, secs: float) -> dict:
    epochs = [{"phase": e["phase"], "epoch": e["epoch"], "temperature": e["temperature"],
               "phi": e["phi"], "test_accuracy": e["eval"]["test_accuracy"]} for e in res["epochs"]]
    last = [e["test_accuracy"] for e in epochs if e["phase"] == ("phase2" if method == "annealing"
                                                                 else "student")]
    return {"code": "ours", "method": method, "seed": seed,
            "test_accuracy": res["final"]["metrics"]["test_accuracy"],
            "best_last_phase_test_accuracy": max(last), "epochs": epochs,
            "selected": [res["final"]["selected_phase"], res["final"]["selected_epoch"]],
            "teacher_test_accuracy": (res.get("teacher") or {}).get("test_accuracy"),
            "seconds": round(secs, 1)}


def compare(args) -> int:
    if args.p1 % args.tau_max:
        raise UsageError(f"--p1 {args.p1} is not a multiple of --tau-max {args.tau_max}: the "
                         "original's Phi would then pass 1; pick a multiple")
    methods = [m for m in args.methods.split(",") if m]
    if not methods or any(m not in METHODS for m in methods):
        raise UsageError(f"--methods {args.methods!r}: choose from {', '.join(METHODS)}")
    original = str(original_cv_dir(args.original))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    timings: dict[str, float] = {}
    data_npz = prepare_data(args, out)
    timings["data preparation"] = time.perf_counter() - tic
    common = {"original": original, "data": str(data_npz), "teacher": args.teacher,
              "student": args.student, "tau_max": args.tau_max, "learning_rate": 0.1}
    teacher = original_process({**common, "kind": "teacher", "seed": 20,
                                "epochs": args.teacher_epochs}, out / "teacher")
    timings["teacher (original)"] = teacher["seconds"]
    ckpt = str(out / "teacher" / "checkpoint.tar")
    print(f"teacher {args.teacher}: {100 * teacher['best_test_accuracy']:.2f}% "
          f"({teacher['seconds']:.0f} s)", flush=True)
    runs, commands = [], {}
    for seed in range(1, args.seeds + 1):
        for method in methods:
            spec = {**common, "kind": method, "seed": seed, "teacher_checkpoint": ckpt,
                    "p1": args.p1, "p2": args.p2, "epochs": args.p1 + args.p2}
            r = original_process(spec, out / "original" / f"{method}-s{seed}")
            runs.append({"code": "original", "method": method, "seed": seed,
                         "test_accuracy": r["best_test_accuracy"],
                         "best_last_phase_test_accuracy": r["best_test_accuracy"],
                         "epochs": r["epochs"], "seconds": r["seconds"]})
            cli = ["--dataset", "cifar10", "--dataset-dir", str(out / "data"), "--method", method,
                   "--student", args.student, "--batch-size", "128", "--learning-rate", "0.1",
                   "--momentum", "0.9", "--weight-decay", "1e-4", "--val-size", "0",
                   "--seed", str(seed), "--device", "cpu", "--num-workers", "0"]
            if method == "annealing":
                cli += ["--teacher", args.teacher, "--teacher-checkpoint", ckpt,
                        "--student_epochs_p1", str(args.p1), "--student_epochs_p2", str(args.p2),
                        "--max_temperature", str(args.tau_max)]
            else:
                cli += ["--student-epochs", str(args.p1 + args.p2)]
            res, cmd, secs = ours_process(cli, out / "ours" / f"{method}-s{seed}")
            commands[method] = cmd
            runs.append(ours_record(res, method, seed, secs))
            for r in runs[-2:]:
                timings[f"{r['code']} {method} seed {seed}"] = r["seconds"]
                print(f"{r['code']:8} {method:9} seed {seed}: {100 * r['test_accuracy']:.2f}% "
                      f"({r['seconds']:.0f} s)", flush=True)
    ours_teacher = next((r["teacher_test_accuracy"] for r in runs
                         if r["code"] == "ours" and r.get("teacher_test_accuracy") is not None), None)
    report = {
        "command": shlex.join([Path(sys.executable).name, "reproduce/against_original.py",
                               *sys.argv[1:]]),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": time.perf_counter() - tic,
        "settings": {"train_images": args.train_images, "test_images": args.test_images,
                     "subset_seed": "0 (train) / 1 (test)", "teacher": args.teacher,
                     "student": args.student, "teacher_epochs": args.teacher_epochs,
                     "p1": args.p1, "p2": args.p2, "tau_max": args.tau_max,
                     "learning_rate": 0.1, "seeds": list(range(1, args.seeds + 1)),
                     "methods": methods},
        "teacher": {"original_test_accuracy": teacher["best_test_accuracy"],
                    "ours_test_accuracy": ours_teacher, "epochs": teacher["epochs"]},
        "our_cli_commands": commands,
        "summary": summarize(runs, methods),
        "differences": DIFFERENCES,
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "runs": runs,
    }
    md = Path(args.report)
    md.parent.mkdir(parents=True, exist_ok=True)
    md.with_suffix(".json").write_text(json.dumps(report, indent=1, default=float))
    write_report(md, report)
    for m in methods:
        if m in report["summary"]:
            print(report["summary"][m]["verdict"])
    print(f"report: {md} ({report['seconds']:.0f} s)")
    return 0


def rebuild_report(md: Path, notes: str | None) -> int:
    """The report again from the runs recorded in its .json (e.g. after adding notes)."""
    path = md.with_suffix(".json")
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path} ({type(exc).__name__}); run the comparison first "
                         "or pass --report of a finished one") from None
    report["summary"] = summarize(report["runs"], report["settings"]["methods"])
    if notes:
        report["notes"] = Path(notes).read_text().splitlines()
    path.write_text(json.dumps(report, indent=1, default=float))
    write_report(md, report)
    print(f"report: {md}")
    return 0


def rebuild_step_report(md: Path, notes: str | None) -> int:
    """``--steps --report-only``: the report again from the step results beside it, with the
    lines of ``notes`` (if given) as the step section's conclusion."""
    path = md.parent / STEPS_JSON
    try:
        steps = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path} ({type(exc).__name__}); run --steps first") from None
    if notes:
        steps["notes"] = Path(notes).read_text().splitlines()
    path.write_text(json.dumps(steps, indent=1, default=float))
    write_report(md, steps=steps)
    print(f"report: {md}")
    return 0


def step_compare(args) -> int:
    """``--steps``: every step-for-step comparison, one process each; the report's first section."""
    from reproduce import steps

    check_step_args(args)
    cv = original_cv_dir(args.original)
    if args.takd:
        missing = [f for f in ("train.py", "data_loader.py", "model_factory.py")
                   if not (Path(args.takd) / f).is_file()]
        if missing:
            raise UsageError(f"--takd {args.takd}: no {', '.join(missing)} there; pass the folder "
                             "of imirzadeh/Teacher-Assistant-Knowledge-Distillation")
        args.takd = str(Path(args.takd).resolve())
    args.original = str(cv.parent)
    if args.step_glue_train and not (cv.parent / "NLP_glue_tasks" / "annealing_kd_glue.py").is_file():
        raise UsageError(f"--original {args.original}: no NLP_glue_tasks/annealing_kd_glue.py there; "
                         "pass the Annealing_KD folder, or --step-glue-train 0 to skip GLUE")
    out = Path(args.out).resolve() / "steps"
    tic = time.perf_counter()
    prepare_data(args, out, args.step_batches * args.step_batch_size, args.step_test_images)
    results = steps.run_all(steps.specs(args, str(cv), str(out / "data"), out), args.step_resume)
    report = {"command": shlex.join([Path(sys.executable).name, "reproduce/against_original.py",
                                     *sys.argv[1:]]),
              "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "seconds": time.perf_counter() - tic, "results": results}
    md = Path(args.report)
    md.parent.mkdir(parents=True, exist_ok=True)
    (md.parent / STEPS_JSON).write_text(json.dumps(report, indent=1, default=float))
    write_report(md, steps=report)
    print(f"report: {md} ({report['seconds']:.0f} s)")
    return 0


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.step_worker:
        from reproduce.steps import worker

        return worker(args.step_worker)
    if args.run_original:
        run_original(json.loads(Path(args.run_original).read_text()))
        return 0
    if args.report_only:
        return (rebuild_step_report if args.steps else rebuild_report)(Path(args.report), args.notes)
    if args.steps:
        return step_compare(args)
    return compare(args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
