"""A new distillation method, with an objective that has an option, is one file: this one. It
registers the objective and its option (annealing_kd.common.methods.objectives.register_objective with a
annealing_kd.common.cli.settings.Setting: flag, default, check, resume key) and a method (annealing_kd.common.methods.register),
and runs the method through both CLIs at tiny size; no other file knows about it."""

from __future__ import annotations

import importlib
import json

import pytest
import torch
import torch.nn.functional as F
from glue_fixtures import tiny_bert, write_glue

from annealing_kd.common import methods
from annealing_kd.common.cli.settings import Setting, positive
from annealing_kd.common.methods import Method, PhasePlan, objectives, register

CALLS: list[tuple[int, int, float]] = []  # (batch size, classes, temperature) of every loss call
OPTION = Setting("soft_ce_temperature", "softmax temperature of the toy objective", 1.0, float,
                 check=positive("soft_ce_temperature"))


def soft_ce(logits, labels, targets, phi, *, soft_ce_temperature: float = 1.0, **options):
    """Cross-entropy against the teacher's softmax at a temperature (KD's soft term alone)."""
    assert targets is not None and phi is None and targets.shape == logits.shape
    CALLS.append((*logits.shape, soft_ce_temperature))
    t = soft_ce_temperature
    return -(F.softmax(targets / t, -1) * F.log_softmax(logits / t, -1)).sum(-1).mean()


@pytest.fixture
def toy_method():
    """Register the toy objective (with its option) and method for one test, then remove them."""
    objectives.register_objective("soft_ce", options=[OPTION])(soft_ce)
    register(Method("toy", (PhasePlan("student", "student", "soft_ce", teacher="teacher"),),
                    "toy: cross-entropy on the teacher's softmax"))
    CALLS.clear()
    yield
    methods.METHODS.pop("toy")
    objectives.unregister_objective("soft_ce")


def test_soft_ce_by_hand():
    logits, targets = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    assert soft_ce(logits, None, targets, None).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    # T = 2: softmax([2, 0] / 2) against log_softmax([0, 2] / 2)
    p, q = F.softmax(torch.tensor([1.0, 0.0]), -1), F.log_softmax(torch.tensor([0.0, 1.0]), -1)
    got = soft_ce(torch.tensor([[0.0, 2.0]]), None, torch.tensor([[2.0, 0.0]]), None,
                  soft_ce_temperature=2.0)
    assert got.item() == pytest.approx(-(p * q).sum().item())
    CALLS.clear()


def test_toy_method_through_the_cifar_cli(toy_method, tmp_path, capsys):
    from annealing_kd.computer_vision_tasks.annealing_kd_train import main

    out = tmp_path / "cifar"
    argv = ["--dataset", "fake", "--train-subset", "64", "--val-size", "32", "--batch-size",
            "32", "--num-workers", "0", "--device", "cpu", "--teacher", "resnet8",
            "--student", "plane2", "--teacher_epochs", "1", "--student-epochs", "2",
            "--method", "toy", "--output-dir", str(out)]
    assert main([*argv, "--soft-ce-temperature", "2.5"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [e["phase"] for e in res["epochs"]] == ["teacher", "student", "student"]
    assert res["config"]["method"] == "toy" and res["final"]["selected_phase"] == "student"
    assert res["config"]["soft_ce_temperature"] == 2.5
    # 2 epochs x 2 batches of the student phase, never the teacher's, at the option's value
    assert CALLS == [(32, 10, 2.5)] * 4
    assert "student selected: student" in capsys.readouterr().out
    check_option(main, argv, "image", "--soft-ce-temperature", capsys)


def check_option(main, argv: list[str], cli: str, shown: str, capsys) -> None:
    """The option's check (through the CLI) and resume key, in the CLI's own spelling."""
    from annealing_kd.common.cli.settings import resume_keys
    from annealing_kd.common.errors import UsageError
    from annealing_kd.common.run_folder import check_same_run

    capsys.readouterr()
    assert main([*argv, shown, "0"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {shown} must be positive, got 0"
    assert OPTION.name in resume_keys(cli)
    with pytest.raises(UsageError) as err:
        check_same_run({OPTION.name: 2.5}, {OPTION.name: 3.0}, resume_keys(cli))
    module = {"image": "annealing_kd.computer_vision_tasks.cli", "text": "annealing_kd.NLP_glue_tasks.cli"}[cli]
    flag_of = importlib.import_module(module).flag_of
    assert err.value.spelled(flag_of).startswith(f"--resume: {shown} was 2.5 in this run, now 3.0")


def test_toy_method_through_the_glue_cli(toy_method, tmp_path, capsys):
    from annealing_kd.NLP_glue_tasks.annealing_kd_glue import main

    write_glue(tmp_path / "glue", "RTE", 24, 12, 6)
    teacher = tiny_bert(tmp_path / "teacher", num_labels=2, seed=2)
    student = tiny_bert(tmp_path / "student", num_labels=None, seed=10)
    out = tmp_path / "run"
    argv = ["--task_name", "rte", "--data_dir", str(tmp_path / "glue" / "RTE"),
            "--output_dir", str(out), "--logits_cache_dir", str(tmp_path / "cache"),
            "--teacher_model_name_or_path", teacher, "--student_model_name_or_path", student,
            "--per_gpu_train_batch_size", "8", "--no_cuda", "--num_train_epochs", "2",
            "--method", "toy", "--do_train"]
    assert main([*argv, "--soft_ce_temperature", "2.5"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [e["phase"] for e in res["epochs"]] == ["student", "student"]
    assert res["config"]["method"] == "toy" and set(res["final"]["table"]) == {"teacher", "student"}
    assert res["config"]["soft_ce_temperature"] == 2.5
    assert CALLS == [(8, 2, 2.5)] * 6  # 2 epochs x 3 batches
    check_option(main, argv, "text", "--soft_ce_temperature", capsys)


def test_the_option_is_gone_with_the_objective():
    from annealing_kd.computer_vision_tasks.cli import build_parser

    assert "--soft-ce-temperature" not in build_parser().format_help()
