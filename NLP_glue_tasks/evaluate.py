"""Evaluation and prediction of the text CLI: dev metrics of a model (each epoch, and of a saved
student with ``--do_eval``) and GLUE leaderboard files (``--do_predict``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..common.errors import UsageError
from ..common.training.trainer import predict
from .data import (
    Collator,
    encode,
    ids_of,
    labels_of,
    make_loader,
    model_inputs,
)
from .metrics import compute_metrics
from .models import load_model, load_tokenizer
from .tasks import SUBMISSION, Task, split_suffix


def logits_of(model, batch):
    return model(**model_inputs(batch)).logits


def dev_metrics(acc, model, loaders: dict[str, Any], task: Task) -> dict[str, float]:
    """The task's metrics of ``model`` on each dev split (MNLI-mm: names ending in ``_mm``)."""
    out: dict[str, float] = {}
    for split, loader in loaders.items():
        logits, labels = predict(acc, model, loader, logits_of, lambda b: b["labels"])
        out.update(compute_metrics(task, logits.numpy(), labels.numpy(), split_suffix(task, split)))
    return out


def metrics_of_logits(task: Task, logits: dict[str, Any], dev: dict[str, Any]) -> dict[str, float]:
    """The task's metrics of precomputed dev logits (a frozen teacher's)."""
    out: dict[str, float] = {}
    for split, lg in logits.items():
        labels = labels_of(dev[split])
        out.update(compute_metrics(task, lg.numpy(), labels, split_suffix(task, split)))
    return out


def _student_loaders(args, task: Task, data, acc, splits) -> tuple[str, Any, dict[str, Any]]:
    """The saved student (<out>/student, else --student_model_name_or_path) and, per split, its
    dataset and loader."""
    own = Path(args.output_dir) / "student"
    path = str(own) if (own / "config.json").is_file() else args.student_model_name_or_path
    if not path:
        raise UsageError(f"no trained student in {own}; train one with --do_train, or pass "
                         "--student_model_name_or_path with --do_eval / --do_predict")
    tok = load_tokenizer(path, args, "student")
    model = acc.prepare(load_model(path, task, args, "student"))
    collator = Collator(tok, regression=task.is_regression)
    loaders = {}
    for split in splits:
        ds = data.split(split)
        feats = encode(tok, ds, args.max_seq_length)
        loaders[split] = ds, acc.prepare(make_loader(feats, args.per_gpu_eval_batch_size, collator))
    return path, model, loaders


def evaluate_saved(args, task: Task, data, acc, out) -> dict[str, Any]:
    """Dev metrics of the saved student; written to <out>/eval_results.json (``out``: the run's
    RunDir or an OutputFolder; None on other processes)."""
    if out is not None:
        out.check_free(out / "eval_results.json")  # never over a file we did not write
    path, model, loaders = _student_loaders(args, task, data, acc, task.dev)
    metrics = dev_metrics(acc, model, {s: loader for s, (_, loader) in loaders.items()}, task)
    result = {"task": task.name, "model": path, "split": list(task.dev), "metrics": metrics}
    if out is not None:
        out.write_json("eval_results.json", result)
    acc.print(f"{task.name} dev of {path}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return result


def predict_test(args, task: Task, data, acc, out) -> list[Path]:
    """GLUE leaderboard files: ``index<TAB>prediction`` per test split in <out>/predictions."""
    files = {s: Path("predictions") / f"{SUBMISSION.get(s, task.folder)}.tsv" for s in task.test}
    if out is not None:
        out.check_free(*(out / f for f in files.values()))  # never over a file we did not write
    _, model, loaders = _student_loaders(args, task, data, acc, task.test)
    written = []
    for split, (ds, loader) in loaders.items():
        logits, index = predict(acc, model, loader, logits_of, lambda b: b["index"])
        logits = logits[index.argsort()]
        if task.is_regression:
            scores = logits.view(-1) if task.name == "custom" else logits.view(-1).clamp(0.0, 5.0)
            preds = [f"{v:.3f}" for v in scores.tolist()]
        else:
            preds = [task.tsv_labels[i] for i in logits.argmax(-1).tolist()]
        rows = "".join(f"{i}\t{p}\n" for i, p in zip(ids_of(ds), preds, strict=True))
        text = "index\tprediction\n" + rows
        if out is not None:
            out.write(files[split], lambda tmp, text=text: Path(tmp).write_text(text))
        written.append(Path(args.output_dir) / files[split])
        acc.print(f"wrote {len(preds)} test predictions to {written[-1]}")
    return written
