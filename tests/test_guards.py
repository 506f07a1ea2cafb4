"""The chance-teacher warning (both CLIs) and --recalibrate-bn (image CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from annealing_kd.common.training.guards import (
    at_chance,
    chance_margin,
    majority_share,
    recalibrate_bn,
)
from annealing_kd.common.training.trainer import Trainer
from annealing_kd.computer_vision_tasks import model_zoo


def test_chance_is_two_standard_errors_above_one_over_the_classes():
    assert chance_margin(0.1, 100) == pytest.approx(0.06)  # 2 * sqrt(0.1 * 0.9 / 100)
    assert at_chance({"accuracy": 0.159}, 10, 100) and not at_chance({"accuracy": 0.161}, 10, 100)
    assert at_chance({"accuracy": 0.5}, 2, 10_000) and not at_chance({"accuracy": 0.52}, 2, 10_000)
    assert at_chance({"mcc": 0.0}, 2, 50) and not at_chance({"mcc": 0.1}, 2, 50)  # CoLA
    assert at_chance({"pearson": -0.2, "spearman": 0.1}, None, 50)  # regression
    assert not at_chance({"pearson": 0.3}, None, 50)
    # a model that always answers the most frequent class gets its share: that is chance too
    assert majority_share([0, 1, 1, 1, 2]) == pytest.approx(0.6)
    assert at_chance({"accuracy": 0.25}, 10, 100, majority=0.2)  # 0.2 + 2 * sqrt(0.16 / 100)
    assert not at_chance({"accuracy": 0.29}, 10, 100, majority=0.2)
    assert "most frequent class" in at_chance({"accuracy": 0.2}, 10, 100, majority=0.2)


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 8, generator=g) + 3 * (2 * y[:, None] - 1) * torch.eye(8)[0] + 5
    return x, y


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model.eval()(x).argmax(1) == y).float().mean().item()


def test_recalibrate_bn_restores_a_teacher_whose_statistics_lag():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    x, y = _blobs(512, 0)
    xv, yv = _blobs(256, 1)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for i in range(60):
        b = slice(64 * (i % 8), 64 * (i % 8 + 1))
        opt.zero_grad()
        nn.functional.cross_entropy(model.train()(x[b]), y[b]).backward()
        opt.step()
    good = _accuracy(model, xv, yv)
    bn = model[1]
    bn.running_mean += 40.0  # statistics far from the data's (as lagging statistics are)
    bn.running_var *= 1e-3
    broken = _accuracy(model, xv, yv)
    assert good > 0.9 and at_chance({"accuracy": broken}, 2, len(yv)), (good, broken)
    assert recalibrate_bn(model, (x[i:i + 64] for i in range(0, 512, 64)))
    fixed = _accuracy(model, xv, yv)
    assert not model.training and fixed > 0.9 and abs(fixed - good) < 0.03, (good, broken, fixed)
    assert not recalibrate_bn(nn.Linear(2, 2), [torch.zeros(1, 2)])  # no batch norm: untouched


def _break_bn(src: Path, dst: Path) -> None:
    state = load_file(src)
    for k in state:
        if k.endswith("running_mean"):  # statistics far from the data's
            state[k] = state[k] + 20.0
        if k.endswith("running_var"):
            state[k] = state[k] * 1e-3
    save_file(state, dst)


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning: the teacher")]


def test_a_useless_teacher_is_named_before_the_student_trains(tmp_path, monkeypatch, capsys):
    from test_cifar_pipeline import run

    model = model_zoo.create_model("resnet8", 10, 3, 32)
    ckpt = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "raw.safetensors")
    _break_bn(tmp_path / "raw.safetensors", ckpt)
    seen: list[list[str]] = []
    fit = Trainer.fit

    def checking_fit(self, *args, **kwargs):
        seen.append(_warnings(capsys.readouterr().err))  # what was said before this phase
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", checking_fit)
    assert run(tmp_path / "run", "--method", "kd", "--teacher-checkpoint", str(ckpt)) == 0
    assert len(seen[0]) == 1 and not _warnings(capsys.readouterr().err)  # once, before training
    assert "val accuracy" in seen[0][0] and "--recalibrate-bn" in seen[0][0]


@pytest.mark.slow
def test_recalibrate_bn_repairs_a_teacher_in_the_cli(tmp_path, capsys):
    """A trained teacher whose BN statistics are broken: at chance and warned about; with
    --recalibrate-bn its statistics are recomputed before its logits are used: no warning, and
    its accuracy is back."""
    from test_cifar_pipeline import results, run

    more = ["--train-subset", "512", "--val-size", "128"]
    assert run(tmp_path / "t", "--method", "scratch", "--student", "resnet8", "--student-epochs",
               "4", *more) == 0
    good = results(tmp_path / "t")["final"]["metrics"]["val_accuracy"]
    ckpt = tmp_path / "broken.safetensors"
    _break_bn(tmp_path / "t" / "student" / "best.safetensors", ckpt)
    capsys.readouterr()
    acc, warned = {}, {}
    for flag in ([], ["--recalibrate-bn"]):
        out = tmp_path / ("fixed" if flag else "broken")
        assert run(out, "--method", "kd", "--teacher-checkpoint", str(ckpt), *more, *flag) == 0
        acc[bool(flag)] = results(out)["teacher"]["val_accuracy"]
        warned[bool(flag)] = _warnings(capsys.readouterr().err)
        assert json.loads((out / "results.json").read_text())["config"]["recalibrate_bn"] == bool(flag)
    # broken: it answers one class (0.172 of the 128 val images); recalibrated: 0.352 (good: 0.344)
    assert good > 0.25 and acc[True] > 0.25 and acc[True] > acc[False] + 0.1, (good, acc)
    assert len(warned[False]) == 1 and "--recalibrate-bn" in warned[False][0] and not warned[True]


def test_the_guard_is_recorded_and_can_be_fatal_in_the_image_cli(tmp_path, capsys):
    """The guard's result is in results.json (teacher.chance_check) and the model card; with
    --fail_on_chance_teacher (either spelling) a teacher at chance is one error line, exit 2."""
    from test_cifar_pipeline import run

    model = model_zoo.create_model("resnet8", 10, 3, 32)
    ckpt = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "raw.safetensors")
    _break_bn(tmp_path / "raw.safetensors", ckpt)
    import importlib.util

    tb = importlib.util.find_spec("tensorboard") is not None
    assert run(tmp_path / "run", "--method", "kd", "--teacher-checkpoint", str(ckpt),
               *(["--report-to", "tensorboard"] if tb else [])) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    check = res["teacher"]["chance_check"]
    assert check["metric"] == "accuracy" and check["value"] == res["teacher"]["val_accuracy"]
    assert check["at_chance"] and check["warned"] and check["split"] == "val"
    if tb:  # the tracker logs it at the end
        from test_tracking import read_events

        from annealing_kd.common.integrations.tracking import FOLDER

        ev = read_events(tmp_path / "run" / FOLDER)
        last = ev["final/selected_epoch"][0][0]  # beside the final metrics, at the last step
        assert last > 0
        assert ev["chance_check/value"] == [(last, pytest.approx(check["value"]))]
        assert ev["chance_check/chance"] == [(last, pytest.approx(check["chance"]))]
        assert ev["chance_check/warned"] == [(last, 1.0)]
    assert check["chance"] >= 0.1 and check["examples"] == 32
    card = (tmp_path / "run" / "student" / "README.md").read_text()
    assert (f"Chance check on val: accuracy {check['value']:.4f} against chance "
            f"{check['chance']:.4f} + {check['margin']:.4f}, no better than chance: the run "
            "warned.") in card
    capsys.readouterr()
    for flag in ("--fail_on_chance_teacher", "--fail-on-chance-teacher"):
        out = tmp_path / flag
        assert run(out, "--method", "kd", "--teacher-checkpoint", str(ckpt), flag) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: the teacher's val accuracy"), err
        assert "--fail-on-chance-teacher" in err[0] and not (out / "results.json").exists()


def test_the_guard_is_recorded_and_can_be_fatal_in_the_text_cli(tmp_path, capsys):
    from glue_fixtures import tiny_bert, write_glue

    from annealing_kd.NLP_glue_tasks.annealing_kd_glue import main

    data = write_glue(tmp_path / "glue", "RTE", 16, 8, 4)
    teacher = tiny_bert(tmp_path / "teacher", num_labels=2, seed=1)  # random: at chance
    student = tiny_bert(tmp_path / "student", num_labels=None, seed=2)

    def run(out, *extra):
        return main(["--task_name", "rte", "--data_dir", str(data), "--output_dir", str(out),
                     "--logits_cache_dir", str(tmp_path / "cache"), "--no_cuda", "--do_train",
                     "--teacher_model_name_or_path", teacher, "--student_model_name_or_path",
                     student, "--per_gpu_train_batch_size", "8", "--method", "kd",
                     "--num_train_epochs", "1", *extra])

    assert run(tmp_path / "run") == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    check = res["teacher"]["chance_check"]
    assert check["metric"] == "accuracy" and check["value"] == res["teacher"]["eval"]["accuracy"]
    assert check["at_chance"] and check["warned"] and check["split"] == "dev"
    card = (tmp_path / "run" / "student" / "README.md").read_text()
    assert "Chance check on dev: accuracy" in card
    capsys.readouterr()
    assert run(tmp_path / "fail", "--fail_on_chance_teacher") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the teacher's dev accuracy"), err
    assert "--fail_on_chance_teacher" in err[0]


def test_own_loop_chance_check():
    """annealing_kd.common.api.check_teacher_logits: the same guard on a teacher's logits."""
    from annealing_kd.common.api import check_teacher_logits
    from annealing_kd.common.errors import UsageError

    labels = torch.tensor([0, 1] * 50)
    good = check_teacher_logits(nn.functional.one_hot(labels, 2).float(), labels)
    assert good == {"split": "dev", "examples": 100, "metric": "accuracy", "value": 1.0,
                    "chance": 0.5, "margin": pytest.approx(0.1), "at_chance": False,
                    "warned": False}
    constant = torch.tensor([[1.0, 0.0]]).repeat(100, 1)
    assert check_teacher_logits(constant, labels)["warned"]
    with pytest.raises(UsageError, match="dev accuracy 0.500 is not above chance.*fail_on_chance"):
        check_teacher_logits(constant, labels, fail=True)
    regression = check_teacher_logits(-labels.float()[:, None], labels.float(), "test")
    assert regression["metric"] == "pearson" and regression["at_chance"]
