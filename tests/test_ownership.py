"""Issue 17: a run owns exactly what it wrote (the manifest), one run per folder (the lock),
--resume checks its inputs (fingerprints), paths apart, data sanity, one-line errors for the
listed tracebacks, and the fsync order of an epoch commit. docs/reliability.md lists what each
test proves."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from glue_fixtures import tiny_bert, write_glue
from PIL import Image

import annealing_kd.common.run_folder.checkpoint as ckpt
from annealing_kd.common.run_folder import MANIFEST, Manifest
from annealing_kd.computer_vision_tasks import annealing_kd_train as cifar
from annealing_kd.NLP_glue_tasks import annealing_kd_glue as glue

CIFAR = ["--dataset", "fake", "--train-subset", "32", "--val-size", "16", "--batch-size", "16",
         "--num-workers", "0", "--device", "cpu", "--teacher", "resnet8", "--student", "plane2",
         "--teacher_epochs", "1", "--student_epochs_p1", "2", "--student_epochs_p2", "1",
         "--max_temperature", "2", "--student-epochs", "2", "--deterministic"]


def glue_args(ws: Path, out: Path, *extra: str, method: str = "kd") -> list[str]:
    return ["--task_name", "rte", "--data_dir", str(ws / "glue" / "RTE"), "--output_dir", str(out),
            "--logits_cache_dir", str(ws / "cache"), "--student_model_name_or_path",
            str(ws / "student"), "--teacher_model_name_or_path", str(ws / "teacher"),
            "--per_gpu_train_batch_size", "8", "--no_cuda", "--num_train_epochs", "2",
            "--method", method, "--do_train", *extra]


def tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (the lock file aside: it names its last holder)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".annealing-kd.lock"}


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def write_images(root: Path, classes=("cat", "dog"), n: int = 6) -> Path:
    for c, colour in zip(classes, [(200, 30, 30), (30, 200, 30), (30, 30, 200)], strict=False):
        (root / "train" / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (8, 8), tuple(min(255, v + 9 * i) for v in colour)).save(
                root / "train" / c / f"{i}.png")
    return root


@pytest.fixture(autouse=True)
def _quiet_bars(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """GLUE data and tiny BERTs, a CIFAR teacher checkpoint, a finished run of each CLI."""
    ws = tmp_path_factory.mktemp("own")
    write_glue(ws / "glue", "RTE", 24, 12, 6)
    tiny_bert(ws / "teacher", num_labels=2, seed=1)
    tiny_bert(ws / "student", num_labels=None, seed=2)
    from annealing_kd.computer_vision_tasks import models

    ckpt.save_weights(models.create_model("resnet8", 10).state_dict(), ws / "teacher.safetensors")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        assert cifar.main([*CIFAR, "--method", "annealing", "--teacher-checkpoint",
                           str(ws / "teacher.safetensors"), "--output-dir",
                           str(ws / "done_cifar")]) == 0
        _reset()
        assert glue.main(glue_args(ws, ws / "done_glue", "--num_train_epochs", "1")) == 0
        _reset()
    finally:
        os.environ.pop("TQDM_DISABLE")
        torch.use_deterministic_algorithms(False)
    return ws


def _reset() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


# ---- 1. the manifest: a run owns exactly what it wrote ------------------------------------------
def test_every_file_of_a_finished_run_is_in_its_manifest(ws):
    for run in ("done_cifar", "done_glue"):
        m = Manifest.read(ws / run)
        assert m is not None and m.config is not None and len(m.data["run_id"]) == 32
        files = {p.relative_to(ws / run).as_posix() for p in (ws / run).rglob("*") if p.is_file()}
        files -= {MANIFEST, ".annealing-kd.lock"}
        assert files == set(m.files), files ^ set(m.files)
        assert all(m.unchanged(ws / run / f) for f in files)
        entry = m.files["results.json"]
        assert entry["sha256"] == hashlib.sha256((ws / run / "results.json").read_bytes()).hexdigest()


@pytest.mark.parametrize("cli,name", [("cifar", "student/notes.txt"),
                                      ("cifar", "phase1/analysis.ipynb"),
                                      ("cifar", ".draft.tmp"), ("glue", "student/notes.txt"),
                                      ("glue", ".draft.tmp")])
def test_overwrite_refuses_any_file_it_did_not_write(ws, tmp_path, capsys, cli, name):
    out = tmp_path / "run"
    shutil.copytree(ws / f"done_{cli}", out)
    (out / name).write_text("mine\n")
    before = tree(out)
    argv = ([*CIFAR, "--method", "scratch", "--output-dir", str(out), "--overwrite-output-dir"]
            if cli == "cifar" else glue_args(ws, out, "--overwrite_output_dir"))
    assert (cifar.main if cli == "cifar" else glue.main)(argv) == 2
    assert f"{out / name} was not written by annealing-kd" in one_error(capsys)
    assert tree(out) == before


def test_overwrite_removes_exactly_the_manifests_files_and_emptied_folders(ws, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(ws / "done_cifar", out)
    (out / "mine").mkdir()  # a folder of the user's, empty: not ours, kept
    assert cifar.main([*CIFAR, "--method", "scratch", "--output-dir", str(out),
                       "--overwrite-output-dir"]) == 0
    assert not (out / "phase1").exists() and not (out / "phase2").exists()  # the old run's
    assert (out / "mine").is_dir()
    m = Manifest.read(out)
    assert m.data["run_id"] != Manifest.read(ws / "done_cifar").data["run_id"]
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files - {MANIFEST, ".annealing-kd.lock"} == set(m.files)


def test_a_file_changed_after_the_run_wrote_it_refuses_overwrite(ws, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(ws / "done_cifar", out)
    results = json.loads((out / "results.json").read_text())
    results["note"] = "edited by hand"
    (out / "results.json").write_text(json.dumps(results))
    before = tree(out)
    assert cifar.main([*CIFAR, "--output-dir", str(out), "--overwrite-output-dir"]) == 2
    assert "results.json was changed after annealing-kd wrote it" in one_error(capsys)
    assert tree(out) == before


def test_a_results_json_with_a_config_is_no_claim_of_ownership(ws, tmp_path, capsys):
    """Another tool's run folder: results.json with a config key and checkpoints, no manifest.
    Neither overwrite nor resume touches it."""
    out = tmp_path / "other"
    shutil.copytree(ws / "done_cifar", out)
    (out / MANIFEST).unlink()
    results = json.loads((out / "results.json").read_text())
    results["final"] = None
    (out / "results.json").write_text(json.dumps(results))
    before = tree(out)
    for flag in ("--overwrite-output-dir", "--resume"):
        assert cifar.main([*CIFAR, "--method", "annealing", "--teacher-checkpoint",
                           str(ws / "teacher.safetensors"), "--output-dir", str(out), flag]) == 2
        assert "holds no run of annealing-kd" in one_error(capsys)
        assert tree(out) == before


def test_eval_and_predict_never_overwrite_a_users_file(ws, tmp_path, capsys):
    student = ws / "done_glue" / "student"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "eval_results.json").write_text('{"mine": true}\n')
    argv = ["--task_name", "rte", "--data_dir", str(ws / "glue" / "RTE"), "--no_cuda",
            "--student_model_name_or_path", str(student), "--output_dir", str(mine)]
    assert glue.main([*argv, "--do_eval"]) == 2
    assert "eval_results.json exists and was not written by" in one_error(capsys)
    assert (mine / "eval_results.json").read_text() == '{"mine": true}\n'
    (mine / "predictions").mkdir()
    (mine / "predictions" / "RTE.tsv").write_text("mine\n")
    assert glue.main([*argv, "--do_predict"]) == 2
    assert "RTE.tsv exists and was not written by" in one_error(capsys)
    # into a folder of ours: written, recorded, and written again
    ours = tmp_path / "ours"
    for _ in range(2):
        assert glue.main([*argv[:-1], str(ours), "--do_eval", "--do_predict"]) == 0
    m = Manifest.read(ours)
    assert {"eval_results.json", "predictions/RTE.tsv"} <= set(m.files)


def test_report_only_never_overwrites_a_users_report(tmp_path, capsys):
    from reproduce import run_table

    out = tmp_path / "table"
    out.mkdir()
    (out / "fmnist-gap.md").write_text("my notes\n")
    argv = ["--table", "fmnist-gap", "--seeds", "1", "--out", str(out), "--report-only"]
    assert run_table.main(argv) == 2
    assert "fmnist-gap.md exists and was not written by run_table" in one_error(capsys)
    assert (out / "fmnist-gap.md").read_text() == "my notes\n"
    assert not (out / "fmnist-gap.png").exists()  # nothing written before the check
    (out / "fmnist-gap.md").unlink()
    assert run_table.main(argv) == 0 and run_table.main(argv) == 0  # its own: rewritten
    assert {"fmnist-gap.md", "fmnist-gap.json", "fmnist-gap.png"} <= set(Manifest.read(out).files)


def test_report_only_never_overwrites_an_edited_report_nor_leaves_a_manifest(tmp_path, capsys):
    """Issue 33: a report the user edited after run_table wrote it is refused, unchanged; a
    refused --report-only into a user's folder leaves no manifest behind."""
    from reproduce import run_table

    user = tmp_path / "user"
    user.mkdir()
    (user / "fmnist-gap.png").write_text("my chart")
    argv = ["--table", "fmnist-gap", "--seeds", "1", "--report-only"]
    assert run_table.main([*argv, "--out", str(user)]) == 2
    assert "fmnist-gap.png exists and was not written by run_table" in one_error(capsys)
    assert sorted(p.name for p in user.iterdir()) == ["fmnist-gap.png"]
    out = tmp_path / "table"
    assert run_table.main([*argv, "--out", str(out)]) == 0
    capsys.readouterr()
    with open(out / "fmnist-gap.md", "a") as f:
        f.write("my conclusion\n")
    edited = (out / "fmnist-gap.md").read_text()
    assert run_table.main([*argv, "--out", str(out)]) == 2
    assert "fmnist-gap.md was changed after run_table wrote it" in one_error(capsys)
    assert (out / "fmnist-gap.md").read_text() == edited


