"""The model card of a saved student: a Hugging Face ``README.md`` beside its weights (YAML
metadata built with ``huggingface_hub``'s card classes, then text: method, teacher, data, selected
epoch and metrics, hyper-parameters, command, versions), written by both CLIs from the run's
results through its manifest (``RunDir.write``) before ``results.json`` marks the run complete, in
``<out>/student/README.md``. Numbers are rounded to 4 decimals (``results.json`` has them exact);
no absolute path: one inside the run folder is relative to it, one outside is a placeholder."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

from ..run_folder import file_sha256

CITATION = """@inproceedings{jafari-etal-2021-annealing,
  title     = {Annealing Knowledge Distillation},
  author    = {Jafari, Aref and Rezagholizadeh, Mehdi and Sharma, Pranav and Ghodsi, Ali},
  booktitle = {Proceedings of the 16th Conference of the European Chapter of the Association
               for Computational Linguistics (EACL)},
  year      = {2021},
  pages     = {2493--2504},
  note      = {arXiv:2104.07163}
}"""
METHODS = {"annealing": "Annealing-KD (Jafari et al., EACL 2021): phase 1 regresses the teacher's "
                        "annealed logits, MSE(z_s, Phi(T) z_t) with T stepping down from tau_max "
                        "to 1; phase 2 fine-tunes the best phase-1 student on the hard labels",
           "kd": "Hinton knowledge distillation from the teacher",
           "takd": "TAKD: knowledge distillation through a teacher assistant",
           "scratch": "the student trained on the hard labels alone (no teacher)",
           "finetune": "the student fine-tuned on the hard labels alone (no teacher)"}
# a name of our image datasets -> its Hugging Face dataset id (for the card's metadata)
HUB_DATASETS = {"cifar10": "uoft-cs/cifar10", "cifar100": "uoft-cs/cifar100",
                "mnist": "ylecun/mnist", "fashion-mnist": "zalando-datasets/fashion_mnist"}
LICENSE = "apache-2.0"  # this project's (pyproject.toml)
NOT_SETTINGS = ("command", "config_file", "inputs")  # the config's keys that are no setting
DIGITS = 4


def weights_sha256(path: str | None) -> str | None:
    """sha256 of a weights file, or of a model folder's weights file; None for a hub id."""
    if not path:
        return None
    p = Path(path)
    if p.is_dir():
        found = [p / n for n in ("model.safetensors", "pytorch_model.bin") if (p / n).is_file()]
        p = found[0] if found else p
    return file_sha256(p) if p.is_file() else None


def _fmt(value: Any) -> str:
    return f"{value:.{DIGITS}f}" if isinstance(value, float) else str(value)


def portable(value: Any, run: Path, key: str = "") -> Any:
    """``value`` (JSON) without absolute paths: the run folder is ``<output_dir>``, a path in it
    relative to it, one outside it ``<key>`` (``<file name>`` without a key); a command's too."""
    if isinstance(value, dict):
        return {k: portable(v, run, k) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, run, key) for v in value]
    if not isinstance(value, str):
        return value
    if key == "command":
        return _portable_command(value, run)
    if not os.path.isabs(value):
        return value
    p = Path(value).resolve()
    if p == run:
        return "<output_dir>"
    if p.is_relative_to(run):
        return p.relative_to(run).as_posix()
    return f"<{key}>" if key not in ("", "path") else f"<{p.name}>"


def _portable_command(command: str, run: Path) -> str:
    """The command with its paths made :func:`portable` (placeholders named after their flag)."""
    tokens = shlex.split(command)
    out = [shlex.quote(Path(tokens[0]).name)] if tokens else []
    for prev, tok in zip(tokens, tokens[1:]):
        flag, eq, val = tok.partition("=") if tok.startswith("-") else ("", "", tok)
        if not eq:
            flag, val = (prev if prev.startswith("-") else ""), tok
        new = portable(val, run, flag.lstrip("-"))
        new = new if new.startswith("<") else shlex.quote(new)
        out.append(f"{flag}={new}" if eq else new)
    return " ".join(out)


def base_model(name: str | None) -> str | None:
    """A pretrained start that is a Hub id (not a local folder), for ``base_model``."""
    local = not name or name.startswith(("/", ".", "~")) or Path(name).exists()
    return None if local else name


