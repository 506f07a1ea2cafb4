"""--report_to: a tiny run's TensorBoard, W&B (offline) and MLflow (file store) logs read back
(tags, global steps, Phi as in results.json, the hyper-parameters beside the metrics), --resume
continuing the same tracker run, --overwrite-output-dir taking every tracker file; the flag takes
a list as HF's; a tracker that is not installed is one error line naming the extra."""

from __future__ import annotations

import contextlib
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
    assert hparams["project_name"] == "annealing-kd"
    assert hparams["run_name"] == str(res["config"]["run_name"])
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


def read_wandb(path) -> list:
    """The records of a W&B ``.wandb`` file (a LevelDB-style log of protobuf ``Record`` s: a
    7-byte file header, 32 KiB blocks, each record chunk with a 7-byte header)."""
    import struct

    from wandb.proto.wandb_internal_pb2 import Record

    data, records, offset, parts = path.read_bytes(), [], 7, b""
    assert data[:4] == b":W&B"
    while offset + 7 <= len(data):
        if 32768 - offset % 32768 < 7:  # a block's tail too short for a header: padding
            offset += 32768 - offset % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
        if kind == 0:  # zero padding to the end of the block
            offset += 32768 - offset % 32768
            continue
        parts = (b"" if kind in (1, 2) else parts) + data[offset + 7:offset + 7 + length]
        offset += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            records.append(Record.FromString(parts))
    return records


def wandb_runs(out) -> list[tuple[str, dict[str, list[tuple[int, float]]], dict]]:
    """Each offline W&B run folder's (run id, key -> [(step, value)], config)."""
    import json

    runs = []
    for path in sorted((out / tracking.FOLDER / "wandb").glob("offline-run-*/run-*.wandb")):
        run_id, history, config = None, {}, {}
        for r in read_wandb(path):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                run_id = r.run.run_id
                config.update({i.key: json.loads(i.value_json) for i in r.run.config.update})
            elif kind == "config":
                config.update({i.key: json.loads(i.value_json) for i in r.config.update})
            elif kind == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                         for i in r.history.item}
                for k, v in items.items():
                    if not k.startswith("_"):
                        history.setdefault(k, []).append((r.history.step.num, v))
        runs.append((run_id, history, config))
    return runs


def mlflow_history(out) -> tuple[list, dict[str, list[tuple[int, float]]]]:
    """The runs of the run folder's MLflow store, and the metrics of the first one."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(out / tracking.FOLDER / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("annealing-kd")
    runs = client.search_runs([experiment.experiment_id])
    metrics = {k: sorted((m.step, m.value) for m in client.get_metric_history(runs[0].info.run_id, k))
               for k in runs[0].data.metrics}
    return runs, metrics


@contextlib.contextmanager
def stopped_after(epochs: int, monkeypatch):
    """Runs in the block stop (as ctrl-C) once ``epochs`` epoch records are written."""
    from annealing_kd.common.training.trainer import Trainer

    write, seen = Trainer.write_results, {"epochs": 0}

    def stopping(self, final=None):
        write(self, final)
        seen["epochs"] += 1
        if seen["epochs"] == epochs:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "write_results", stopping)
    yield
    monkeypatch.setattr(Trainer, "write_results", write)


@pytest.fixture
def offline_trackers(monkeypatch):
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    for var, value in (("WANDB_MODE", "offline"), ("WANDB_SILENT", "true"),
                       ("WANDB_ERROR_REPORTING", "false"), ("MLFLOW_DISABLE_TELEMETRY", "true"),
                       ("DO_NOT_TRACK", "1")):
        monkeypatch.setenv(var, value)
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(var, "unset")
        monkeypatch.delenv(var)  # unset now and after the test (the tracker sets the first three)


def test_wandb_and_mlflow_resume_in_the_same_tracker_run(tmp_path, monkeypatch, offline_trackers):
    """Stopped after 2 epochs (in phase 1), then resumed: W&B (offline) and MLflow (file store)
    continue the run folder's own tracker run; global steps increase across phases, final/* at
    the last; every tracker file is the run's, so --overwrite-output-dir takes the folder."""
    from test_cifar_pipeline import results, run

    out = tmp_path / "run"
    flags = ["--report-to", "wandb", "mlflow,tensorboard", "--logging-steps", "1",
             "--run-name", "tiny", "--project_name", "annealing-kd"]
    with stopped_after(2, monkeypatch):
        assert run(out, *flags) == 130
    import mlflow
    import wandb

    mlflow.end_run("KILLED")  # what the stopped process's exit does
    wandb.finish(exit_code=130)
    check_owned(out)
    assert run(out, *flags, "--resume") == 0

    res, run_id = results(out), Manifest.read(out).data["run_id"]
    phases = ["teacher", "phase1", "phase2"]
    start = expected_steps(res, phases, 2)
    ev = check_events(out, phases, "val_accuracy", 2, 1)  # TensorBoard: one folder, resumed
    w = wandb_runs(out)
    assert len(w) == 2 and {r[0] for r in w} == {run_id}  # two sessions of one W&B run
    runs, metrics = mlflow_history(out)
    assert len(runs) == 1 and runs[0].info.run_name == "tiny"  # one MLflow run, continued
    assert runs[0].data.params["learning_rate"] == "0.1"
    assert w[0][2]["learning_rate"] == 0.1 and w[0][2]["run_name"] == "tiny"
    history = {}
    for _, h, _ in w:
        for k, v in h.items():
            history.setdefault(k, []).extend(v)
    for logged in (history, metrics):
        for tag in ("teacher/loss", "phase1/loss", "phase2/loss", "phase1/epoch/val_accuracy",
                    "final/selected_epoch", "final/val_accuracy"):
            assert same(sorted(set(logged[tag])), ev[tag]), tag
    assert max(s for s, _ in metrics["phase2/loss"]) == start["final"]
    assert metrics["final/selected_epoch"] == [(start["final"], res["final"]["selected_epoch"])]
    assert not list(out.rglob("latest-run"))
    assert run(out, "--overwrite-output-dir", "--method", "scratch") == 0
    assert not [p for p in (out / tracking.FOLDER).rglob("*") if not p.is_dir()]  # all removed


