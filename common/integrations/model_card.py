"""The model card of a saved student: a Hugging Face ``README.md`` (YAML metadata, then text)
saying what the model is: method, teacher, data, selected epoch and metrics, command, versions.

Both CLIs write it from the run's results (the dict that becomes ``results.json``), through the
run's manifest (:meth:`annealing_kd.common.run_folder.run_dir.RunDir.write`), before ``results.json`` marks the run
complete: the image CLI to ``<out>/README.md``, the text CLI to ``<out>/student/README.md``.
"""

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


def _jsonable(results: dict[str, Any]) -> dict[str, Any]:
    """The results as results.json holds them (paths and tensors as JSON values)."""
    from annealing_kd.common.run_folder import jsonable as convert

    return json.loads(json.dumps(results, default=convert))


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def describe(results: dict[str, Any], cli: str, teacher_path: str | None) -> dict[str, Any]:
    """What the card states, from the run's results (``cli``: image or text)."""
    cfg, final = results["config"], results["final"]
    student_phases = {"phase1", "phase2", "student"}
    last = [r for r in results["epochs"] if r["phase"] in student_phases][-1]
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
    return {"method": cfg.get("method"), "recipe": cfg.get("recipe"), "data": data, "models": models,
            "teacher": {"path": teacher_path, "sha256": weights_sha256(teacher_path),
                        "metrics": teacher_metrics} if results.get("teacher") else None,
            "selected": {"phase": final["selected_phase"], "epoch": final["selected_epoch"],
                         "by": final["selected_by"], "on": final["selected_on"],
                         "metrics": final["metrics"]},
            "last_epoch": {"phase": last["phase"], "epoch": last["epoch"],
                           final["selected_by"]: last["eval"][final["selected_by"]]},
            "command": cfg.get("command"), "versions": results.get("versions", {}),
            "config_file": (cfg.get("config_file") or {}).get("path")}


def metadata(facts: dict[str, Any], cli: str) -> dict[str, Any]:
    """The card's YAML metadata (Hugging Face model-card fields, with a model-index)."""
    task = "image-classification" if cli == "image" else "text-classification"
    name = facts["data"]["dataset"] or "custom"
    hub = HUB_DATASETS.get(name) if cli == "image" else ("nyu-mll/glue" if facts["data"].get(
        "dataset_dir") is None and name != "custom" else None)
    sel = facts["selected"]
    metrics = [{"type": k.removeprefix("last_epoch_").split("_", 1)[-1]
                if k.removeprefix("last_epoch_").startswith(("val_", "test_")) else k,
                "name": f"{k} (selected epoch)", "value": v}
               for k, v in sel["metrics"].items()]
    meta: dict[str, Any] = {
        "library_name": "pytorch" if cli == "image" else "transformers",
        "pipeline_tag": task,
        "tags": ["knowledge-distillation", "annealing-kd", facts["method"] or "distillation", task],
        "datasets": [hub or name],
        "metrics": sorted({m["type"] for m in metrics}),
        "model-index": [{"name": Path(str(facts["models"]["student"])).name or "student",
                         "results": [{"task": {"type": task},
                                      "dataset": {"name": name, "type": hub or name},
                                      "metrics": metrics}]}],
    }
    return meta


def render(results: dict[str, Any], cli: str, teacher_path: str | None = None) -> str:
    """The card's text: YAML front matter, then the description."""
    import yaml

    results = _jsonable(results)
    facts = describe(results, cli, teacher_path)
    sel, data, t = facts["selected"], facts["data"], facts["teacher"]
    lines = ["---", yaml.safe_dump(metadata(facts, cli), sort_keys=False).rstrip(), "---", "",
             f"# {facts['models']['student']} distilled with {facts['method']}", "",
             f"**Method.** {METHODS.get(facts['method'], facts['method'])}"
             + (f"; recipe `{facts['recipe']}` (not the paper's schedule)"
                if facts["recipe"] not in (None, "paper") else "") + ".", ""]
    if t:
        lines += ["**Teacher.** " + f"`{facts['models']['teacher']}`, weights `{t['path']}`"
                  + (f" (sha256 `{t['sha256']}`)" if t["sha256"] else "") + "; "
                  + (", ".join(f"{k} {_fmt(v)}" for k, v in t["metrics"].items())
                     or "metric unknown") + ".", ""]
    sizes = ", ".join(f"{k} {v}" for k, v in (data["sizes"] or {}).items() if v)
    where = f" from `{data['dataset_dir']}`" if data.get("dataset_dir") else ""
    lines += [f"**Data.** {data['dataset']}{where}" + (f"; examples: {sizes}" if sizes else "")
              + (f"; {data['classes']} classes" if data.get("classes") else "") + ".", ""]
    if data.get("files"):
        lines += [f"Files: `{json.dumps(data['files'])}`", ""]
    lines += ["## Results", "",
              f"Selected: {sel['phase']} epoch {sel['epoch']}, by {sel['by']} on {sel['on']}.", "",
              "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in sel["metrics"].items()]
    last = facts["last_epoch"]
    lines += ["", f"Last epoch ({last['phase']} epoch {last['epoch']}): {sel['by']} "
              f"{_fmt(last[sel['by']])}.", "", "## How it was made", "", "```bash",
              str(facts["command"] or "(command not recorded)"), "```", ""]
    if facts["config_file"]:
        lines += [f"Flags also from the config file `{facts['config_file']}` (its contents are in "
                  "`results.json`, `config.config_file`).", ""]
    lines += ["Library versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items())
              + ".", "", "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def write(run, name: str, results: dict[str, Any], cli: str, teacher_path: str | None) -> None:
    """Write the card to ``run / name`` through the run's manifest (main process only)."""
    text = render(results, cli, teacher_path)
    run.write(name, lambda tmp: Path(tmp).write_text(text))
