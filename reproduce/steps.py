"""``against_original.py --steps``: the step-for-step comparisons, each in its own process
(CPU, fp32, one torch thread), and their section of the report.

A comparison is a spec (JSON) run by a worker process (``--step-worker spec.json``), which writes
``result.json`` beside it: rows of per-phase differences (see ``steps_common``). Two kinds of
row: ``as shipped`` (each code as it is) and, where those are not bit-identical, ``original
arithmetic`` (a diagnostic: our objective computed with the original's float32 expression, set
from the harness), which shows that what remains is that expression's rounding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from annealing_kd.common.errors import UsageError
from reproduce.steps_common import TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "reproduce" / "against_original.py"


# ---- the comparisons to run -------------------------------------------------------------------
def specs(args, cv_dir: str, data_dir: str, out: Path) -> list[dict[str, Any]]:
    """The comparisons asked for by ``args``, in the order of the report."""
    base = {"data_dir": data_dir, "teacher": args.teacher, "student": args.student,
            "batch_size": args.step_batch_size, "seed": 1, "init_seed": 0}
    ann = {**base, "kind": "annealing", "original": cv_dir, "p1": args.step_p1,
           "p2": args.step_p2, "tau_max": args.step_tau}
    todo = [{**ann, "name": f"annealing tau_max {args.step_tau}", "arithmetic": "ours"}]
    if args.step_phi_tau:
        tau = args.step_phi_tau
        p1 = 4 * tau  # a multiple of 4 (the step decay) and of tau_max (equal stages)
        for arith, label in (("ours", ""), ("original", " (Phi as the original computes it)"),
                             ("control", ": control, the original against itself 1 ulp apart")):
            todo.append({**ann, "tau_max": tau, "p1": p1, "arithmetic": arith,
                         "name": f"annealing tau_max {tau}{label}"})
    if args.takd:
        for arith in ("ours", "original"):
            todo.append({**base, "kind": "kd", "takd": args.takd, "epochs": args.step_kd_epochs,
                         "kd_temperature": 5.0, "kd_alpha": 0.5, "arithmetic": arith,
                         "name": "kd elementwise-mean" + (" (KL as the TAKD code computes it)"
                                                          if arith == "original" else "")})
    if args.step_glue_train:
        glue_file = Path(args.original) / "NLP_glue_tasks" / "annealing_kd_glue.py"
        glue = {"kind": "glue", "original_glue": str(glue_file), "seed": 42,
                "train_size": args.step_glue_train, "dev_size": 64}
        for opt, logits, label in (
                ("torch-fused", "online", "its AdamW = torch's fused one (ours)"),
                ("transformers3", "online", "its AdamW = transformers 3.x's (what it ran)"),
                ("torch", "online", "its AdamW = torch's for-loop one"),
                ("torch-fused", "cached", "ours with cached teacher logits (our default)"))[
                    :1 if args.step_quick else None]:
            todo.append({**glue, "optimizer": opt, "teacher_logits": logits,
                         "arithmetic": f"{opt}-{logits}", "name": f"glue sst-2 tiny BERT, {label}"})
    for i, s in enumerate(todo):
        s["out"] = str(out / f"{i + 1:02d}-{s['kind']}-{s.get('arithmetic', s.get('optimizer'))}")
    return todo


def run_worker(spec: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """One comparison in its own process; its result with the process's wall time. With
    ``resume``, a comparison already finished in its folder with the same spec is read back."""
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    path, done = out / "spec.json", out / "done.json"
    if resume and done.is_file() and path.is_file() and json.loads(path.read_text()) == spec:
        return json.loads(done.read_text())
    done.unlink(missing_ok=True)
    path.write_text(json.dumps(spec, indent=1))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    tic = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--original", spec.get("original", "-"),
                           "--step-worker", str(path)], env=env, capture_output=True, text=True)
    secs = time.perf_counter() - tic
    (out / "log.txt").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        raise UsageError(f"the step comparison {spec['name']!r} failed (exit {proc.returncode}): "
                         f"{last}; see {out / 'log.txt'}")
    result = {**json.loads((out / "result.json").read_text()), "name": spec["name"],
              "spec": spec, "process_seconds": round(secs, 1)}
    done.write_text(json.dumps(result, default=float))
    return result


def worker(spec_path: str) -> int:
    """The worker's side: one comparison, its result written to ``result.json``."""
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="reduction: 'mean' divides")  # nn.KLDivLoss()
    spec = json.loads(Path(spec_path).read_text())
    if spec["kind"] == "glue":
        from reproduce import steps_glue

        result = steps_glue.glue(spec)
    else:
        from reproduce import steps_cv

        if spec["arithmetic"] == "original":
            steps_cv.use_original_arithmetic(spec)
        result = getattr(steps_cv, spec["kind"])(spec)
    (Path(spec["out"]) / "result.json").write_text(json.dumps(result, indent=1, default=float))
    return 0