@pytest.mark.parametrize("cli", ["image", "text"])
def test_report_to_takes_a_list_as_hf(tmp_path, monkeypatch, cli):
    from annealing_kd.common.errors import UsageError
    from annealing_kd.computer_vision_tasks import cli as image_cli
    from annealing_kd.NLP_glue_tasks import cli as text_cli

    monkeypatch.setattr(tracking, "_installed", lambda name: name != "trackio")
    parse = image_cli.parse_args if cli == "image" else text_cli.parse_args
    base = [] if cli == "image" else [
        "--task_name", "rte", "--output_dir", str(tmp_path / "o"), "--do_train",
        "--student_model_name_or_path", "s", "--teacher_model_name_or_path", "t"]
    for given in (["tensorboard", "mlflow"], ["tensorboard,mlflow"], ["tensorboard,", "mlflow"]):
        args = parse([*base, "--report_to", *given])
        assert tracking.trackers(args.report_to) == ["tensorboard", "mlflow"]
        assert args.run_name is None and args.project_name == "annealing-kd"
    assert tracking.trackers(parse(base).report_to) == []
    assert tracking.trackers(parse([*base, "--report_to", "all"]).report_to) == [
        "tensorboard", "wandb", "mlflow"]
    for text in ("report_to:\n- wandb\n- mlflow\n", "report_to: wandb,mlflow\n"):
        (tmp_path / "c.yaml").write_text(text)
        assert tracking.trackers(parse([str(tmp_path / "c.yaml"), *base]).report_to) == [
            "wandb", "mlflow"]
    args = parse([*base, "--run_name", "r", "--project_name", "p"])
    assert (args.run_name, args.project_name) == ("r", "p")
    for bad, why in ((["tensorboard", "none"], "none and all stand alone"),
                     (["all,wandb"], "none and all stand alone"),
                     (["tensorbord"], "tensorbord: not a tracker; choose from none, tensorboard")):
        with pytest.raises(UsageError, match=why):
            parse([*base, "--report_to", *bad])


def test_flattened_hyper_parameters():
    config = {"a": {"b": 1, "c": {"d": None}}, "e": [1, 2], "f": (0.5,), "g": {}, "h": True,
              "i": "x"}
    assert tracking.flatten(config) == {"a/b": 1, "a/c/d": "None", "e": "1,2", "f": "0.5",
                                        "h": True, "i": "x"}


def test_a_file_of_yours_in_tracking_is_never_recorded_nor_deleted(tmp_path, monkeypatch, capsys):
    """Saved into tracking/ while a run is live: not recorded (only the trackers' own folders
    are), so --overwrite-output-dir refuses with one line and the file stays."""
    from test_cifar_pipeline import run

    out = tmp_path / "run"
    with stopped_after(1, monkeypatch):
        assert run(out, "--report-to", "tensorboard", "--method", "scratch") == 130
    notes = out / tracking.FOLDER / "my_notes.txt"
    notes.write_text("mine")
    assert run(out, "--report-to", "tensorboard", "--method", "scratch", "--resume") == 0
    assert not Manifest.read(out).records(notes)
    capsys.readouterr()
    assert run(out, "--overwrite-output-dir", "--method", "scratch") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "my_notes.txt" in err and err.count("\n") == 1
    assert notes.read_text() == "mine"