# ---- 2. paths apart --------------------------------------------------------------------------
def test_output_inside_an_input_and_input_inside_the_output_are_refused(ws, tmp_path, capsys):
    data = write_images(tmp_path / "data")
    own = ["--dataset", "imagefolder", "--dataset-dir", str(data), "--val-size", "2",
           "--method", "scratch", "--student", "plane2", "--student-epochs", "1",
           "--batch-size", "4", "--num-workers", "0", "--device", "cpu"]
    before = tree(data)
    assert cifar.main([*own, "--output-dir", str(data / "run")]) == 2
    assert "is inside --dataset-dir" in one_error(capsys)
    assert tree(data) == before and not (data / "run").exists()
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(ws / "teacher.safetensors", out / "teacher.safetensors")
    assert cifar.main([*CIFAR, "--method", "kd", "--teacher-checkpoint",
                       str(out / "teacher.safetensors"), "--output-dir", str(out)]) == 2
    assert "is inside the output directory" in one_error(capsys)
    assert glue.main(glue_args(ws, tmp_path / "g", "--logits_cache_dir",
                               str(tmp_path / "g" / "cache"))) == 2
    assert "--logits_cache_dir" in one_error(capsys)


# ---- 3. one run per folder -------------------------------------------------------------------
def _hold(out: Path) -> tuple[int, int]:
    """Fork a CIFAR run on ``out`` that pauses after committing its first epoch until killed;
    return its pid and the read end of a pipe that gets one byte once it got there."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a real run
        try:
            os.close(r)
            import annealing_kd.common.training.trainer

            real = annealing_kd.common.training.trainer.commit_epoch

            def commit(*a, **k):
                real(*a, **k)
                os.write(w, b"x")
                time.sleep(600)

            annealing_kd.common.training.trainer.commit_epoch = commit
            cifar.main([*CIFAR, "--method", "scratch", "--output-dir", str(out)])
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"x"
    return pid, r


def test_a_second_run_on_a_folder_in_use_is_refused_then_resume_after_a_kill_works(tmp_path,
                                                                                   capsys):
    out = tmp_path / "run"
    _reset()
    pid, r = _hold(out)
    try:
        for extra in ([], ["--resume"], ["--overwrite-output-dir"]):
            assert cifar.main([*CIFAR, "--method", "scratch", "--output-dir", str(out),
                               *extra]) == 2
            line = one_error(capsys)
            assert f"is in use by another run (pid {pid} on host {platform.node()}" in line, line
        from annealing_kd.common.run_folder import lock as run_lock

        assert run_lock.holder(out).startswith(f"pid {pid} on host")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
    _reset()
    # killed after its first epoch: the OS released the lock, --resume continues it
    assert cifar.main([*CIFAR, "--method", "scratch", "--output-dir", str(out), "--resume"]) == 0
    assert json.loads((out / "results.json").read_text())["final"]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_lock_file_deleted_under_a_run_still_refuses_a_second_run(tmp_path, capsys, how):
    """Issue 33: the folder itself is locked, not only the file that names the holder."""
    from annealing_kd.common.run_folder import LOCK

    out = tmp_path / "run"
    _reset()
    pid, r = _hold(out)
    try:
        (out / LOCK).unlink()
        if how == "replaced":
            (out / LOCK).write_text("pid 1 on host elsewhere\n")
        for extra in (["--resume"], ["--overwrite-output-dir"]):
            assert cifar.main([*CIFAR, "--method", "scratch", "--output-dir", str(out),
                               *extra]) == 2
            assert "is in use by another run" in one_error(capsys)
        assert (out / "student" / "committed").is_file()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)


# ---- 4. --resume checks the inputs ----------------------------------------------------------
def _stop_after_first_epoch(monkeypatch):
    """The run stops (as Ctrl-C would) once its first epoch is committed."""
    import annealing_kd.common.training.trainer

    real, calls = annealing_kd.common.training.trainer.commit_epoch, []

    def commit(*a, **k):
        real(*a, **k)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(annealing_kd.common.training.trainer, "commit_epoch", commit)
    return lambda: monkeypatch.setattr(annealing_kd.common.training.trainer, "commit_epoch", real)


def test_own_images_resume_with_the_same_command_and_refuse_changed_data(tmp_path, monkeypatch,
                                                                         capsys):
    data = write_images(tmp_path / "data")
    argv = ["--dataset", "imagefolder", "--dataset-dir", str(data), "--val-size", "2",
            "--method", "scratch", "--student", "plane2", "--student-epochs", "2",
            "--batch-size", "4", "--num-workers", "0", "--device", "cpu", "--output-dir",
            str(tmp_path / "run")]
    undo = _stop_after_first_epoch(monkeypatch)
    assert cifar.main(argv) == 130
    undo()
    capsys.readouterr()
    # a changed image, then the same data in another folder: both refused, one line each
    img = data / "train" / "cat" / "0.png"
    original = img.read_bytes()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(img)
    assert cifar.main([*argv, "--resume"]) == 2
    assert "--resume: --dataset-dir changed since this run started (its contents changed)" in \
        one_error(capsys)
    img.write_bytes(original)
    shutil.copytree(data, tmp_path / "copy")
    moved = [str(tmp_path / "copy") if a == str(data) else a for a in argv]
    assert cifar.main([*moved, "--resume"]) == 2
    assert f"--dataset-dir changed since this run started (was {data.resolve()}" in one_error(capsys)
    # the command that started it resumes it: values derived from the data are not flags
    assert cifar.main([*argv, "--resume"]) == 0
    config = json.loads((tmp_path / "run" / "results.json").read_text())["config"]
    assert config["image_size"] is None and config["derived"]["image_size"] == 8
    assert config["inputs"]["dataset_dir"]["path"] == str(data.resolve())


def test_resume_refuses_a_changed_file_of_a_dataset_that_no_list_names(tmp_path, monkeypatch,
                                                                        capsys):
    """A dataset added to data.py's registry (no other list names it) is fingerprinted from
    the files its loader opened: a changed file refuses --resume; a file beside them, never
    opened, does not."""
    import numpy as np

    from annealing_kd.computer_vision_tasks import data

    spec = data.Spec(2, 3, 8, (0.5,) * 3, (0.25,) * 3)
    root = tmp_path / "npz"
    root.mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        np.savez(root / f"{split}.npz", x=rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8),
                 y=np.arange(16) % 2)
    (root / "notes.txt").write_text("not data")
    real = data.load_split

    def load_split(name, folder, train, transform):
        if name != "npz":
            return real(name, folder, train, transform)
        arrays = np.load(Path(folder) / ("train.npz" if train else "test.npz"))
        return data.ArrayImages(arrays["x"], arrays["y"], transform)

    monkeypatch.setitem(data.DATASETS, "npz", spec)
    monkeypatch.setattr(data, "load_split", load_split)
    argv = ["--dataset", "npz", "--dataset-dir", str(root), "--val-size", "4", "--method",
            "scratch", "--student", "plane2", "--student-epochs", "2", "--batch-size", "4",
            "--num-workers", "0", "--device", "cpu", "--output-dir", str(tmp_path / "run")]
    undo = _stop_after_first_epoch(monkeypatch)
    assert cifar.main(argv) == 130
    undo()
    capsys.readouterr()
    original = (root / "test.npz").read_bytes()
    np.savez(root / "test.npz", x=np.zeros((16, 8, 8, 3), np.uint8), y=np.arange(16) % 2)
    assert cifar.main([*argv, "--resume"]) == 2
    assert "--resume: --dataset-dir changed since this run started (its contents changed)" in \
        one_error(capsys)
    (root / "test.npz").write_bytes(original)
    (root / "notes.txt").write_text("other notes")
    assert cifar.main([*argv, "--resume"]) == 0
    inputs = json.loads((tmp_path / "run" / "results.json").read_text())["config"]["inputs"]
    assert inputs["dataset_dir"]["path"] == str(root.resolve())
    assert inputs["dataset_dir"]["files"] == 2  # train.npz and test.npz: what was opened


def test_a_saved_hf_dataset_is_fingerprinted_with_its_memory_mapped_arrow_files(tmp_path):
    """Arrow files are memory-mapped (no 'open' event): the loader names them (``note``)."""
    import datasets
    import numpy as np

    from annealing_kd.common.cli.inputs import Opened
    from annealing_kd.computer_vision_tasks import own_data

    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=["a", "b"])})
    ds = datasets.Dataset.from_dict({"image": [Image.fromarray(np.full((8, 8, 3), i, np.uint8))
                                               for i in range(4)], "label": [0, 1, 0, 1]},
                                    features=features)
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "ds"))
    with Opened(tmp_path / "ds") as opened:
        own_data.hf_dataset(f"hf:{tmp_path / 'ds'}", None, None)
    assert "train/data-00000-of-00001.arrow" in opened.files


def test_resume_refuses_a_replaced_teacher_checkpoint_or_folder(ws, tmp_path, monkeypatch, capsys):
    teacher = tmp_path / "teacher.safetensors"
    shutil.copy(ws / "teacher.safetensors", teacher)
    argv = [*CIFAR, "--method", "kd", "--teacher-checkpoint", str(teacher), "--output-dir",
            str(tmp_path / "run")]
    undo = _stop_after_first_epoch(monkeypatch)
    assert cifar.main(argv) == 130
    capsys.readouterr()
    from annealing_kd.computer_vision_tasks import models

    ckpt.save_weights(models.create_model("resnet8", 10).state_dict(), teacher)  # retrained
    assert cifar.main([*argv, "--resume"]) == 2
    assert "--teacher-checkpoint changed since this run started" in one_error(capsys)
    # GLUE: a teacher folder whose weights were replaced
    t = tmp_path / "glue_teacher"
    shutil.copytree(ws / "teacher", t)
    gargv = glue_args(ws, tmp_path / "g", "--teacher_model_name_or_path", str(t),
                      "--logits_cache_dir", str(tmp_path / "cache"))
    capsys.readouterr()
    _reset()
    undo()
    undo = _stop_after_first_epoch(monkeypatch)
    assert glue.main(gargv) == 130
    capsys.readouterr()
    undo()
    tiny_bert(t, num_labels=2, seed=7)
    capsys.readouterr()
    _reset()
    assert glue.main([*gargv, "--resume"]) == 2
    assert "--teacher_model_name_or_path changed since this run started" in one_error(capsys)


# ---- 5. data sanity ----------------------------------------------------------------------------
def _own(data: Path, out: Path) -> list[str]:
    return ["--dataset", "imagefolder", "--dataset-dir", str(data), "--val-size", "2",
            "--method", "scratch", "--student", "plane2", "--student-epochs", "1",
            "--batch-size", "4", "--num-workers", "0", "--device", "cpu", "--output-dir", str(out)]


def test_one_class_is_refused_in_both_clis(tmp_path, capsys):
    data = write_images(tmp_path / "data", classes=("cat",))
    assert cifar.main(_own(data, tmp_path / "run")) == 2
    assert "one class folder ('cat'); a classifier needs at least two" in one_error(capsys)
    (tmp_path / "train.csv").write_text("text,label\n" + "".join(f"good {i},pos\n" for i in range(8)))
    (tmp_path / "dev.csv").write_text("text,label\ngood,pos\nbad,pos\n")
    ws = tmp_path / "ws"
    tiny_bert(ws / "student", num_labels=None, seed=2)
    capsys.readouterr()
    assert glue.main(["--train_file", str(tmp_path / "train.csv"), "--validation_file",
                      str(tmp_path / "dev.csv"), "--student_model_name_or_path", str(ws / "student"),
                      "--method", "finetune", "--do_train", "--no_cuda", "--output_dir",
                      str(tmp_path / "g")]) == 2
    assert "has a single label" in one_error(capsys)


def test_symlinks_stay_in_the_dataset_a_loop_is_refused_repeats_are_warned(tmp_path, capsys):
    data = write_images(tmp_path / "data")
    outside = write_images(tmp_path / "elsewhere")
    (data / "train" / "cat" / "far").symlink_to(outside / "train" / "dog")  # leads out
    (data / "train" / "cat" / "twin.png").symlink_to(data / "train" / "dog" / "0.png")  # repeat
    from annealing_kd.computer_vision_tasks.folder_scan import scan

    paths, labels, classes = scan(data, "train", None)
    err = capsys.readouterr().err
    assert not any("elsewhere" in p for p in paths) and len(paths) == 13
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(x.startswith("warning: ") for x in lines), err
    assert "1 links in" in lines[0] and "lead out of the dataset folder" in lines[0]
    assert "appear under two classes" in lines[1] and "twin.png" in lines[1]
    (data / "train" / "dog" / "loop").symlink_to(data / "train")
    assert cifar.main(_own(data, tmp_path / "run")) == 2
    assert "symlink loop in the dataset" in one_error(capsys)


# ---- 6. the listed tracebacks, and one line without library logs above it ------------------------
def test_disk_full_while_copying_the_final_student(ws, tmp_path, monkeypatch, capsys):
    """Links fail (another file system) and the copy of student/last.safetensors finds the
    disk full: one line, no OSError traceback."""
    real_copy = shutil.copyfile

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def copy(src, dst, *a, **k):
        if Path(dst).parent.name == "student" and Path(dst).name.startswith(".last."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_copy(src, dst, *a, **k)

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(ckpt.shutil, "copyfile", copy)
    out = tmp_path / "run"
    assert cifar.main([*CIFAR, "--method", "annealing", "--teacher-checkpoint",
                       str(ws / "teacher.safetensors"), "--output-dir", str(out)]) == 2
    line = one_error(capsys)
    assert line.startswith(f"error: could not write {out}/student/last.safetensors (No space left")
    assert "free space" in line
    assert not list(out.rglob("*.akd.tmp"))


def test_glue_sequence_longer_than_the_models_positions(ws, tmp_path, capsys):
    assert glue.main(glue_args(ws, tmp_path / "run", "--max_seq_length", "129")) == 2
    assert "--max_seq_length 129 exceeds the 128 positions of the" in one_error(capsys)


def test_run_table_missing_python_and_output_paths_that_are_files(tmp_path, capsys):
    from demo import run_demo
    from reproduce import run_table

    assert run_table.main(["--table", "fmnist-gap", "--seeds", "1", "--out", str(tmp_path / "t"),
                           "--python", str(tmp_path / "no-python")]) == 2
    assert "--python" in one_error(capsys)
    (tmp_path / "a_file").write_text("x")
    assert run_table.main(["--table", "fmnist-gap", "--out", str(tmp_path / "a_file"),
                           "--report-only"]) == 2
    assert "is a file" in one_error(capsys)
    assert run_demo.main(["--skip-images", "--skip-text", "--out", str(tmp_path / "a_file")]) == 2
    assert "is a file" in one_error(capsys)
    assert glue.main(["--task_name", "rte", "--data_dir", "x", "--output_dir",
                      str(tmp_path / "a_file"), "--do_eval", "--no_cuda",
                      "--student_model_name_or_path", "x"]) == 2
    assert "is a file" in one_error(capsys)


def test_an_error_after_the_models_load_has_no_library_log_above_it(ws, tmp_path):
    """A separate process (transformers' log handler writes to the stderr it found at import):
    the student is a base model, so transformers reports its new head while loading; an absurd
    learning rate then makes the loss non-finite in the first epoch. That error is the only line."""
    env = {**os.environ, "PYTHONPATH": str(Path(glue.__file__).resolve().parents[1]),
           "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, glue.__file__, *glue_args(ws, tmp_path / "run", "--method",
                                                      "finetune", "--learning_rate", "1e30")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: student epoch 1: the training loss is not finite")


def test_wrong_advice_fixed_and_a_latin1_csv_keeps_its_cause(ws, tmp_path, capsys):
    (tmp_path / "train.csv").write_bytes("text,label\ncaf\xe9,a\nb,b\n".encode("latin-1"))
    (tmp_path / "dev.csv").write_text("text,label\nx,a\ny,b\n")
    (tmp_path / "a_file").write_text("x")
    base = ["--train_file", str(tmp_path / "train.csv"), "--validation_file",
            str(tmp_path / "dev.csv"), "--student_model_name_or_path", str(ws / "student"),
            "--method", "finetune", "--do_train", "--no_cuda", "--output_dir", str(tmp_path / "o")]
    assert glue.main(base) == 2
    line = one_error(capsys)
    assert "train.csv is not UTF-8 text (" in line and "UTF" in line.split("(", 1)[1].upper(), line
    assert glue.main([*base, "--cache_dir", str(tmp_path / "a_file" / "x")]) == 2
    line = one_error(capsys)
    assert line.startswith("error: --cache_dir") and "--train_file" not in line
    assert glue.main(glue_args(ws, tmp_path / "g", "--logits_cache_dir",
                               str(tmp_path / "a_file"))) == 2
    line = one_error(capsys)
    assert line.startswith("error: --logits_cache_dir") and "free space" not in line


# ---- 7. durability: the fsync order of an epoch commit (strace) ---------------------------------
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_epoch_commit_fsyncs_files_and_folder_before_the_pointer_and_the_folder_after(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(cifar.__file__).resolve().parents[1]),
           "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    log, out = tmp_path / "strace.log", tmp_path / "run"
    cmd = [sys.executable, cifar.__file__, *CIFAR, "--method", "scratch", "--output-dir", str(out)]
    traced = subprocess.run(["strace", "-f", "-qq", "-y", "-o", str(log), "-e",
                             "trace=fsync,fdatasync,rename,renameat,renameat2", *cmd],
                            env=env, capture_output=True, text=True, timeout=600)
    if "ptrace" in traced.stderr.lower():
        pytest.skip("ptrace is not allowed here")
    assert traced.returncode == 0, traced.stderr[-2000:]
    events = []  # ("fsync", path) / ("rename", target)
    for line in log.read_text().splitlines():
        if "fsync(" in line and "<" in line:
            events.append(("fsync", line.split("<", 1)[1].split(">", 1)[0]))
        elif "rename" in line and "= 0" in line:
            events.append(("rename", line.rsplit('"', 2)[-2]))
    pdir = str(out / "student")
    pointers = [i for i, e in enumerate(events) if e == ("rename", f"{pdir}/committed")]
    assert len(pointers) == 2  # two epochs
    for n, i in enumerate(pointers, start=1):
        edir = f"{pdir}/epoch-{n:04d}"
        before = [p for kind, p in events[:i] if kind == "fsync"]
        for name in ("last.safetensors", "state.pt"):  # the epoch's files, as temporaries
            assert any(p.startswith(f"{edir}/.{name}.") for p in before), name
        assert any(p.startswith(f"{pdir}/.committed.") for p in before)  # the pointer's content
        renamed = [j for j, e in enumerate(events[:i]) if e[0] == "rename"  # into place
                   and e[1].startswith(f"{edir}/") and not Path(e[1]).name.startswith(".")]
        synced = [j for j, e in enumerate(events[:i]) if e == ("fsync", edir)]
        assert renamed and synced and max(renamed) < min(synced), "epoch folder fsync'ed last"
        nxt = pointers[n] if n < len(pointers) else len(events)
        assert ("fsync", pdir) in events[i + 1:nxt], "the pointer's folder after the pointer"
        manifest = [j for j, e in enumerate(events[:i]) if e == ("rename", f"{out}/{MANIFEST}")]
        assert manifest and max(manifest) < min(renamed), "recorded before the files appear"


def test_a_refused_folder_keeps_nothing_of_ours(tmp_path, capsys):
    """A user's folder that a CLI or the demo refuses gets no lock file (nor anything else); a
    lock file that was there before stays."""
    from demo import run_demo

    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    assert cifar.main(["--dataset", "fake", "--output-dir", str(user), "--device", "cpu"]) == 2
    assert "holds no run" in capsys.readouterr().err
    assert run_demo.main(["--skip-images", "--skip-text", "--out", str(user)]) == 2
    assert "no earlier output of demo" in capsys.readouterr().err
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]
    from annealing_kd.common.run_folder import LOCK

    (user / LOCK).write_text("")  # not ours to remove: it was there before
    assert cifar.main(["--dataset", "fake", "--output-dir", str(user), "--device", "cpu"]) == 2
    assert (user / LOCK).exists()


def test_an_output_folder_that_refuses_keeps_the_lock_its_caller_holds(tmp_path):
    """OutputFolder lets go only of a lock it took: a refusal inside a folder its caller locked
    leaves that lock (and its file) held."""
    from annealing_kd.common.errors import UsageError
    from annealing_kd.common.run_folder import OutputFolder
    from annealing_kd.common.run_folder import lock as run_lock

    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    run_lock.acquire(user)
    try:
        with pytest.raises(UsageError):
            OutputFolder(user, "demo", replace=True)
        assert run_lock.holds(user) and (user / run_lock.LOCK).exists()
    finally:
        run_lock.release(user)
    assert sorted(p.name for p in user.iterdir()) == [run_lock.LOCK, "notes.txt"]
