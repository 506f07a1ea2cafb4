"""The model card of a saved student: a Hugging Face ``README.md`` (YAML metadata, then text:
method, teacher, data, selected epoch and metrics, command, versions), written by both CLIs from the
run's results through its manifest (``RunDir.write``) before ``results.json`` marks the run
complete: the image CLI's ``<out>/README.md``, the text CLI's ``<out>/student/README.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from annealing_kd.common.run_folder import file_sha256

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
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def describe(results: dict[str, Any], cli: str, teacher_path: str | None) -> dict[str, Any]:
    """What the card states, from the run's results (``cli``: image or text)."""
    cfg, final = results["config"], results["final"]
    last = [r for r in results["epochs"] if r["phase"] in ("phase1", "phase2", "student")][-1]
    teacher = results.get("teacher") or {}
    if cli == "image":
        read = (cfg.get("inputs") or {}).get("dataset_dir") or {}  # a folder the run read
        data = {"dataset": cfg["dataset"], "dataset_dir": read.get("path"),
                "sizes": {s: cfg.get(f"{s}_images") for s in ("train", "val", "test")},
                "classes": cfg.get("num_classes")}
        teacher_metrics = {k: v for k, v in teacher.items() if k.endswith("_accuracy")}
        models = {"student": cfg["student"], "teacher": teacher.get("model")}
    else:
        data = {"dataset": results.get("task"), "dataset_dir": cfg.get("data_dir"),
                "sizes": results.get("sizes", {}), "files": results.get("data")}
        teacher_metrics = {f"dev_{k}": v for k, v in (teacher.get("eval") or {}).items()}
        models = {"student": cfg.get("student_model_name_or_path"),
                  "teacher": teacher.get("path") or cfg.get("teacher_model_name_or_path")}
    by = final["selected_by"]
    return {"method": cfg.get("method"), "recipe": cfg.get("recipe"), "data": data, "models": models,
            "teacher": {"path": teacher_path, "sha256": weights_sha256(teacher_path),
                        "metrics": teacher_metrics,
                        "chance_check": teacher.get("chance_check")} if teacher else None,
            "selected": {"phase": final["selected_phase"], "epoch": final["selected_epoch"],
                         "by": by, "on": final["selected_on"], "metrics": final["metrics"]},
            "last_epoch": {"phase": last["phase"], "epoch": last["epoch"], by: last["eval"][by]},
            "command": cfg.get("command"), "versions": results.get("versions", {}),
            "config_file": (cfg.get("config_file") or {}).get("path")}


def chance_sentence(check: dict[str, Any] | None) -> str:
    """The teacher paragraph's account of the chance-teacher guard (empty when it did not run)."""
    if not check or check.get("metric") is None:
        return ""
    verdict = "no better than chance: the run warned" if check["warned"] else "above chance"
    return (f" Chance check on {check['split']}: {check['metric']} {_fmt(check['value'])} against "
            f"chance {_fmt(check['chance'])} + {_fmt(check['margin'])}, {verdict}.")


def _metric_type(key: str) -> str:
    """``val_accuracy`` and ``last_epoch_test_accuracy`` are of type ``accuracy``."""
    key_of_epoch = key.removeprefix("last_epoch_")
    return key_of_epoch.split("_", 1)[1] if key_of_epoch.startswith(("val_", "test_")) else key


def metadata(facts: dict[str, Any], cli: str) -> dict[str, Any]:
    """The card's YAML metadata (Hugging Face model-card fields, with a model-index)."""
    task = "image-classification" if cli == "image" else "text-classification"
    name = facts["data"]["dataset"] or "custom"
    glue = facts["data"].get("dataset_dir") is None and name != "custom"
    hub = HUB_DATASETS.get(name) if cli == "image" else ("nyu-mll/glue" if glue else None)
    metrics = [{"type": _metric_type(k), "name": f"{k} (selected epoch)", "value": v}
               for k, v in facts["selected"]["metrics"].items()]
    tags = ["knowledge-distillation", "annealing-kd", facts["method"] or "distillation", task]
    return {"library_name": "pytorch" if cli == "image" else "transformers",
            "pipeline_tag": task, "tags": tags, "datasets": [hub or name],
            "metrics": sorted({m["type"] for m in metrics}),
            "model-index": [{"name": Path(str(facts["models"]["student"])).name or "student",
                             "results": [{"task": {"type": task},
                                          "dataset": {"name": name, "type": hub or name},
                                          "metrics": metrics}]}]}


def render(results: dict[str, Any], cli: str, teacher_path: str | None = None) -> str:
    """The card's text: YAML front matter, then the description, paragraph by paragraph."""
    import yaml

    from annealing_kd.common.run_folder import jsonable

    results = json.loads(json.dumps(results, default=jsonable))  # as results.json holds them
    facts = describe(results, cli, teacher_path)
    sel, data, t, last = facts["selected"], facts["data"], facts["teacher"], facts["last_epoch"]
    method, recipe = facts["method"], facts["recipe"]
    note = "" if recipe in (None, "paper") else f"; recipe `{recipe}` (not the paper's schedule)"
    sizes = ", ".join(f"{k} {v}" for k, v in (data["sizes"] or {}).items() if v)
    where = f" from `{data['dataset_dir']}`" if data.get("dataset_dir") else ""
    teacher_metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in t["metrics"].items()) if t else ""
    rows = [f"| {k} | {_fmt(v)} |" for k, v in sel["metrics"].items()]
    paragraphs = [
        f"---\n{yaml.safe_dump(metadata(facts, cli), sort_keys=False).rstrip()}\n---",
        f"# {facts['models']['student']} distilled with {method}",
        f"**Method.** {METHODS.get(method, method)}{note}.",
        t and (f"**Teacher.** `{facts['models']['teacher']}`, weights `{t['path']}`"
               + (f" (sha256 `{t['sha256']}`)" if t["sha256"] else "")
               + f"; {teacher_metrics or 'metric unknown'}." + chance_sentence(t["chance_check"])),
        f"**Data.** {data['dataset']}{where}" + (f"; examples: {sizes}" if sizes else "")
        + (f"; {data['classes']} classes" if data.get("classes") else "") + ".",
        data.get("files") and f"Files: `{json.dumps(data['files'])}`",
        "## Results",
        f"Selected: {sel['phase']} epoch {sel['epoch']}, by {sel['by']} on {sel['on']}.",
        "\n".join(["| metric | value |", "|---|---|", *rows]),
        f"Last epoch ({last['phase']} epoch {last['epoch']}): {sel['by']} "
        f"{_fmt(last[sel['by']])}.",
        "## How it was made",
        f"```bash\n{facts['command'] or '(command not recorded)'}\n```",
        facts["config_file"] and (f"Flags also from the config file `{facts['config_file']}` (its "
                                  "contents are in `results.json`, `config.config_file`)."),
        "Library versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()) + ".",
        "## Citation",
        f"```bibtex\n{CITATION}\n```",
    ]
    return "\n\n".join(p for p in paragraphs if p) + "\n"


def write(run, name: str, results: dict[str, Any], cli: str, teacher_path: str | None) -> None:
    """Write the card to ``run / name`` through the run's manifest (main process only)."""
    text = render(results, cli, teacher_path)
    run.write(name, lambda tmp: Path(tmp).write_text(text))
