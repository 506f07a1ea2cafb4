"""Behaviour check: tiny fixed-seed runs of both CLIs, every method, and their per-epoch metrics
compared with a recorded reference (tests/behaviour_reference.json).

    python tests/behaviour_check.py --record   # on the reference commit: write the reference
    python tests/behaviour_check.py            # after a change: compare (exit 1 on a difference)

The reference says which commit wrote it. Runs use only flags that every version since the
reference has, so a refactor that changes no behaviour reproduces it; floats are compared to
1e-6 relative (a learning rate written as lr * 0.1 * 0.1 instead of lr * 0.01 is no change).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REFERENCE = HERE / "behaviour_reference.json"
METHODS = ("scratch", "kd", "takd", "annealing")
IMAGE = ["--dataset", "fake", "--train-subset", "64", "--val-size", "32", "--batch-size", "16",
         "--num-workers", "0", "--device", "cpu", "--teacher", "plane2", "--student", "resnet8",
         "--assistant", "plane4", "--teacher_epochs", "1", "--student_epochs_p1", "2",
         "--student_epochs_p2", "2", "--max_temperature", "2", "--student-epochs", "2",
         "--assistant-epochs", "1", "--learning-rate", "0.05", "--seed", "3"]
TEXT = ["--per_gpu_train_batch_size", "8", "--per_gpu_eval_batch_size", "16",
        "--learning_rate", "1e-3", "--no_cuda", "--num_train_epochs_phase_1", "2",
        "--num_train_epochs_phase_2", "1", "--max_temperature", "2", "--num_train_epochs", "2",
        "--seed", "5", "--do_train"]


def _text_fixtures(root: Path) -> dict[str, str]:
    sys.path.insert(0, str(HERE))
    from glue_fixtures import BAD, GOOD, OTHER, tiny_bert, write_glue

    write_glue(root / "glue", "RTE", 24, 12, 6)
    rng = random.Random(0)
    for split, n in (("train", 24), ("dev", 12)):
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for i in range(n):
                words = [rng.choice(OTHER[:-4]) for _ in range(rng.randint(3, 9))]
                words.insert(rng.randrange(len(words)), rng.choice(GOOD if i % 2 else BAD))
                w.writerow([" ".join(words), ["neg", "pos"][i % 2]])
    return {"teacher": tiny_bert(root / "teacher", num_labels=2, seed=2),
            "student": tiny_bert(root / "student", num_labels=None, seed=10),
            "assistant": tiny_bert(root / "assistant", num_labels=None, seed=11)}


def runs(root: Path) -> dict[str, list[str]]:
    """Every run of the check: name -> [CLI, *argv]."""
    m = _text_fixtures(root)
    glue = ["--task_name", "rte", "--data_dir", str(root / "glue" / "RTE")]
    own = ["--train_file", str(root / "train.csv"), "--validation_file", str(root / "dev.csv")]

    def text(name: str, method: str, *extra: str) -> list[str]:
        argv = ["text", *TEXT, "--method", method, "--student_model_name_or_path", m["student"],
                "--logits_cache_dir", str(root / "cache"), "--output_dir", str(root / name)]
        if method != "scratch":
            argv += ["--teacher_model_name_or_path", m["teacher"]]
        if method == "takd":
            argv += ["--assistant_model_name_or_path", m["assistant"]]
        return argv + list(extra)

    def image(name: str, method: str, *extra: str) -> list[str]:
        return ["image", *IMAGE, "--method", method, "--output-dir", str(root / name), *extra]

    out = {f"image-{method}": image(f"image-{method}", method) for method in METHODS}
    out |= {f"glue-{method}": text(f"glue-{method}", method, *glue) for method in METHODS}
    out["glue-annealing-max-steps"] = text("glue-annealing-max-steps", "annealing", *glue,
                                           "--max_steps", "4", "--warmup_steps", "1")
    out["own-text-annealing"] = text("own-text-annealing", "annealing", *own)
    out["image-annealing-per-step"] = image(
        "image-annealing-per-step", "annealing", "--student_epochs_p1", "1", "--max_temperature",
        "3", "--anneal-per-step", "--teacher-checkpoint",
        str(root / "image-kd" / "teacher" / "best.safetensors"))
    return out


def _run_one(cli: str, argv: list[str]) -> None:
    """One CLI run in a fresh process (one thread: float sums in a fixed order)."""
    module = ("annealing_kd.computer_vision_tasks.annealing_kd_train" if cli == "image"
              else "annealing_kd.NLP_glue_tasks.annealing_kd_glue")
    code = ("import sys, torch; torch.set_num_threads(1); "
            f"from {module} import main; sys.exit(main(sys.argv[1:]))")
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    import os

    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **env})
    if done.returncode != 0:
        raise SystemExit(f"{cli} run failed ({done.returncode}): {' '.join(argv)}\n"
                         f"{done.stderr[-3000:]}")


def collect(root: Path) -> dict[str, Any]:
    """Per-epoch records (without wall time) and final metrics of every run."""
    found: dict[str, Any] = {}
    for name, (cli, *argv) in runs(root).items():
        _run_one(cli, argv)
        res = json.loads((root / name / "results.json").read_text())
        found[name] = {"epochs": [{k: v for k, v in r.items() if k != "seconds"}
                                  for r in res["epochs"]],
                       "final": res["final"]["metrics"]}
    return found


def differences(ref: Any, now: Any, where: str = "") -> list[str]:
    """Where ``now`` differs from ``ref`` (floats to 1e-6 relative)."""
    if isinstance(ref, dict) and isinstance(now, dict):
        out = [f"{where}/{k}: missing" for k in ref if k not in now]
        out += [f"{where}/{k}: new" for k in now if k not in ref]
        for k in ref:
            if k in now:
                out += differences(ref[k], now[k], f"{where}/{k}")
        return out
    if isinstance(ref, list) and isinstance(now, list):
        if len(ref) != len(now):
            return [f"{where}: {len(ref)} entries, now {len(now)}"]
        return [d for i, (a, b) in enumerate(zip(ref, now)) for d in differences(a, b, f"{where}[{i}]")]
    if isinstance(ref, float) and isinstance(now, (int, float)):
        same = math.isclose(ref, now, rel_tol=1e-6, abs_tol=1e-9) or (math.isnan(ref) and math.isnan(now))
        return [] if same else [f"{where}: {ref!r}, now {now!r}"]
    return [] if ref == now else [f"{where}: {ref!r}, now {now!r}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--record", action="store_true", help="write the reference instead of comparing")
    p.add_argument("--reference", type=Path, default=REFERENCE)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        found = collect(Path(tmp))
    if args.record:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        args.reference.parent.mkdir(parents=True, exist_ok=True)
        args.reference.write_text(json.dumps({"commit": commit, "dirty": bool(dirty), "runs": found},
                                             indent=1) + "\n")
        print(f"recorded {len(found)} runs of commit {commit[:10]} in {args.reference}")
        return 0
    ref = json.loads(args.reference.read_text())
    diffs = differences(ref["runs"], found)
    for d in diffs[:40]:
        print(d)
    print(f"{len(found)} runs against the reference of commit {ref['commit'][:10]}: "
          + ("the same per-epoch metrics" if not diffs else f"{len(diffs)} differences"))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
