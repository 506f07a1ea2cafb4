"""The CIFAR pipeline end to end on tiny data: every method, selection, teacher checkpoints,
resume, errors, the original flags, and a 2-process DDP run."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from annealing_kd.common.training.trainer import Trainer
from annealing_kd.computer_vision_tasks import data, models
from annealing_kd.computer_vision_tasks.annealing_kd_train import main
from annealing_kd.computer_vision_tasks.cli import parse_args

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "fake", "--train-subset", "64", "--val-size", "32", "--batch-size", "32",
        "--num-workers", "0", "--device", "cpu", "--teacher", "resnet8", "--student", "plane2",
        "--teacher_epochs", "1", "--student_epochs_p1", "2", "--student_epochs_p2", "1",
        "--max_temperature", "2", "--student-epochs", "1"]


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def run(out: Path, *extra: str) -> int:
    return main([*TINY, "--output-dir", str(out), *extra])


@pytest.mark.parametrize("method,phases", [
    ("scratch", ["student"]),
    ("kd", ["teacher", "student"]),
    ("takd", ["teacher", "assistant", "student"]),
    ("annealing", ["teacher", "phase1", "phase2"]),
])
def test_every_method_end_to_end(tmp_path, method, phases, capsys):
    out = tmp_path / method
    extra = {"takd": ["--assistant", "plane4", "--assistant-epochs", "1"],
             "kd": ["--amp", "bf16", "--channels-last"]}.get(method, [])
    assert run(out, "--method", method, *extra) == 0
    r = results(out)
    assert [e["phase"] for e in r["epochs"]] == [
        p for p in phases for _ in range({"teacher": 1, "phase1": 2}.get(p, 1))]
    final = r["final"]
    assert final["selected_on"] == "val" and final["selected_by"] == "val_accuracy"
    assert final["selected_phase"] in phases and final["selected_phase"] != "teacher"
    assert 0 <= final["metrics"]["test_accuracy"] <= 1
    assert r["config"]["method"] == method and r["config"]["val_images"] == 32
    # the saved student is the selected epoch's checkpoint
    best = load_file(out / "student" / "best.safetensors")
    selected = load_file(out / final["selected_phase"] / "best.safetensors")
    assert all(torch.equal(best[k], selected[k]) for k in best)
    assert (out / "student" / "last.safetensors").is_file()
    models.create_model("plane2", 10).load_state_dict(best)
    for name in ("metrics.jsonl", "curves.png"):
        assert (out / name).is_file()
    if method == "scratch":
        assert "teacher" not in r and not (out / "teacher").exists()
    else:
        assert 0 <= r["teacher"]["test_accuracy"] <= 1 and r["teacher"]["model"] == "resnet8"
        assert (out / "teacher" / "best.safetensors").is_file()
    if method == "annealing":
        assert [e["phi"] for e in r["epochs"][1:4]] == [0.5, 1.0, None]
        # each model its own schedule: ResNet teacher lr/100 after its 2 steps; plane CNN lr/10
        assert r["epochs"][0]["lr"] == pytest.approx(0.1 * 0.01)
        assert [e["lr"] for e in r["epochs"][1:]] == pytest.approx([0.01] * 3)
    table = capsys.readouterr().out
    assert "student selected:" in table and "32 held-out training images" in table


def test_val_size_0_selects_on_test_and_says_so(tmp_path):
    out = tmp_path / "run"
    assert run(out, "--method", "scratch", "--val-size", "0", "--learning_rate", "0.3") == 0
    r = results(out)
    assert r["epochs"][0]["lr"] == pytest.approx(0.03)  # --learning-rate honoured (plane: lr/10)
    final = r["final"]
    assert final["selected_on"] == "test" and final["selected_by"] == "test_accuracy"
    assert r["config"]["val_images"] == 0
    chosen = r["epochs"][final["selected_epoch"] - 1]["eval"]["test_accuracy"]
    assert final["metrics"]["test_accuracy"] == chosen


def test_teacher_frozen_in_inference_mode_and_absent_from_phase2(tmp_path, monkeypatch):
    calls: list[tuple[str | None, bool, bool]] = []
    current: dict[str, str | None] = {"phase": None}
    fit = Trainer.fit

    def tracking_fit(self, model, phase, loader, batches):
        current["phase"] = phase.name
        try:
            return fit(self, model, phase, loader, batches)
        finally:
            current["phase"] = None

    create = models.create_model

    def create_with_hook(name, *args, **kwargs):
        model = create(name, *args, **kwargs)
        if name == "resnet8":  # the teacher
            model.register_forward_hook(lambda m, i, o: calls.append(
                (current["phase"], torch.is_inference_mode_enabled(), m.training)))
        return model

    monkeypatch.setattr(Trainer, "fit", tracking_fit)
    monkeypatch.setattr(models, "create_model", create_with_hook)
    assert run(tmp_path / "run") == 0
    in_phases = [c for c in calls if c[0] in ("phase1", "phase2")]
    assert in_phases and all(c[0] == "phase1" for c in in_phases)  # never in phase 2
    assert all(inference and not training for _, inference, training in in_phases)


def test_original_teacher_checkpoint(tmp_path):
    torch.manual_seed(1)
    teacher = models.create_model("resnet8", 10)
    ckpt = tmp_path / "teacher_resnet8_cifar10_best_checkpoint.tar"
    torch.save({"model_state_dict": teacher.state_dict(), "optimizer_state_dict": {}, "epoch": 3},
               ckpt)
    out = tmp_path / "run"
    assert run(out, "--method", "kd", "--teacher-checkpoint", str(ckpt), "--val-size", "0") == 0
    r = results(out)
    assert r["teacher"]["source"] == str(ckpt) and not (out / "teacher").exists()
    # the reported accuracy is the loaded teacher's, on the test set
    splits = data.make_splits("fake", ".", 0, 64, 20)
    xs, ys = zip(*(splits.test[i] for i in range(len(splits.test))), strict=True)
    with torch.inference_mode():
        acc = (teacher.eval()(torch.stack(xs)).argmax(1) == torch.tensor(ys)).float().mean().item()
    assert r["teacher"]["test_accuracy"] == pytest.approx(acc, abs=1e-6)
    # our own safetensors teacher works as well
    out2 = tmp_path / "run2"
    sft = tmp_path / "run" / "student" / "best.safetensors"
    assert run(out2, "--method", "kd", "--teacher", "plane2", "--teacher-checkpoint", str(sft)) == 0


@pytest.mark.parametrize("arch,classes,match", [
    ("resnet20", 10, "does not fit --teacher resnet8 with 10 classes.*72 unexpected"),
    ("resnet8", 100, r"has 100 classes \(fc.weight\) but the dataset has 10"),
])
def test_teacher_checkpoint_that_does_not_fit(tmp_path, capsys, arch, classes, match):
    ckpt = tmp_path / "t.pt"
    torch.save({"model_state_dict": models.create_model(arch, classes).state_dict()}, ckpt)
    assert run(tmp_path / "run", "--teacher-checkpoint", str(ckpt)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert re.search(match, err), err


def test_pickled_whole_model_is_refused(tmp_path, capsys):
    ckpt = tmp_path / "model.pt"
    torch.save(models.create_model("resnet8", 10), ckpt)  # unsafe format of the original
    assert run(tmp_path / "run", "--teacher-checkpoint", str(ckpt)) == 2
    assert "cannot read teacher checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("args,match", [
    (["--student", "resnet9"], "unknown --student 'resnet9'"),
    (["--teacher", "vgg16"], "unknown --teacher 'vgg16'"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--method", "fitnets"], "unknown method 'fitnets'"),
    (["--method", "takd"], "needs a teacher assistant"),
    (["--method", "takd", "--assistant", "resnet7"], "unknown --assistant 'resnet7'"),
    (["--student_epochs_p1", "0"], "--student_epochs_p1 must be at least 1"),
    (["--student_epochs_p2", "-1"], "--student_epochs_p2 must be at least 0"),
    (["--method", "kd", "--student-epochs", "0"], "--student-epochs must be at least 1"),
    (["--teacher_epochs", "0"], "--teacher_epochs must be at least 1"),
    (["--max_temperature", "0"], "--max_temperature must be at least 1"),
    (["--max_temperature", "3"], "--max_temperature 3 exceeds --student_epochs_p1 2"),
    (["--max_temperature", "9", "--anneal-per-step"], "phase 1 has 4 optimizer steps"),
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--cuda"], "no CUDA GPU"),
    (["--epochs", "3"], "unrecognized arguments: --epochs 3"),
    (["--dataset", "cifar10"], "cifar10 not found in"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys, args, match):
    if torch.cuda.is_available() and "--cuda" in args:
        pytest.skip("a GPU is visible")
    from test_cifar_data import _offline

    _offline(monkeypatch)
    out = tmp_path / "run"
    assert main([*TINY, "--output-dir", str(out), "--dataset-dir", str(tmp_path / "data"),
                 *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and match in err, err
    assert not (out / "results.json").exists()


def test_finished_run_is_kept(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(out, "--method", "scratch") == 0
    before = (out / "results.json").read_text()
    assert run(out, "--method", "scratch") == 2
    assert "finished run" in capsys.readouterr().err
    # a bad command with --overwrite-output-dir fails before touching the old run
    assert run(out, "--method", "scratch", "--overwrite-output-dir", "--train-subset", "99999") == 2
    assert (out / "results.json").read_text() == before
    assert run(out, "--method", "scratch", "--overwrite-output-dir", "--seed", "3") == 0
    assert results(out)["config"]["seed"] == 3


RESUME_ARGS = ["--student_epochs_p2", "2", "--student", "resnet8", "--teacher", "plane2"]


def test_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch, capsys):
    """Killed inside phase 1 (after 2 epoch records) or inside phase 2 (after 4), then resumed:
    bit-identical weights and results. (Same process, same thread count: float sums differ
    between thread counts.)"""
    full = tmp_path / "full"
    assert run(full, *RESUME_ARGS) == 0
    write = Trainer.write_results
    for stop_after in (2, 4):
        seen = {"epochs": 0}

        def killed_after_some_epochs(self, final=None, stop_after=stop_after, seen=seen):
            write(self, final)
            seen["epochs"] += 1
            if seen["epochs"] == stop_after:
                raise KeyboardInterrupt

        monkeypatch.setattr(Trainer, "write_results", killed_after_some_epochs)
        part = tmp_path / f"part{stop_after}"
        assert run(part, *RESUME_ARGS) == 130
        monkeypatch.setattr(Trainer, "write_results", write)
        assert len(results(part)["epochs"]) == stop_after and results(part)["final"] is None
        assert run(part, *RESUME_ARGS) == 2  # unfinished: needs --resume
        assert run(part, *RESUME_ARGS, "--resume", "--seed", "5") == 2  # another experiment
        assert "--seed was 20 in this run, now 5" in capsys.readouterr().err
        assert run(part, *RESUME_ARGS, "--resume") == 0

        for name in ("student/best.safetensors", "student/last.safetensors",
                     "teacher/best.safetensors"):
            a, b = load_file(full / name), load_file(part / name)
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
        expected, resumed = results(full), results(part)
        assert expected["final"] == resumed["final"]
        assert ([e["train_loss"] for e in expected["epochs"]] ==
                [e["train_loss"] for e in resumed["epochs"]])
    # 2 steps per epoch, 4 per phase: lr/10 from step 2, lr/100 from step 3, restarting per phase
    for p in ("phase1", "phase2"):
        lrs = [e["lr"] for e in expected["epochs"] if e["phase"] == p]
        assert lrs == pytest.approx([0.01, 0.001])


def test_original_flags_and_spellings():
    readme = ("--dataset cifar10 --teacher resnet110 --student resnet8 --teacher_epochs 200 "
              "--student_epochs_p1 200 --student_epochs_p2 200 --max_temperature 10 "
              "--batch-size 128 --learning-rate 0.1 --dataset-dir ./path/to/dataset/cache/directory "
              "--cuda").split()
    a = parse_args(readme)
    assert (a.dataset, a.teacher, a.student, a.teacher_epochs, a.student_epochs_p1,
            a.student_epochs_p2, a.max_temperature, a.batch_size, a.learning_rate, a.device) == (
        "cifar10", "resnet110", "resnet8", 200, 200, 200, 10, 128, 0.1, "cuda")
    assert a.student_epochs == 400 and a.method == "annealing" and a.val_size is None
    b = parse_args("--batch_size 64 --learning_rate 0.05 --dataset_dir d --model resnet20 "
                   "--teacher-epochs 3 --student-epochs-p1 10 --max-temperature 4 "
                   "--weight_decay 5e-4 --teacher_checkpoint t.pt".split())
    assert (b.batch_size, b.learning_rate, b.dataset_dir, b.student, b.teacher_epochs,
            b.student_epochs_p1, b.max_temperature, b.weight_decay, b.teacher_checkpoint) == (
        64, 0.05, "d", "resnet20", 3, 10, 4, 5e-4, "t.pt")
    defaults = parse_args([])
    assert (defaults.dataset, defaults.student_epochs_p2, defaults.device) == ("cifar100", 100, "auto")


def test_help_is_fast_and_imports_no_torch():
    code = ("import sys; from annealing_kd.computer_vision_tasks.annealing_kd_train import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--max_temperature" in proc.stdout and "--val-size" in proc.stdout


def test_generated_cifar10_folder_end_to_end(tmp_path, monkeypatch):
    from test_cifar_data import accept_generated_cifar10, write_cifar10

    accept_generated_cifar10(monkeypatch, write_cifar10(tmp_path / "data"))
    out = tmp_path / "run"
    assert main(["--dataset", "cifar10", "--dataset-dir", str(tmp_path / "data"), "--output-dir",
                 str(out), "--teacher", "resnet8", "--student", "plane2", "--teacher_epochs", "1",
                 "--student_epochs_p1", "2", "--student_epochs_p2", "1", "--max_temperature", "2",
                 "--batch-size", "32", "--num-workers", "0", "--device", "cpu"]) == 0
    r = results(out)
    assert (r["config"]["train_images"], r["config"]["val_images"], r["config"]["test_images"]) == (
        90, 10, 40)
    assert r["final"]["selected_on"] == "val"


def test_fashion_mnist_grey_end_to_end(tmp_path):
    from test_cifar_data import write_idx_gz

    write_idx_gz(tmp_path / "fm")
    out = tmp_path / "run"
    assert main(["--dataset", "fashion-mnist", "--dataset-dir", str(tmp_path / "fm"),
                 "--output-dir", str(out), "--method", "scratch", "--student", "resnet8",
                 "--student-epochs", "1", "--batch-size", "32", "--num-workers", "0",
                 "--device", "cpu"]) == 0
    assert load_file(out / "student" / "best.safetensors")["conv1.weight"].shape == (16, 1, 3, 3)


def test_two_process_ddp_run_writes_one_results_json(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed")
    out = tmp_path / "ddp"
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", str(port),
         str(ROOT / "computer_vision_tasks" / "annealing_kd_train.py"), *TINY,
         "--output-dir", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = results(out)
    assert r["config"]["processes"] == 2 and r["final"]["selected_on"] == "val"
    assert len(list(tmp_path.rglob("results.json"))) == 1
    # 64 images, batch 32 per process: one optimizer step per epoch on each process
    assert [e["phase"] for e in r["epochs"]] == ["teacher", "phase1", "phase1", "phase2"]


def test_the_pipeline_learns(tmp_path):
    """fake data is learnable: 3 epochs of plane2 from scratch get far above chance (10%)."""
    out = tmp_path / "run"
    assert main(["--dataset", "fake", "--method", "scratch", "--student", "plane2",
                 "--student-epochs", "3", "--train-subset", "1024", "--batch-size", "64",
                 "--num-workers", "0", "--device", "cpu", "--output-dir", str(out)]) == 0
    assert results(out)["final"]["metrics"]["test_accuracy"] > 0.5


@pytest.mark.parametrize("flag,value", [("--kd-reduction", "elementwise-mean"),
                                        ("--kd_reduction", "batchmean"), (None, "batchmean")])
def test_kd_reduction_reaches_the_loss(tmp_path, kd_reductions_seen, flag, value):
    seen = kd_reductions_seen
    extra = [flag, value] if flag else []
    assert run(tmp_path / "run", "--method", "kd", *extra) == 0
    assert seen and set(seen) == {value}
    assert results(tmp_path / "run")["config"]["kd_reduction"] == value
