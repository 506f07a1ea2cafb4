"""A new distillation method is one file: this one. It registers an objective and a method
through the layer (common.trainer.register_objective, common.methods.register) and runs the
method through both CLIs at tiny size; no other file knows about it."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from glue_fixtures import tiny_bert, write_glue

from common import methods
from common import trainer as core
from common.methods import Method, Step, register

CALLS: list[tuple[int, int]] = []  # (batch size, classes) of every loss call


def soft_ce(logits, labels, targets, phi, **options) -> torch.Tensor:
    """Cross-entropy against the teacher's softmax (KD with only the soft term at T = 1)."""
    assert targets is not None and phi is None and targets.shape == logits.shape
    CALLS.append(tuple(logits.shape))
    return -(F.softmax(targets, -1) * F.log_softmax(logits, -1)).sum(-1).mean()


@pytest.fixture
def toy_method():
    """Register the toy objective and method for one test, then remove them again."""
    core.register_objective("soft_ce")(soft_ce)
    register(Method("toy", (Step("student", "student", "soft_ce", teacher="teacher"),),
                    "toy: cross-entropy on the teacher's softmax"))
    CALLS.clear()
    yield
    methods.METHODS.pop("toy")
    core.OBJECTIVES.pop("soft_ce")


def test_soft_ce_by_hand():
    logits, targets = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    assert soft_ce(logits, None, targets, None).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    CALLS.clear()


def test_toy_method_through_the_cifar_cli(toy_method, tmp_path, capsys):
    from computer_vision_tasks.annealing_kd_train import main

    out = tmp_path / "cifar"
    assert main(["--dataset", "fake", "--train-subset", "64", "--val-size", "32", "--batch-size",
                 "32", "--num-workers", "0", "--device", "cpu", "--teacher", "resnet8",
                 "--student", "plane2", "--teacher_epochs", "1", "--student-epochs", "2",
                 "--method", "toy", "--output-dir", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [e["phase"] for e in res["epochs"]] == ["teacher", "student", "student"]
    assert res["config"]["method"] == "toy" and res["final"]["selected_phase"] == "student"
    assert CALLS == [(32, 10)] * 4  # 2 epochs x 2 batches of the student phase, never the teacher's
    assert "student selected: student" in capsys.readouterr().out


def test_toy_method_through_the_glue_cli(toy_method, tmp_path):
    from NLP_glue_tasks.annealing_kd_glue import main

    write_glue(tmp_path / "glue", "RTE", 24, 12, 6)
    teacher = tiny_bert(tmp_path / "teacher", num_labels=2, seed=2)
    student = tiny_bert(tmp_path / "student", num_labels=None, seed=10)
    out = tmp_path / "run"
    assert main(["--task_name", "rte", "--data_dir", str(tmp_path / "glue" / "RTE"),
                 "--output_dir", str(out), "--logits_cache_dir", str(tmp_path / "cache"),
                 "--teacher_model_name_or_path", teacher, "--student_model_name_or_path", student,
                 "--per_gpu_train_batch_size", "8", "--no_cuda", "--num_train_epochs", "2",
                 "--method", "toy", "--do_train"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [e["phase"] for e in res["epochs"]] == ["student", "student"]
    assert res["config"]["method"] == "toy" and set(res["final"]["table"]) == {"teacher", "student"}
    assert CALLS == [(8, 2)] * 6  # 2 epochs x 3 batches