def run_all(todo: list[dict[str, Any]], resume: bool = False) -> list[dict[str, Any]]:
    results = []
    for spec in todo:
        r = run_worker(spec, resume)
        results.append(r)
        for row in r["rows"]:
            print(f"{r['name']:55} {row['phase']:8} steps {row['loss']['steps']} max|dloss| "
                  f"{row['loss']['max_abs']:.2e} max|dw| {row['weights']['max_abs']:.2e} "
                  f"{'bit-identical' if row['bit_identical'] else 'pass' if row['pass'] else 'FAIL'}",
                  flush=True)
        print(f"  ({r['process_seconds']:.0f} s)", flush=True)
    return results


# ---- the report's section ---------------------------------------------------------------------
def _e(x: float) -> str:
    return "0" if x == 0 else f"{x:.1e}"


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| comparison | phase | steps (ours / original) | max abs loss diff | "
             "bit-identical steps | first differing step | final weights max abs diff | "
             f"bit-identical | within {TOLERANCE:g} | seconds |",
             "|---|---|---:|---:|---:|---:|---:|:---:|:---:|---:|"]
    for r in results:
        for i, row in enumerate(r["rows"]):
            loss, w, first = row["loss"], row["weights"], row["loss"]["first_different_step"]
            cells = [r["name"] if i == 0 else "", row["phase"],
                     f"{loss['steps'][0]} / {loss['steps'][1]}", _e(loss["max_abs"]),
                     str(loss["identical_steps"]), "-" if first is None else str(first),
                     _e(w["max_abs"]), "yes" if row["bit_identical"] else "no",
                     "yes" if row["pass"] else "NO",
                     f"{r['process_seconds']:.0f}" if i == 0 else ""]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def section(steps: dict[str, Any]) -> list[str]:
    """The step-for-step section of against-original.md (leads the report)."""
    results = steps["results"]
    lines = ["## Step for step (CPU, fp32, one torch thread)", "",
             f"Written by `reproduce/against_original.py --steps` on {steps['finished']} "
             f"({sum(r['process_seconds'] for r in results):.0f} s in all, comparisons one after "
             "another on a shared 2-core CPU; seconds below: the comparison's whole process, both "
             "codes, start-up included).", "",
             "```", steps["command"], "```", "",
             "Each comparison gives both codes the same initial weights (teacher and student drawn "
             "once, the same state dict loaded into both), the same batches (augmented once by our "
             "data path and handed to both as one fixed iterable, epoch after epoch), the same "
             "evaluation batches, and records the loss of every optimizer step and the learning "
             "rate it used on both sides from outside their files (`Tensor.backward` and torch's "
             "global optimizer-step hook). Ours runs its real command-line path "
             "(`cli.parse_args` + `ImagePipeline` / `TextPipeline`) with only its data loaders "
             "replaced; the originals are imported from the folders given.", "",
             *table(results), ""]
    if steps.get("notes"):
        lines += ["### What this says", "", *steps["notes"], ""]
    for r in results:
        lines += [f"### {r['name']}", "", *[f"- {n}" for n in r.get("notes", [])]]
        for row in r["rows"]:
            extra = ""
            if "best_start" in row:
                b = row["best_start"]
                extra = (f"; the best phase-1 checkpoint that starts phase 2: max abs diff "
                         f"{_e(b['max_abs'])}{' (bit-identical)' if b['bit_identical'] else ''}")
            lr = "the same learning rate at every step" if row["loss"]["same_lr"] else \
                "learning rates DIFFER"
            acc = row.get("accuracy", {})
            w = row["weights"]
            where = "" if w["bit_identical"] else f"; final weights: largest difference in `{w['tensor']}`"
            lines.append(f"- {row['phase']}: {lr}; per-epoch accuracy ours {acc.get('ours')}, "
                         f"original {acc.get('original')}{extra}{where}.")
        lines.append("")
    return lines
