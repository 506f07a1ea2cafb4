"""End-to-end wall time of a short Annealing-KD run of each CLI (a fresh process each, so
imports, data preparation, the teacher pass, evaluation and checkpointing all count).

- CIFAR: ``fake`` data, resnet20 teacher trained for 1 epoch, resnet8 student, phase 1 and 2.
- GLUE:  SST-2-format TSVs written from the movie-review sentences, the MiniLM-L6 teacher and a
         2-layer student saved from it (tiny random BERTs and synthetic sentences with ``--tiny``
         or without the packages); ours, and the CLI's comparison mode ``--online_teacher
         --pad_to_max_length`` (teacher on every step, padding to 128, still without autograd).

    python benchmarks/bench_e2e.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="smallest sizes and models (smoke test)")
    p.add_argument("--images", type=int, default=1024, help="CIFAR training images")
    p.add_argument("--sentences", type=int, default=512, help="GLUE training sentences")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--only", choices=["cifar", "glue"], help="run one CLI only")
    p.add_argument("--keep", type=Path, help="keep the run directories here")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return p.parse_args(argv)


def glue_inputs(args, work: Path) -> tuple[Path, Path, Path, str]:
    """SST-2 TSVs, a teacher folder and a student folder; returns them and a description."""
    from benchmarks.bench_glue import assets

    n_dev = max(32, args.sentences // 2)
    ns = argparse.Namespace(tiny=args.tiny, examples=args.sentences + n_dev, seed=0,
                            student_layers=2)
    teacher, student, tok, texts, labels, what = assets(ns, work)
    data = work / "SST-2"
    data.mkdir()
    rows = [f"{' '.join(t.split())}\t{y}\n" for t, y in zip(texts, labels, strict=True)]
    (data / "train.tsv").write_text("sentence\tlabel\n" + "".join(rows[:args.sentences]))
    (data / "dev.tsv").write_text("sentence\tlabel\n" + "".join(rows[args.sentences:]))
    dirs = []
    for name, model in (("teacher", teacher), ("student", student)):
        model.config.id2label, model.config.label2id = {0: "LABEL_0", 1: "LABEL_1"}, None
        model.config.label2id = {"LABEL_0": 0, "LABEL_1": 1}
        model.save_pretrained(work / name)
        tok.save_pretrained(work / name)
        dirs.append(work / name)
    return data, dirs[0], dirs[1], what


def timed(cmd: list[str]) -> tuple[float, int, str]:
    tic = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    out = (proc.stderr.strip().splitlines() or [""])[-1] if proc.returncode else ""
    return time.perf_counter() - tic, proc.returncode, out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import transformers

    from benchmarks._util import machine, table

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if args.tiny:
        args.images, args.sentences = min(args.images, 128), min(args.sentences, 64)
    tmp = tempfile.TemporaryDirectory()
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    rows, runs = [], []
    if args.only in (None, "cifar"):
        cmd = [py, "computer_vision_tasks/annealing_kd_train.py", "--dataset", "fake",
               "--teacher", "resnet20", "--student", "resnet8", "--teacher_epochs", "1",
               "--student_epochs_p1", "2", "--student_epochs_p2", "1", "--max_temperature", "2",
               "--train-subset", str(args.images), "--val-size", str(max(32, args.images // 8)),
               "--batch-size", "64", "--num-workers", "0", "--device", args.device,
               "--output-dir", str(work / "cifar"), "--overwrite-output-dir"]
        runs.append(("CIFAR annealing (teacher 1 + p1 2 + p2 1 epochs)",
                     f"fake, {args.images} images, resnet20 -> resnet8", cmd))
    if args.only in (None, "glue"):
        data, teacher, student, what = glue_inputs(args, work)
        base = [py, "NLP_glue_tasks/annealing_kd_glue.py", "--task_name", "sst-2",
                "--data_dir", str(data), "--teacher_model_name_or_path", str(teacher),
                "--student_model_name_or_path", str(student), "--do_train", "--do_eval",
                "--num_train_epochs_phase_1", "2", "--num_train_epochs_phase_2", "1",
                "--max_temperature", "2", "--per_gpu_train_batch_size", "32",
                "--per_gpu_eval_batch_size", "64", "--learning_rate", "5e-5",
                "--overwrite_output_dir", "--overwrite_cache"]
        if args.device == "cpu":
            base.append("--no_cuda")
        for label, extra in (("ours", []),
                             ("online teacher + pad 128", ["--online_teacher",
                                                           "--pad_to_max_length"])):
            name = "glue-" + ("ours" if not extra else "online")
            cmd = base + ["--output_dir", str(work / name),
                          "--logits_cache_dir", str(work / f"{name}-cache"), *extra]
            runs.append((f"GLUE annealing, {label} (p1 2 + p2 1 epochs)",
                         f"SST-2 format, {args.sentences} sentences, {what}", cmd))
    for title, setup, cmd in runs:
        print(f"running: {title}", flush=True)
        seconds, rc, err = timed(cmd)
        rows.append([title, setup, seconds, "ok" if rc == 0 else f"exit {rc}: {err[:80]}"])
    print(f"\nend-to-end wall time ({machine()}, device {args.device})")
    print(table(["run", "setup", "wall s", "result"], rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "device": args.device, "runs": [
            dict(zip(("run", "setup", "wall_seconds", "result"), r, strict=True)) for r in rows]},
            indent=1))
    tmp.cleanup()
    return 0 if all(r[-1] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