def describe(results: dict[str, Any], cli: str, teacher_path: str | None) -> dict[str, Any]:
    """What the card states, from the run's results (``cli``: image or text), paths as given."""
    cfg, final = results["config"], results["final"]
    last = [r for r in results["epochs"] if r["phase"] in ("phase1", "phase2", "student")][-1]
    teacher = results.get("teacher") or {}
    if cli == "image":
        read = (cfg.get("inputs") or {}).get("dataset_dir") or {}  # a folder the run read
        data = {"dataset": cfg["dataset"], "dataset_dir": read.get("path"),
                "sizes": {s: cfg.get(f"{s}_images") for s in ("train", "val", "test")},
                "classes": cfg.get("num_classes")}
        teacher_metrics = {k: v for k, v in teacher.items() if k.endswith("_accuracy")}
        models = {"student": cfg["student"], "teacher": teacher.get("model"), "base": None}
    else:
        data = {"dataset": results.get("task"), "dataset_dir": cfg.get("data_dir"),
                "sizes": results.get("sizes", {}), "files": results.get("data")}
        teacher_metrics = {f"dev_{k}": v for k, v in (teacher.get("eval") or {}).items()}
        student = cfg.get("student_model_name_or_path")
        models = {"student": student, "base": base_model(student),
                  "teacher": teacher.get("path") or cfg.get("teacher_model_name_or_path")}
    models["name"] = Path(str(models["student"])).name or "student"
    by = final["selected_by"]
    return {"method": cfg.get("method"), "recipe": cfg.get("recipe"), "data": data, "models": models,
            "teacher": {"teacher_weights": teacher_path, "sha256": weights_sha256(teacher_path),
                        "metrics": teacher_metrics,
                        "chance_check": teacher.get("chance_check")} if teacher else None,
            "selected": {"phase": final["selected_phase"], "epoch": final["selected_epoch"],
                         "by": by, "on": final["selected_on"], "metrics": final["metrics"]},
            "last_epoch": {"phase": last["phase"], "epoch": last["epoch"], by: last["eval"][by]},
            "command": cfg.get("command"), "versions": results.get("versions", {}),
            "config_file": Path((cfg.get("config_file") or {}).get("path") or "").name,
            "settings": {k: v for k, v in cfg.items() if k not in NOT_SETTINGS}}


def metric_of(key: str, selected_on: str) -> tuple[str, str, str]:
    """A metric's (split, type, epoch): ``last_epoch_test_accuracy`` -> test, accuracy, last."""
    epoch = "last" if key.startswith("last_epoch_") else "selected"
    key = key.removeprefix("last_epoch_")
    split, _, kind = key.partition("_")
    return (split, kind, epoch) if split in ("val", "test", "dev") and kind else (
        selected_on, key, epoch)


def chance_sentence(check: dict[str, Any] | None) -> str:
    """The teacher paragraph's account of the chance-teacher guard (empty when it did not run)."""
    if not check or check.get("metric") is None:
        return ""
    verdict = "no better than chance: the run warned" if check["warned"] else "above chance"
    return (f" Chance check on {check['split']}: {check['metric']} {_fmt(check['value'])} against "
            f"chance {_fmt(check['chance'])} + {_fmt(check['margin'])}, {verdict}.")


def metadata(facts: dict[str, Any], cli: str):
    """The card's metadata: a ``huggingface_hub.ModelCardData`` with a model-index."""
    from huggingface_hub import EvalResult, ModelCardData

    task = "image-classification" if cli == "image" else "text-classification"
    name = facts["data"]["dataset"] or "custom"
    glue = cli == "text" and facts["data"].get("dataset_dir") is None and name != "custom"
    hub = HUB_DATASETS.get(name) if cli == "image" else ("nyu-mll/glue" if glue else None)
    sel = facts["selected"]
    results = []
    for key, value in sel["metrics"].items():
        split, kind, epoch = metric_of(key, sel["on"])
        results.append(EvalResult(
            task_type=task, dataset_type=hub or name, dataset_name=name,
            dataset_config=name if glue else None, dataset_split={"dev": "validation"}.get(split, split),
            metric_type=kind, metric_value=round(value, DIGITS) if isinstance(value, float) else value,
            metric_name=f"{split} {kind} ({epoch} epoch)"))
    tags = ["knowledge-distillation", "annealing-kd", facts["method"] or "distillation", task]
    return ModelCardData(library_name="pytorch" if cli == "image" else "transformers",
                         license=LICENSE, base_model=facts["models"]["base"], pipeline_tag=task,
                         tags=tags, datasets=[hub or name],
                         metrics=sorted({r.metric_type for r in results}),
                         model_name=facts["models"]["name"], eval_results=results)


