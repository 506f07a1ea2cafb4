"""--report_to: a tiny run's TensorBoard events read back (tags, steps, Phi as in results.json);
a tracker that is not installed is one error line naming the extra."""

from __future__ import annotations

import math

import pytest

from annealing_kd.common.integrations import tracking
from annealing_kd.common.run_folder import Manifest

pytest.importorskip("tensorboard")


def read_events(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events.parent))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: sorted(set(v)) for tag, v in scalars.items()}


def same(logged: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    """The same steps, and values equal up to float32 (what TensorBoard stores)."""
    return [s for s, _ in logged] == [s for s, _ in expected] and \
        [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)


def check_events(out, phases: list[str], metric: str, steps_per_epoch: int,
                 every: int) -> dict[str, list[tuple[int, float]]]:
    from test_cifar_pipeline import results

    res = results(out)
    ev = read_events(out / tracking.FOLDER)
    for phase in phases:
        records = [r for r in res["epochs"] if r["phase"] == phase]
        total = steps_per_epoch * len(records)
        logged = list(range(1, total + 1, every))
        assert [s for s, _ in ev[f"{phase}/loss"]] == logged
        assert [s for s, _ in ev[f"{phase}/lr"]] == logged
        # per epoch: the eval metric, train loss and Phi of results.json, step = epoch
        assert same(ev[f"{phase}/epoch/{metric}"], [(r["epoch"], r["eval"][metric]) for r in records])
        assert same(ev[f"{phase}/epoch/train_loss"], [(r["epoch"], r["train_loss"]) for r in records])
        if records[0]["phi"] is None:
            assert f"{phase}/phi" not in ev
            continue
        assert same(ev[f"{phase}/epoch/phi"], [(r["epoch"], r["phi"]) for r in records])
        # per step: the Phi of the epoch the step is in (per-epoch annealing)
        epoch_of = [records[math.ceil(s / steps_per_epoch) - 1] for s in logged]
        assert same(ev[f"{phase}/phi"], [(s, r["phi"]) for s, r in zip(logged, epoch_of)])
        assert same(ev[f"{phase}/temperature"], [(s, r["temperature"]) for s, r in zip(logged, epoch_of)])
    final = res["final"]
    assert ev["final/selected_epoch"] == [(0, final["selected_epoch"])]
    assert same(ev[f"final/{metric}"], [(0, final["metrics"][metric])])
    hparams = list((out / tracking.FOLDER).rglob("hparams.yml"))
    assert hparams and "learning_rate" in hparams[0].read_text()
    manifest = Manifest.read(out)  # every tracker file is the run's: an overwrite removes it
    files = [p for p in (out / tracking.FOLDER).rglob("*") if p.is_file()]
    assert files and all(manifest.unchanged(p) for p in files)
    return ev


def test_image_cli_tensorboard(tmp_path):
    from test_cifar_pipeline import run

    out = tmp_path / "run"
    assert run(out, "--report-to", "tensorboard", "--logging-steps", "1", "--teacher_epochs",
               "1") == 0
    # 64 images - 32 held out = 32... the TINY run: 2 batches of 32 per epoch
    check_events(out, ["teacher", "phase1", "phase2"], "val_accuracy", 2, 1)


@pytest.mark.parametrize("cli", ["image", "text"])
def test_a_tracker_not_installed_names_its_extra(tmp_path, capsys, monkeypatch, cli):
    from annealing_kd.computer_vision_tasks import annealing_kd_train as cifar
    from annealing_kd.NLP_glue_tasks import annealing_kd_glue as glue

    monkeypatch.setattr(tracking, "_installed", lambda name: name == "tensorboard")
    flag = "--report-to" if cli == "image" else "--report_to"
    argv = (["--dataset", "fake", "--output-dir", str(tmp_path / "o")] if cli == "image" else
            ["--task_name", "rte", "--output_dir", str(tmp_path / "o"), "--do_train",
             "--student_model_name_or_path", "s", "--teacher_model_name_or_path", "t"])
    main = cifar.main if cli == "image" else glue.main
    assert main([*argv, flag, "wandb"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {flag} wandb: wandb is not installed; pip install "
                   "'annealing-kd[wandb]'"], err
    monkeypatch.setattr(tracking, "_installed", lambda name: False)
    assert main([*argv, flag, "all"]) == 2
    assert "no tracker is installed" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert tracking.trackers("none") == []
