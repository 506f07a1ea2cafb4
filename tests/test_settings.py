"""The run-settings layer (annealing_kd.common.cli.settings): one declaration per setting, each CLI's spelling,
one check, the resume keys; and the settings of the controlled experiment: the phase-2 learning
rate, the learning-rate milestones and a phase 2 of 0 epochs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from glue_fixtures import tiny_bert, write_glue
from safetensors.torch import load_file

from annealing_kd.common.cli import settings
from annealing_kd.common.errors import UsageError
from annealing_kd.computer_vision_tasks import cli as image_cli
from annealing_kd.computer_vision_tasks.annealing_kd_train import main as image_main
from annealing_kd.NLP_glue_tasks import cli as text_cli
from annealing_kd.NLP_glue_tasks.annealing_kd_glue import main as text_main

IMAGE = ["--dataset", "fake", "--train-subset", "32", "--val-size", "32", "--batch-size", "16",
         "--num-workers", "0", "--device", "cpu", "--teacher", "plane2", "--student", "resnet8",
         "--teacher_epochs", "1", "--student_epochs_p1", "2", "--student_epochs_p2", "2",
         "--max_temperature", "2", "--learning-rate", "0.05"]


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_each_cli_spells_the_shared_settings_its_way():
    image = image_cli.build_parser().format_help()
    text = text_cli.build_parser().format_help()
    for flag in ("--kd-alpha", "--kd_alpha", "--anneal-reduction", "--phase2-learning-rate",
                 "--lr-milestones", "--phase1-lr-milestones", "--student_epochs_p1",
                 "--max_temperature", "--overwrite-output-dir", "--resume"):
        assert flag in image, flag
    for flag in ("--kd_alpha", "--anneal_reduction", "--phase2_learning_rate",
                 "--num_train_epochs_phase_1", "--num_train_epochs", "--max_temperature",
                 "--overwrite_output_dir", "--assistant_epochs"):
        assert flag in text, flag
    for flag in ("--kd-alpha", "--lr_milestones", "--overwrite-output-dir", "--anneal-per-step"):
        assert flag not in text, flag  # no dashed aliases in the text CLI
    assert image_cli.flag_of("anneal_per_step") == "--anneal-per-step"
    assert text_cli.flag_of("student_epochs_p1") == "--num_train_epochs_phase_1"
    assert image_cli.flag_of("device") == "--device"  # not its --cuda alias


def test_the_resume_keys_come_from_the_settings():
    shared = {"student_epochs_p1", "student_epochs_p2", "max_temperature", "kd_alpha",
              "kd_temperature", "kd_reduction", "anneal_reduction", "learning_rate",
              "phase2_learning_rate", "seed", "anneal_per_step"}
    assert shared <= set(settings.resume_keys("image")) and shared <= set(text_cli.resume_keys())
    assert {"lr_milestones", "phase1_lr_milestones"} <= set(settings.resume_keys("image"))
    assert not {"resume", "overwrite_output_dir"} & set(settings.resume_keys("image"))


def test_milestones_parse_and_one_line_errors():
    args = image_cli.parse_args(["--lr-milestones", "0.3,0.6,0.9", "--phase1-lr-milestones", "none"])
    assert args.lr_milestones == (0.3, 0.6, 0.9) and args.phase1_lr_milestones == ()
    assert image_cli.parse_args([]).lr_milestones == (0.5, 0.75)
    assert settings.for_budget(args, "lr_milestones", "phase1") == ()
    assert settings.for_budget(args, "lr_milestones", "phase2") == (0.3, 0.6, 0.9)
    for bad, match in (("a,b", "not a comma-separated list"), ("0.5,0.5", "must increase"),
                       ("0,0.5", r"in \(0, 1\)"), ("0.5,1.2", r"in \(0, 1\)")):
        with pytest.raises(UsageError, match=match):
            image_cli.parse_args(["--lr-milestones", bad])


def test_zero_budget_only_for_a_skippable_step():
    with pytest.raises(UsageError, match="student_epochs_p1 must be at least 1, got 0"):
        image_cli.parse_args(["--student_epochs_p1", "0"])
    args = image_cli.parse_args(["--student_epochs_p2", "0", "--student_epochs_p1", "12"])
    assert args.student_epochs == 12 and args.assistant_epochs == 12  # the defaults follow
    with pytest.raises(UsageError, match="student_epochs_p2 must be at least 0"):
        image_cli.parse_args(["--student_epochs_p2", "-1"])


def test_phase1_lr_milestones_none_and_the_phase2_learning_rate(tmp_path, monkeypatch):
    """Per optimizer step: the teacher (plain CNN) at lr/10; phase 1 constant with
    --phase1-lr-milestones none; phase 2 from --phase2-learning-rate, x0.1 at 1/2 and 3/4."""
    lrs: list[float] = []
    step = torch.optim.SGD.step

    def recording(self, *a, **k):
        lrs.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", recording)
    out = tmp_path / "run"
    assert image_main([*IMAGE, "--phase1-lr-milestones", "none", "--phase2-learning-rate", "0.02",
                       "--output-dir", str(out)]) == 0
    assert lrs == pytest.approx([0.005] * 2 + [0.05] * 4 + [0.02, 0.02, 0.002, 0.0002])
    config = results(out)["config"]
    assert config["phase2_learning_rate"] == 0.02 and config["phase1_lr_milestones"] == []


def test_phase2_of_zero_epochs_image(tmp_path, capsys):
    out = tmp_path / "run"
    assert image_main([*IMAGE, "--student_epochs_p2", "0", "--output-dir", str(out)]) == 0
    r = results(out)
    assert [e["phase"] for e in r["epochs"]] == ["teacher", "phase1", "phase1"]
    assert r["final"]["selected_phase"] == "phase1" and not (out / "phase2").exists()
    for name in ("best", "last"):
        a, b = load_file(out / "student" / f"{name}.safetensors"), load_file(out / "phase1" / f"{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert "student selected: phase1 epoch" in capsys.readouterr().out


@pytest.fixture(scope="module")
def glue_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    write_glue(root / "glue", "RTE", 24, 12, 6)
    return {"root": root, "teacher": tiny_bert(root / "teacher", num_labels=2, seed=2),
            "student": tiny_bert(root / "student", num_labels=None, seed=10)}


def text_argv(env, out: Path, *extra: str) -> list[str]:
    return ["--task_name", "rte", "--data_dir", str(env["root"] / "glue" / "RTE"),
            "--output_dir", str(out), "--logits_cache_dir", str(out.parent / "cache"),
            "--teacher_model_name_or_path", env["teacher"], "--student_model_name_or_path",
            env["student"], "--per_gpu_train_batch_size", "8", "--no_cuda", "--learning_rate",
            "1e-3", "--num_train_epochs_phase_1", "2", "--max_temperature", "2", "--do_train",
            *extra]


def test_phase2_learning_rate_and_phase2_of_zero_epochs_text(glue_env, tmp_path):
    out = tmp_path / "lr"
    assert text_main(text_argv(glue_env, out, "--num_train_epochs_phase_2", "1",
                               "--phase2_learning_rate", "3e-4", "--lr_scheduler_type",
                               "constant")) == 0
    assert [(e["phase"], e["lr"]) for e in results(out)["epochs"]] == [
        ("phase1", 1e-3), ("phase1", 1e-3), ("phase2", 3e-4)]
    out = tmp_path / "p1"
    assert text_main(text_argv(glue_env, out, "--num_train_epochs_phase_2", "0")) == 0
    r = results(out)
    assert [e["phase"] for e in r["epochs"]] == ["phase1", "phase1"]
    assert r["final"]["selected_phase"] == "phase1" and (out / "student" / "model.safetensors").is_file()
    assert r["config"]["student_epochs_p2"] == 0
