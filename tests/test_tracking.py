"""--report_to: a tiny run's TensorBoard, W&B (offline) and MLflow (file store) logs read back
(tags, global steps, Phi as in results.json, the hyper-parameters beside the metrics), --resume
continuing the same tracker run, --overwrite-output-dir taking every tracker file; the flag takes
a list as HF's; a tracker that is not installed is one error line naming the extra."""

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


def expected_steps(res: dict, phases: list[str], steps_per_epoch: int) -> dict[str, int]:
    """The global step before each phase (phases in order) and at the end ("final")."""
    before, step = {}, 0
    for phase in phases:
        before[phase] = step
        step += steps_per_epoch * sum(r["phase"] == phase for r in res["epochs"])
    return {**before, "final": step}


def check_events(out, phases: list[str], metric: str, steps_per_epoch: int,
                 every: int) -> dict[str, list[tuple[int, float]]]:
    from test_cifar_pipeline import results

    res = results(out)
    ev = read_events(out / tracking.FOLDER)
    start = expected_steps(res, phases, steps_per_epoch)
    for phase in phases:
        records = [r for r in res["epochs"] if r["phase"] == phase]
        total, s0 = steps_per_epoch * len(records), start[phase]
        logged = [s0 + s for s in range(1, total + 1, every)]  # global: after earlier phases
        assert [s for s, _ in ev[f"{phase}/loss"]] == logged
        assert [s for s, _ in ev[f"{phase}/lr"]] == logged
        # per epoch: the eval metric, train loss and Phi of results.json at the epoch's last step
        at_end = [s0 + r["epoch"] * steps_per_epoch for r in records]
        assert same(ev[f"{phase}/epoch/{metric}"], [(s, r["eval"][metric]) for s, r in zip(at_end, records)])
        assert same(ev[f"{phase}/epoch/train_loss"], [(s, r["train_loss"]) for s, r in zip(at_end, records)])
        if records[0]["phi"] is None:
            assert f"{phase}/phi" not in ev
            continue
        assert same(ev[f"{phase}/epoch/phi"], [(s, r["phi"]) for s, r in zip(at_end, records)])
        # per step: the Phi of the epoch the step is in (per-epoch annealing)
        epoch_of = [records[math.ceil((s - s0) / steps_per_epoch) - 1] for s in logged]
        assert same(ev[f"{phase}/phi"], [(s, r["phi"]) for s, r in zip(logged, epoch_of)])
        assert same(ev[f"{phase}/temperature"], [(s, r["temperature"]) for s, r in zip(logged, epoch_of)])
    final, last = res["final"], start["final"]
    assert ev["final/selected_epoch"] == [(last, final["selected_epoch"])]  # at the last step
    assert same(ev[f"final/{metric}"], [(last, final["metrics"][metric])])
    # one TensorBoard run: the hyper-parameters (flattened, no JSON text) beside the scalars
    folders = {p.parent for p in (out / tracking.FOLDER).rglob("events.out.tfevents.*")}
    assert len(folders) == 1, folders
    hparams = read_hparams(folders.pop())
    assert hparams["learning_rate"] == res["config"]["learning_rate"]
    assert hparams["project_name"] == "annealing-kd" and hparams["run_name"] == "None"
    assert not any(isinstance(v, str) and v.startswith(("{", "[")) for v in hparams.values())
    nested = [k for k, v in res["config"].items() if isinstance(v, dict) and v]
    assert all(any(h.startswith(f"{k}/") for h in hparams) for k in nested)
    hparams_yml = list((out / tracking.FOLDER).rglob("hparams.yml"))
    assert hparams_yml and "learning_rate" in hparams_yml[0].read_text()
    check_owned(out)
    return ev


def read_hparams(folder) -> dict:
    """The hyper-parameters of the TensorBoard run in ``folder`` (HParams' session start)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    found = {}
    for events in folder.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(events)).Load():
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
                    for k, h in data.session_start_info.hparams.items():
                        found[k] = getattr(h, h.WhichOneof("kind"))
    return found


def check_owned(out) -> None:
    """Every tracker file is the run's (an overwrite removes it) and none is a link."""
    manifest = Manifest.read(out)
    files = [p for p in (out / tracking.FOLDER).rglob("*") if p.is_file() or p.is_symlink()]
    assert files and all(manifest.unchanged(p) for p in files), \
        [p for p in files if not manifest.unchanged(p)]


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
