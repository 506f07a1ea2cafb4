"""The model card of both CLIs: Hugging Face format (YAML metadata that parses), its numbers
those of results.json, written through the run's manifest."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from glue_fixtures import tiny_bert, write_glue

from annealing_kd.common.integrations.model_card import portable
from annealing_kd.common.run_folder import Manifest, file_sha256


def listed_metrics(text: str) -> dict[str, float]:
    """The model-index's metrics, name -> value, read back by ``huggingface_hub``: the metadata
    round-trips through ``ModelCardData`` (``ModelCard.validate`` needs the network)."""
    from huggingface_hub import ModelCard, ModelCardData

    card = ModelCard(text)
    assert ModelCardData(**card.data.to_dict()).to_dict() == card.data.to_dict()
    assert yaml.safe_load(card.data.to_yaml()) == read_card_text(text)[0]
    return {r.metric_name: r.metric_value for r in card.data.eval_results}


def read_card(path: Path) -> tuple[dict, str]:
    text = path.read_text()
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def check_card(card: Path, out: Path, metric: str) -> tuple[dict, str, dict]:
    res = json.loads((out / "results.json").read_text())
    meta, body = read_card(card)
    assert meta["tags"][:2] == ["knowledge-distillation", "annealing-kd"]
    final = res["final"]
    listed = listed_metrics(card.read_text())
    assert sorted(listed.values()) == sorted(round(v, 4) for v in final["metrics"].values())
    assert all(name.endswith(("(selected epoch)", "(last epoch)")) for name in listed)
    for value in final["metrics"].values():
        assert f"| {value:.4f} |" in body
    assert f"{final['selected_phase']} epoch {final['selected_epoch']}" in body
    last = [r for r in res["epochs"] if r["phase"] != "teacher"][-1]
    assert f"{last['phase']} epoch {last['epoch']}): {metric} {last['eval'][metric]:.4f}" in body
    assert portable(res["config"]["command"], out.resolve(), "command") in body
    assert "2104.07163" in body
    text = card.read_text()  # no path of this machine, anywhere
    assert str(out.parent) not in text and str(out.resolve().parent) not in text
    assert meta["license"] == "apache-2.0" and f"| `seed` | `{res['config']['seed']}` |" in body
    assert f"torch {res['versions']['torch']}" in body
    assert Manifest.read(out).unchanged(card)  # recorded: an overwrite removes it
    return meta, body, res


def test_image_cli_card(tmp_path):
    from test_cifar_pipeline import run

    out = tmp_path / "run"
    assert run(out, "--method", "annealing") == 0
    meta, body, res = check_card(out / "student" / "README.md", out, "val_accuracy")
    assert meta["library_name"] == "pytorch" and meta["datasets"] == ["fake"]
    assert "base_model" not in meta  # a CIFAR model starts from random weights
    m = res["final"]["metrics"]
    assert listed_metrics((out / "student" / "README.md").read_text()) == {
        "val accuracy (selected epoch)": round(m["val_accuracy"], 4),
        "test accuracy (selected epoch)": round(m["test_accuracy"], 4),
        "test accuracy (last epoch)": round(m["last_epoch_test_accuracy"], 4)}
    splits = [r["dataset"]["split"] for r in meta["model-index"][0]["results"]]
    assert splits == ["val", "test"]
    teacher = out / "teacher" / "best.safetensors"  # trained in this run: relative to the run
    assert f"weights `teacher/best.safetensors` (sha256 `{file_sha256(teacher)}`)" in body
    assert "--output-dir <output_dir>" in body and "| `learning_rate` |" in body
    assert f"test_accuracy {res['teacher']['test_accuracy']:.4f}" in body
    assert "examples: train 64, val 32" in body and "annealing_kd_train.py" in body
    # the card's code rebuilds the student, as written
    code = body.split("```python\n", 1)[1].split("```", 1)[0]
    ns: dict = {}
    exec(code.replace('"path/to/student"', repr(str(out / "student"))), ns)
    assert not ns["model"].training and sum(p.numel() for p in ns["model"].parameters()) > 0


@pytest.mark.slow  # about 50 s on a loaded 2-core CPU
def test_text_cli_card(tmp_path, capsys):
    """Also: its random teacher is at chance on dev, which one warning line says."""
    from annealing_kd.NLP_glue_tasks.annealing_kd_glue import main

    write_glue(tmp_path / "glue", "RTE", 16, 8, 4)
    teacher = tiny_bert(tmp_path / "teacher", num_labels=2, seed=1)
    student = tiny_bert(tmp_path / "student", num_labels=None, seed=2)
    out = tmp_path / "run"
    config = tmp_path / "args.yaml"  # flags from a file too (tests/test_config_file.py)
    config.write_text("task_name: rte\nper_gpu_train_batch_size: 8\nno_cuda: true\n"
                      "report_to: tensorboard\nlogging_steps: 1\nnum_train_epochs_phase_1: 3\n")
    assert main([str(config), "--data_dir", str(tmp_path / "glue" / "RTE"),
                 "--output_dir", str(out), "--logits_cache_dir", str(tmp_path / "cache"),
                 "--teacher_model_name_or_path", teacher, "--student_model_name_or_path", student,
                 "--do_train", "--num_train_epochs_phase_1", "2", "--num_train_epochs_phase_2",
                 "1", "--max_temperature", "2"]) == 0
    warned = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning: the teacher")]
    assert len(warned) == 1 and "--teacher_model_name_or_path" in warned[0], warned
    meta, body, res = check_card(out / "student" / "README.md", out, "accuracy")
    assert meta["library_name"] == "transformers" and meta["datasets"] == ["rte"]
    assert f"sha256 `{file_sha256(Path(teacher) / 'model.safetensors')}`" in body
    assert "weights `<teacher_weights>`" in body and "--output_dir <output_dir>" in body
    assert "--teacher_model_name_or_path <teacher_model_name_or_path>" in body
    assert "base_model" not in meta  # a local student folder is no Hub id
    assert "| `per_gpu_train_batch_size` | `8` |" in body  # from the config file
    assert "config file `args.yaml`" in body
    assert {r["dataset"]["split"] for r in meta["model-index"][0]["results"]} == {"validation"}
    assert f"dev_accuracy {res['teacher']['eval']['accuracy']:.4f}" in body
    assert "examples: train 16, dev 8" in body
    assert res["config"]["config_file"]["contents"]["report_to"] == "tensorboard"
    assert [r["phase"] for r in res["epochs"]] == ["phase1", "phase1", "phase2"]  # flag wins
    if importlib.util.find_spec("tensorboard"):  # --report_to, the same way as the image CLI
        from test_tracking import check_events

        check_events(out, ["phase1", "phase2"], "accuracy", 2, 1)


@pytest.mark.parametrize("cli", ["image", "text"])
def test_card_of_a_run_without_teacher(cli):
    from annealing_kd.common.integrations.model_card import render

    res = {"config": {"method": "scratch", "dataset": "fake", "student": "plane2",
                      "command": "x --method scratch", "student_model_name_or_path": "s"},
           "versions": {"torch": "2"}, "task": "rte",
           "epochs": [{"phase": "student", "epoch": 1, "eval": {"m": 0.5}}],
           "final": {"selected_phase": "student", "selected_epoch": 1, "selected_by": "m",
                     "selected_on": "dev", "metrics": {"m": 0.5}}}
    meta, body = read_card_text(render(res, cli))
    assert "Teacher" not in body and meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.5


def read_card_text(text: str) -> tuple[dict, str]:
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_card_metadata_of_a_hub_student_and_its_labels():
    """A Hub student is the card's ``base_model``; every metric says its split and epoch,
    rounded in the card, exact in results.json; paths outside the run are placeholders."""
    from annealing_kd.common.integrations.model_card import render

    res = {"config": {"method": "kd", "command": "/opt/bin/annealing_kd_glue.py --data_dir "
                      "/data/glue/RTE --output_dir /runs/a --teacher_model_name_or_path=/m/t",
                      "student_model_name_or_path": "google/bert_uncased_L-2_H-128_A-2",
                      "output_dir": "/runs/a", "cache_dir": "/data/cache", "seed": 42},
           "versions": {"torch": "2"}, "task": "rte", "teacher": {"path": "/m/t", "eval": {}},
           "epochs": [{"phase": "student", "epoch": 1, "eval": {"accuracy": 0.17000000178813934}}],
           "final": {"selected_phase": "student", "selected_epoch": 1, "selected_by": "accuracy",
                     "selected_on": "dev", "metrics": {"accuracy": 0.17000000178813934}}}
    text = render(res, "text", "/m/t")
    meta, body = read_card_text(text)
    assert meta["base_model"] == "google/bert_uncased_L-2_H-128_A-2"
    assert meta["datasets"] == ["nyu-mll/glue"] and meta["license"] == "apache-2.0"
    assert listed_metrics(text) == {"dev accuracy (selected epoch)": 0.17}
    result = meta["model-index"][0]["results"][0]["dataset"]
    assert result == {"name": "rte", "type": "nyu-mll/glue", "config": "rte", "split": "validation"}
    assert "0.17000000178813934" not in text and "| 0.1700 |" in body
    assert ("annealing_kd_glue.py --data_dir <data_dir> --output_dir <output_dir> "
            "--teacher_model_name_or_path=<teacher_model_name_or_path>") in body
    assert "/m/t" not in text and "/data/" not in text and "/runs/" not in text
    assert body.lstrip().startswith("# bert_uncased_L-2_H-128_A-2 distilled with kd\n")
    assert "| `cache_dir` | `<cache_dir>` |" in body and "weights `<teacher_weights>`" in body
    meta, _ = read_card_text(render({**res, "config": {**res["config"],
                                                       "student_model_name_or_path": "/m/s"}},
                                    "text"))
    assert "base_model" not in meta
