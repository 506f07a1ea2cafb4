"""--recipe no-phase1-decay changes exactly Annealing-KD's phase-1 learning-rate schedule, in both
CLIs (the learning rate each epoch ended with, from results.json), and is recorded; the text
CLI's --phase1_lr_scheduler_type does the same one flag at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_settings import glue_env, text_argv  # noqa: F401  (a fixture)

from annealing_kd.computer_vision_tasks.annealing_kd_train import main as image_main
from annealing_kd.NLP_glue_tasks.annealing_kd_glue import main as text_main

pytestmark = pytest.mark.slow

IMAGE = ["--dataset", "fake", "--train-subset", "64", "--val-size", "32", "--batch-size", "32",
         "--num-workers", "0", "--device", "cpu", "--teacher", "plane2", "--student", "resnet8",
         "--teacher_epochs", "1", "--student_epochs_p1", "4", "--student_epochs_p2", "2",
         "--max_temperature", "2", "--method", "annealing"]


def lrs(out: Path) -> dict[str, list[float]]:
    by_phase: dict[str, list[float]] = {}
    for e in json.loads((out / "results.json").read_text())["epochs"]:
        by_phase.setdefault(e["phase"], []).append(e["lr"])
    return by_phase


def test_image_recipe_makes_phase_one_constant_and_nothing_else(tmp_path):
    runs = {}
    for recipe in ("paper", "no-phase1-decay"):
        out = tmp_path / recipe
        assert image_main([*IMAGE, "--recipe", recipe, "--output-dir", str(out)]) == 0
        runs[recipe] = lrs(out)
    paper, recipe = runs["paper"], runs["no-phase1-decay"]
    # one optimizer step an epoch; milestones 0.5, 0.75 of 4 steps: x0.1 from step 2, again from 3
    assert paper["phase1"] == pytest.approx([0.1, 0.01, 0.001, 0.001])
    assert recipe["phase1"] == pytest.approx([0.1] * 4)
    assert recipe["phase2"] == paper["phase2"] and recipe["teacher"] == paper["teacher"]
    config = json.loads((tmp_path / "no-phase1-decay" / "results.json").read_text())["config"]
    assert config["recipe"] == "no-phase1-decay" and config["phase1_lr_milestones"] == []
    card = (tmp_path / "no-phase1-decay" / "student" / "README.md").read_text()  # the image card
    assert "recipe `no-phase1-decay`" in card


def test_recipe_refuses_a_method_without_phase_one_and_a_contradiction(tmp_path, capsys):
    assert image_main([*IMAGE[:-2], "--method", "kd", "--recipe", "no-phase1-decay",
                       "--output-dir", str(tmp_path / "a")]) == 2
    assert "--recipe no-phase1-decay changes Annealing-KD's phase 1" in capsys.readouterr().err
    assert image_main([*IMAGE, "--recipe", "no-phase1-decay", "--phase1-lr-milestones", "0.5",
                       "--output-dir", str(tmp_path / "b")]) == 2
    assert "sets --phase1-lr-milestones; drop one" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_text_phase_one_schedule_by_flag_and_by_recipe(glue_env, tmp_path):  # noqa: F811
    runs = {}
    for name, extra in (("paper", []), ("recipe", ["--recipe", "no-phase1-decay"]),
                        ("flag", ["--phase1_lr_scheduler_type", "constant_with_warmup"])):
        out = tmp_path / name
        assert text_main(text_argv(glue_env, out, "--num_train_epochs_phase_2", "1", *extra)) == 0
        runs[name] = lrs(out)
    # 24 sentences, batch 8: 3 steps an epoch; linear decay over phase 1's 6 steps
    assert runs["paper"]["phase1"] == pytest.approx([5e-4, 0.0])
    assert runs["recipe"]["phase1"] == runs["flag"]["phase1"] == pytest.approx([1e-3, 1e-3])
    assert runs["recipe"]["phase2"] == runs["flag"]["phase2"] == runs["paper"]["phase2"]
    config = json.loads((tmp_path / "recipe" / "results.json").read_text())["config"]
    assert config["recipe"] == "no-phase1-decay"
    assert config["phase1_lr_scheduler_type"] == "constant_with_warmup"