def settings_table(settings: dict[str, Any]) -> str:
    """The run's effective settings, one row each (lists and dicts as JSON)."""
    rows = [f"| `{k}` | `{v if isinstance(v, str) else json.dumps(v)}` |" for k, v in settings.items()]
    return "\n".join(["| setting | value |", "|---|---|", *rows])


def sections(facts: dict[str, Any], cli: str) -> list[str | None]:
    """The card's text, section by section (None: a section the run has not)."""
    sel, data, t, last = facts["selected"], facts["data"], facts["teacher"], facts["last_epoch"]
    method, recipe = facts["method"], facts["recipe"]
    note = "" if recipe in (None, "paper") else f"; recipe `{recipe}` (not the paper's schedule)"
    sizes = ", ".join(f"{k} {v}" for k, v in (data["sizes"] or {}).items() if v)
    where = f" from `{data['dataset_dir']}`" if data.get("dataset_dir") else ""
    teacher_metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in t["metrics"].items()) if t else ""
    rows = [f"| {k} | {split} | {epoch} | {_fmt(v)} |" for k, v in sel["metrics"].items()
            for split, _, epoch in [metric_of(k, sel["on"])]]
    return [
        f"# {facts['models']['name']} distilled with {method}",
        f"**Method.** {METHODS.get(method, method)}{note}.",
        t and (f"**Teacher.** `{facts['models']['teacher']}`, weights `{t['teacher_weights']}`"
               + (f" (sha256 `{t['sha256']}`)" if t["sha256"] else "")
               + f"; {teacher_metrics or 'metric unknown'}." + chance_sentence(t["chance_check"])),
        f"**Data.** {data['dataset']}{where}" + (f"; examples: {sizes}" if sizes else "")
        + (f"; {data['classes']} classes" if data.get("classes") else "") + ".",
        data.get("files") and f"Files: `{json.dumps(data['files'])}`",
        cli == "image" and LOAD_IMAGE,
        "## Results",
        f"Selected: {sel['phase']} epoch {sel['epoch']}, by {sel['by']} on {sel['on']}.",
        "\n".join(["| metric | split | epoch | value |", "|---|---|---|---|", *rows]),
        f"Last epoch ({last['phase']} epoch {last['epoch']}): {sel['by']} "
        f"{_fmt(last[sel['by']])}.",
        "## Hyper-parameters",
        "The run's effective settings (defaults, config file and flags; paths in the run folder "
        "relative to it, others as `<placeholder>`):",
        settings_table(facts["settings"]),
        "## How it was made",
        f"```bash\n{facts['command'] or '(command not recorded)'}\n```",
        facts["config_file"] and (f"Flags also from the config file `{facts['config_file']}` (its "
                                  "contents are in `results.json`, `config.config_file`)."),
        "Library versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()) + ".",
        "## Citation",
        f"```bibtex\n{CITATION}\n```",
    ]


LOAD_IMAGE = """**Use.** `config.json` and `best.safetensors` in this folder rebuild the student
without the training CLI (inputs normalized with the config's `mean` / `std`):

```python
from annealing_kd.computer_vision_tasks.model_zoo import from_pretrained

model = from_pretrained("path/to/student")  # eval mode
```"""


def render(results: dict[str, Any], cli: str, teacher_path: str | None = None) -> str:
    """The card's text: YAML front matter, then the description, section by section."""
    from huggingface_hub import ModelCard

    from ..run_folder import jsonable

    results = json.loads(json.dumps(results, default=jsonable))  # as results.json holds them
    run = Path(results["config"].get("output_dir") or ".").resolve()
    facts = portable(describe(results, cli, teacher_path), run)
    text = "\n\n".join(p for p in sections(facts, cli) if p)
    return str(ModelCard(f"---\n{metadata(facts, cli).to_yaml()}\n---\n\n{text}\n"))


def write(run, name: str, results: dict[str, Any], cli: str, teacher_path: str | None) -> None:
    """Write the card to ``run / name`` through the run's manifest (main process only)."""
    text = render(results, cli, teacher_path)
    run.write(name, lambda tmp: Path(tmp).write_text(text))
