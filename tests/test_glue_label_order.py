"""A teacher fine-tuned in another label order: found on dev before any training, named in one
error line with the flag that remaps its logits (cached and online), which then trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from glue_fixtures import tiny_bert, write_glue

from annealing_kd.NLP_glue_tasks.annealing_kd_glue import main


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """SST-2-format data; a tiny teacher fine-tuned to dev accuracy 1.0 and copies of it whose
    head's rows are swapped (outputs 0, 1 mean positive, negative), unnamed and named."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("order")
    data = write_glue(root / "glue", "SST-2", 64, 40, 4)
    base = tiny_bert(root / "base", num_labels=2, seed=2)
    assert main(["--task_name", "sst-2", "--data_dir", str(data), "--output_dir", str(root / "t"),
                 "--student_model_name_or_path", base, "--method", "finetune", "--do_train",
                 "--num_train_epochs", "20", "--learning_rate", "1e-3", "--no_cuda",
                 "--logits_cache_dir", str(root / "unused")]) == 0
    teacher = root / "t" / "student"
    accuracy = json.loads((root / "t" / "results.json").read_text())["final"]["metrics"]["accuracy"]
    assert accuracy == 1.0  # a teacher that knows the task, in our order
    paths = {"teacher": str(teacher)}
    for name, labels in (("swapped", ["LABEL_0", "LABEL_1"]), ("named", ["positive", "negative"])):
        model = AutoModelForSequenceClassification.from_pretrained(teacher)
        head = model.classifier
        with torch.no_grad():
            head.weight.copy_(head.weight[[1, 0]])
            head.bias.copy_(head.bias[[1, 0]])
        model.config.id2label = dict(enumerate(labels))
        model.config.label2id = {v: k for k, v in enumerate(labels)}
        model.save_pretrained(root / name)
        AutoTokenizer.from_pretrained(teacher).save_pretrained(root / name)
        paths[name] = str(root / name)
    return {"root": root, "data": data, **paths}


def error_line(capsys) -> str:
    """The one ``error:`` line, last on stderr (progress bars may come before it)."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0] and "Traceback" not in err
    return errors[0]


def kd(env, out: Path, teacher: str, *extra: str) -> int:
    return main(["--task_name", "sst-2", "--data_dir", str(env["data"]), "--output_dir", str(out),
                 "--teacher_model_name_or_path", env[teacher], "--student_model_name_or_path",
                 env["teacher"], "--method", "kd", "--do_train", "--num_train_epochs", "1",
                 "--no_cuda", "--logits_cache_dir", str(out.parent / "cache"), *extra])


def test_swapped_teacher_stops_then_the_flag_remaps_it(env, tmp_path, capsys):
    out = tmp_path / "run"
    assert kd(env, out, "swapped") == 2
    err = error_line(capsys)
    assert err.startswith("error: the teacher's dev accuracy is 0.000")
    assert "1.000 if its outputs mean positive,negative" in err
    assert "--teacher_label_order positive,negative" in err
    from annealing_kd.common.run_folder import content

    assert not content(out)  # nothing trained, nothing written (but the lock): the same command reruns

    assert kd(env, out, "swapped", "--teacher_label_order", "positive,negative") == 0
    assert "reusing cached logits" in capsys.readouterr().out  # the cache from the first try
    res = json.loads((out / "results.json").read_text())
    assert res["teacher"]["eval"]["accuracy"] == 1.0  # remapped: as good as the teacher
    assert res["teacher"]["label_order"] == ["positive", "negative"]
    assert res["config"]["teacher_label_order"] == "positive,negative"
    # the cache keeps the raw outputs (in the swapped order)
    from annealing_kd.common.logit_cache.store import LogitCache

    cache = LogitCache(tmp_path / "cache")

    def files() -> list[Path]:
        return sorted((tmp_path / "cache").glob("*.logits"), key=lambda p: p.stat().st_mtime)

    def read(p: Path) -> torch.Tensor:
        return cache.read(p, p.stem, "fp32")

    assert len(files()) == 2  # train and dev
    ours = kd(env, tmp_path / "ours", "teacher")
    assert ours == 0
    raw = files()
    assert len(raw) == 4  # another teacher: its own entries
    first, mine = read(raw[0]), read(raw[2])
    if first.shape != mine.shape:
        first, mine = read(raw[1]), read(raw[3])
    assert torch.allclose(first[:, [1, 0]], mine, atol=1e-5)


def test_online_teacher_is_remapped_too(env, tmp_path):
    out = tmp_path / "online"
    assert kd(env, out, "swapped", "--online_teacher", "--teacher_label_order",
              "positive,negative") == 0
    assert json.loads((out / "results.json").read_text())["teacher"]["eval"]["accuracy"] == 1.0


def test_named_labels_in_another_order(env, tmp_path, capsys):
    assert kd(env, tmp_path / "a", "named") == 2
    err = error_line(capsys)
    assert "labels are never swapped silently" in err
    assert "--teacher_label_order positive,negative" in err
    assert kd(env, tmp_path / "b", "named", "--teacher_label_order", "positive,negative") == 0
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert res["teacher"]["eval"]["accuracy"] == 1.0


@pytest.mark.parametrize(("extra", "message"), [
    (["--teacher_label_order", "positive"], "is not an order of the sst-2 labels"),
    (["--teacher_label_order", "positive,negative", "--train_teacher"], "drop it"),
])
def test_bad_label_order(env, tmp_path, capsys, extra, message):
    assert kd(env, tmp_path / "run", "teacher", *extra) == 2
    assert message in error_line(capsys)
