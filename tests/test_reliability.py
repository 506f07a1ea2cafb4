"""Fault injection on both CLIs (issue 9): bad inputs, kills inside epoch commits, a full disk, a
read-only output folder and the limits of --overwrite-output-dir. What each test proves is listed
in docs/reliability.md."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import faults
import pytest
import torch
from glue_fixtures import tiny_bert, write_glue
from PIL import Image
from safetensors.torch import load_file

import annealing_kd.common.run_folder.checkpoint as ckpt
from annealing_kd.common.run_folder import MANIFEST, Manifest
from annealing_kd.computer_vision_tasks import annealing_kd_train as cifar
from annealing_kd.NLP_glue_tasks import annealing_kd_glue as glue

CIFAR = ["--dataset", "fake", "--train-subset", "64", "--val-size", "32", "--batch-size", "32",
         "--num-workers", "0", "--device", "cpu", "--teacher", "resnet8", "--student", "plane2",
         "--teacher_epochs", "1", "--student_epochs_p1", "2", "--student_epochs_p2", "2",
         "--max_temperature", "2", "--student-epochs", "2", "--deterministic"]
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def glue_args(ws: Path, out, *extra: str, method: str = "annealing") -> list[str]:
    return ["--task_name", "rte", "--data_dir", str(ws / "glue" / "RTE"), "--output_dir", str(out),
            "--logits_cache_dir", str(ws / "cache"), "--student_model_name_or_path",
            str(ws / "student"), "--teacher_model_name_or_path", str(ws / "teacher"),
            "--per_gpu_train_batch_size", "8", "--per_gpu_eval_batch_size", "16", "--learning_rate",
            "1e-3", "--no_cuda", "--num_train_epochs_phase_1", "2", "--num_train_epochs_phase_2", "2",
            "--num_train_epochs", "2", "--max_temperature", "2", "--method", method, "--do_train",
            "--deterministic", *extra]


def reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def tree_hashes(root: Path, skip: Path | None = None) -> dict[str, str]:
    """sha256 of every file under ``root`` (except under ``skip``, and the lock files: they name
    their last holder)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != ".annealing-kd.lock" and not (
                skip is not None and (p == skip or skip in p.parents)):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(autouse=True)
def _no_deterministic_leak():
    """--deterministic switches torch's deterministic mode on for the whole process: restore it."""
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace: a working directory with a user's file, GLUE data and tiny BERTs, a CIFAR
    teacher checkpoint, broken inputs, and one finished run of each CLI."""
    ws = tmp_path_factory.mktemp("ws")
    (ws / "cwd").mkdir()
    (ws / "cwd" / "thesis.tex").write_text("\\documentclass{article}\n")
    write_glue(ws / "glue", "RTE", 24, 12, 6)
    tiny_bert(ws / "teacher", num_labels=2, seed=1)
    tiny_bert(ws / "student", num_labels=None, seed=2)
    bad = ws / "bad"
    shutil.copytree(ws / "glue" / "RTE", bad / "latin1")
    with open(bad / "latin1" / "train.tsv", "ab") as f:
        f.write("1\tcaf\xe9\tna\xefve\tentailment\n".encode("latin-1"))
    shutil.copytree(ws / "teacher", bad / "truncated_teacher")
    weights = bad / "truncated_teacher" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4000])
    shutil.copytree(ws / "teacher", bad / "pickle_teacher")
    (bad / "pickle_teacher" / "model.safetensors").unlink()
    torch.save(load_file(ws / "teacher" / "model.safetensors"), bad / "pickle_teacher" / "pytorch_model.bin")
    (bad / "a_file").write_text("not a folder\n")
    for c in ("a", "b"):  # an image folder
        (bad / "images" / "train" / c).mkdir(parents=True)
        colour = (200 if c == "a" else 0, 0, 0)
        Image.new("RGB", (8, 8), colour).save(bad / "images" / "train" / c / "0.png")
    from annealing_kd.computer_vision_tasks import models

    ckpt.save_weights(models.create_model("resnet8", 10).state_dict(), ws / "teacher.safetensors")
    (bad / "teacher.safetensors").write_bytes((ws / "teacher.safetensors").read_bytes()[:3000])
    # finished runs: CIFAR kd (teacher + student) and GLUE finetune, one epoch each
    assert cifar.main([*CIFAR, "--method", "kd", "--student-epochs", "1",
                       "--output-dir", str(ws / "done_cifar")]) == 0
    reset_accelerate()
    assert glue.main(glue_args(ws, ws / "done_glue", "--num_train_epochs", "1",
                               method="finetune")) == 0
    reset_accelerate()
    torch.use_deterministic_algorithms(False)
    shutil.copytree(ws / "done_cifar", ws / "done_cifar_plus")
    (ws / "done_cifar_plus" / "notes.txt").write_text("mine\n")
    shutil.copytree(ws / "done_glue", bad / "corrupt_run")
    model = bad / "corrupt_run" / "student" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:5000])
    return ws


NEW = "{new}"  # a fresh output folder inside the workspace
C, G = "cifar", "glue"
BAD_INPUTS = [
    # CIFAR: optimisation and method settings
    (C, ["--momentum", "-1"], "--momentum must be >= 0"),
    (C, ["--weight-decay", "-1"], "--weight-decay must be >= 0"),
    (C, ["--kd-alpha", "-1"], "--kd-alpha must be >= 0 and <= 1"),
    (C, ["--kd-alpha", "1.5"], "--kd-alpha must be >= 0 and <= 1"),
    (C, ["--kd-temperature", "0"], "--kd-temperature must be positive"),
    (C, ["--learning-rate", "-0.1"], "--learning-rate must be positive"),
    (C, ["--learning-rate", "nan"], "not a finite number"),
    (C, ["--batch-size", "0"], "--batch-size must be positive"),
    (C, ["--num-workers", "-1"], "--num-workers must be >= 0"),
    (C, ["--train-subset", "0"], "--train-subset must be >= 1"),
    (C, ["--student_epochs_p1", "0"], "--student_epochs_p1 must be at least 1"),
    (C, ["--student_epochs_p2", "-1"], "--student_epochs_p2 must be at least 0"),
    (C, ["--phase2-learning-rate", "0"], "--phase2-learning-rate must be positive"),
    (C, ["--lr-milestones", "0.5,x"], "not a comma-separated list of numbers"),
    (C, ["--lr-milestones", "0.75,0.5"], "milestones must increase"),
    (C, ["--phase1-lr-milestones", "1"], "in (0, 1)"),
    (C, ["--anneal-reduction", "max"], "invalid choice"),
    (C, ["--max_temperature", "5"], "exceeds --student_epochs_p1"),
    (C, ["--max_temperature", "0"], "--max_temperature must be at least 1"),
    (C, ["--method", "nope"], "unknown method"),
    (C, ["--dataset", "nope"], "unknown dataset"),
    (C, ["--method", "takd"], "needs a teacher assistant"),
    (C, ["--bogus-flag"], "unrecognized arguments"),
    (C, ["--batch-size", "abc"], "invalid int value"),
    # CIFAR: inputs and the output folder
    (C, ["--teacher-checkpoint", "{ws}/missing.safetensors"], "does not exist"),
    (C, ["--teacher-checkpoint", "{ws}/bad/teacher.safetensors"], "is corrupt"),
    (C, ["--teacher-checkpoint", "{ws}/cwd/thesis.tex"], "cannot read teacher checkpoint"),
    (C, ["--output-dir", "{ws}/bad/a_file"], "is a file"),
    (C, ["--output-dir", "/proc/annealing-kd-test"], "cannot create output directory"),
    (C, ["--output-dir", ".", "--overwrite-output-dir"], "holds no run of annealing-kd"),
    (C, ["--output-dir", ".."], "holds no run of annealing-kd"),
    (C, ["--output-dir", "{ws}/done_cifar"], "holds a finished run"),
    (C, ["--output-dir", "{ws}/done_cifar", "--resume"], "holds a finished run"),
    (C, ["--output-dir", "{ws}/done_cifar", "--overwrite-output-dir", "--momentum", "-1"],
     "--momentum"),
    (C, ["--output-dir", "{ws}/done_cifar", "--overwrite-output-dir", "--teacher-checkpoint",
         "{ws}/done_cifar/teacher/best.safetensors"], "is inside the output directory"),
    (C, ["--output-dir", "{ws}/done_cifar", "--overwrite-output-dir", "--dataset", "imagefolder",
         "--dataset-dir", "{ws}/done_cifar"], "is inside the output directory"),
    (C, ["--output-dir", "{ws}/bad/images/run", "--dataset", "imagefolder", "--dataset-dir",
         "{ws}/bad/images"], "is inside --dataset-dir"),
    (C, ["--output-dir", "{ws}/done_cifar_plus", "--overwrite-output-dir"], "notes.txt"),
    (C, ["--output-dir", "{ws}/done_cifar", "--overwrite-output-dir", "--resume"], "contradict"),
    (C, ["--resume"], "no run to resume"),
    (C, ["--logits-cache-dir", "{ws}/bad/a_file"], "is a file; pass a folder"),
    (C, ["--logits-cache-max-gb", "-1"], "--logits-cache-max-gb must be >= 0"),
    # GLUE: settings
    (G, ["--learning_rate=-1e-3"], "--learning_rate must be positive"),
    (G, ["--num_train_epochs", "0", "--method", "kd"], "--num_train_epochs must be at least 1"),
    (G, ["--num_train_epochs_phase_2", "-1"], "--num_train_epochs_phase_2 must be at least 0"),
    (G, ["--phase2_learning_rate=-1"], "--phase2_learning_rate must be positive"),
    (G, ["--warmup_steps", "-5"], "--warmup_steps must be >= 0"),
    (G, ["--kd_alpha", "-1"], "--kd_alpha must be >= 0 and <= 1"),
    (G, ["--kd_temperature", "0"], "--kd_temperature must be positive"),
    (G, ["--weight_decay", "-1"], "--weight_decay must be >= 0"),
    (G, ["--max_grad_norm", "-1"], "--max_grad_norm must be >= 0"),
    (G, ["--adam_epsilon", "0"], "--adam_epsilon must be positive"),
    (G, ["--max_steps", "-1"], "--max_steps must be >= 0"),
    (G, ["--max_temperature", "5"], "exceeds --num_train_epochs_phase_1"),
    (G, ["--max_temperature", "0"], "--max_temperature must be at least 1"),
    (G, ["--max_temperature", "9", "--anneal_per_step"], "optimizer steps"),
    (G, ["--max_temperature", "5", "--train_teacher"], "exceeds --num_train_epochs_phase_1"),
    (G, ["--per_gpu_train_batch_size", "0"], "--per_gpu_train_batch_size must be >= 1"),
    (G, ["--num_train_epochs_phase_1", "1.5"], "not a whole number"),
    (G, ["--bogus"], "unrecognized arguments"),
    (G, ["--task_name", "nope"], "nope"),
    (G, ["--fp16", "--bf16"], "exclude each other"),
    (G, ["--method", "takd"], "needs --assistant_model_name_or_path"),
    # GLUE: inputs and the output folder
    (G, ["--data_dir", "{ws}/bad/latin1"], "byte offset"),
    (G, ["--data_dir", "{ws}/missing"], "is not a directory"),
    (G, ["--teacher_model_name_or_path", "{ws}/bad/truncated_teacher"], "truncated or corrupt"),
    (G, ["--teacher_model_name_or_path", "{ws}/bad/pickle_teacher"], "pickle"),
    (G, ["--teacher_model_name_or_path", "{ws}/missing"], "could not be loaded"),
    (G, ["--output_dir", "{ws}/bad/a_file"], "is a file"),
    (G, ["--output_dir", "/proc/annealing-kd-test"], "cannot create output directory"),
    (G, ["--output_dir", ".", "--overwrite_output_dir"], "holds no run of annealing-kd"),
    (G, ["--output_dir", "{ws}/done_glue"], "holds a finished run"),
    (G, ["--output_dir", "{ws}/done_glue", "--overwrite_output_dir", "--learning_rate=-1"],
     "--learning_rate"),
    (G, ["--output_dir", "{ws}/done_glue", "--overwrite_output_dir", "--method", "finetune",
         "--student_model_name_or_path", "{ws}/done_glue/student"], "is inside the output"),
    (G, ["--output_dir", "{ws}/done_glue", "--overwrite_output_dir", "--resume"], "contradict"),
    (G, ["--resume"], "no run to resume"),
    (G, ["--output_dir", "{ws}/bad/corrupt_run", "--do_eval", "--do_train=0"], "truncated or corrupt"),
]


def _fill(args: list[str], ws: Path, new: Path) -> list[str]:
    return [a.replace("{ws}", str(ws)).replace("{new}", str(new)) for a in args]


@pytest.mark.parametrize("cli,args,match", BAD_INPUTS,
                         ids=[f"{c}:{' '.join(a)[:60]}" for c, a, _ in BAD_INPUTS])
def test_bad_input_one_line_exit_2_nothing_touched(ws, tmp_path, monkeypatch, capsys, cli, args,
                                                   match):
    monkeypatch.chdir(ws / "cwd")
    new = ws / "fresh" / tmp_path.name
    args = _fill(args, ws, new)
    if cli == C:
        argv = [*CIFAR, "--output-dir", str(new), *args]
        main = cifar.main
    else:
        argv = glue_args(ws, new)
        if "--do_train=0" in args:  # evaluation alone
            argv.remove("--do_train")
            args.remove("--do_train=0")
        if args[:2] == ["--task_name", "nope"]:
            argv[1] = "nope"
            args = args[2:]
        argv = argv + args
        main = glue.main
    before = tree_hashes(ws, skip=new)
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], err
    assert tree_hashes(ws, skip=new) == before
    assert not (new / "results.json").exists()


def test_bad_input_count():
    assert len(BAD_INPUTS) >= 40


# ---- kills at every rename of an epoch commit ------------------------------------------------
def _run(main, argv: list[str], *, kill_at: int | None = None, log: Path | None = None) -> int:
    """Run a CLI in a forked child (as a fresh process would, but without the import cost);
    return its exit status, or -9 if the fault hook killed it."""
    reset_accelerate()
    pid = os.fork()
    if pid == 0:  # the child
        code = 99
        try:
            faults.inject(kill_at, log)
            code = main(argv)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _renames(log: Path, out: Path) -> list[str]:
    """The targets of a run's renames inside its folder, relative to it, in order."""
    names = [line.split("\t", 1)[1].strip() for line in log.read_text().splitlines()]
    return [str(Path(n).relative_to(out)) for n in names if Path(n).is_relative_to(out)]


def _commit_points(renames: list[str], phase: str, epoch: int) -> list[int]:
    """1-based rename numbers from the manifest that records ``phase`` epoch ``epoch`` (its files
    are recorded before they appear) up to the first rename after its results.json (a kill just
    before each of them)."""
    first = next(i for i, r in enumerate(renames) if r.startswith(f"{phase}/epoch-{epoch:04d}/"))
    if first and renames[first - 1] == MANIFEST:
        first -= 1
    last = next(i for i in range(first, len(renames)) if renames[i] == "results.json")
    return list(range(first + 1, min(last + 2, len(renames)) + 1))


def _same_run(a: Path, b: Path, weights: list[str]) -> None:
    for name in weights:
        x, y = load_file(a / name), load_file(b / name)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name
    ra, rb = (json.loads((p / "results.json").read_text()) for p in (a, b))
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in ra["epochs"]]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in rb["epochs"]]
    fa = {k: v for k, v in ra["final"].items() if k not in ("student_dir",)}
    fb = {k: v for k, v in rb["final"].items() if k not in ("student_dir",)}
    assert fa == fb
    assert (b / "curves.png").is_file() and not list(b.rglob(".*.tmp"))
    Manifest.read(b).check_removable()


KILLS = [  # cli, method, (phase, epoch) commits to kill in, weight files to compare
    (C, "annealing", [("phase1", 2), ("phase2", 2)],
     ["student/best.safetensors", "student/last.safetensors", "phase1/best.safetensors"]),
    (C, "kd", [("student", 2)], ["student/best.safetensors", "teacher/best.safetensors"]),
    (G, "annealing", [("phase1", 2), ("phase2", 2)], ["student/model.safetensors"]),
    (G, "kd", [("student", 2)], ["student/model.safetensors"]),
]


@pytest.mark.parametrize("cli,method,commits,weights", KILLS, ids=[f"{k[0]}-{k[1]}" for k in KILLS])
def test_kill_at_every_rename_of_an_epoch_commit_then_resume(ws, tmp_path, cli, method, commits,
                                                              weights):
    main = cifar.main if cli == C else glue.main

    def argv(out: Path, *extra: str) -> list[str]:
        if cli == C:
            return [*CIFAR, "--method", method, "--output-dir", str(out), *extra]
        return glue_args(ws, out, *extra, method=method)

    full, log = tmp_path / "full", tmp_path / "renames.log"
    assert _run(main, argv(full), log=log) == 0
    renames = _renames(log, full)
    points = sorted({n for p, e in commits for n in _commit_points(renames, p, e)})
    if (cli, method) == (C, "annealing"):  # and the end of the run: the last renames
        points += [n for n in range(len(renames) - 3, len(renames) + 1) if n not in points]
    for n in points:
        out = tmp_path / f"kill{n}"
        assert _run(main, argv(out), kill_at=n) == -9, f"rename {n} ({renames[n - 1]})"
        Manifest.read(out).check_removable()  # every file left is recorded, or a temporary
        assert _run(main, argv(out, "--resume")) == 0, f"resume after a kill at rename {n}"
        _same_run(full, out, weights)
        shutil.rmtree(out)
    print(f"{cli} {method}: {len(points)} kill points, renames {points}")


def test_kill_while_a_teacher_logit_file_is_written_then_resume(tmp_path):
    """A SIGKILL just before each teacher-logit file of a run is renamed into --logits-cache-dir
    (phase 1's epochs, the teacher's val and test logits, and at the end the student's own test
    logits, kept for a run that takes it as its teacher), then --resume with the same cache:
    the same weights, epoch records and final entry as an uninterrupted run without the cache;
    the killed writer's temporary file is gone."""
    base = [*CIFAR, "--method", "annealing"]

    def argv(out: Path, cache: Path, *extra: str) -> list[str]:
        return [*base, "--output-dir", str(out), "--logits-cache-dir", str(cache), *extra]

    full, log = tmp_path / "full", tmp_path / "renames.log"
    assert _run(cifar.main, [*base, "--output-dir", str(full)]) == 0
    assert _run(cifar.main, argv(tmp_path / "logged", tmp_path / "cache0"), log=log) == 0
    points = [int(n) for n, dst in (line.split("\t") for line in log.read_text().splitlines())
              if dst.strip().endswith(".logits")]
    # phase 1's 2 epochs; the teacher's val and test logits; the student's (best weights') test
    # logits
    assert len(points) == 2 + 2 + 1, points
    for n in points:
        out, cache = tmp_path / f"kill{n}", tmp_path / f"cache{n}"
        assert _run(cifar.main, argv(out, cache), kill_at=n) == -9, f"rename {n}"
        assert _run(cifar.main, argv(out, cache, "--resume")) == 0, f"resume after rename {n}"
        _same_run(full, out, ["student/best.safetensors", "student/last.safetensors",
                              "phase1/best.safetensors"])
        assert not list(cache.rglob(".*.tmp"))
        shutil.rmtree(out)
        shutil.rmtree(cache)
    print(f"cifar annealing with a logit cache: kill points {points}")


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_strace_kill_at_a_real_rename(tmp_path):
    """The same from outside the process: strace SIGKILLs the CLI at its 12th rename syscall
    (inside the second epoch commit of a scratch run), then --resume."""
    env = {**os.environ, "PYTHONPATH": str(Path(cifar.__file__).resolve().parents[1]),
           "OMP_NUM_THREADS": "1"}

    def cmd(out: Path, *extra: str) -> list[str]:
        return [sys.executable, cifar.__file__, *CIFAR, "--method", "scratch", "--output-dir",
                str(out), *extra]

    renames = "rename,renameat,renameat2"
    out, full = tmp_path / "run", tmp_path / "full"
    traced = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={renames}",
                             "-e", f"inject={renames}:signal=KILL:when=12", *cmd(out)],
                            env=env, capture_output=True, text=True, timeout=600)
    if "ptrace" in traced.stderr.lower():
        pytest.skip("ptrace is not allowed here")
    assert traced.returncode != 0 and not (out / "curves.png").exists()
    for argv in (cmd(out, "--resume"), cmd(full)):
        assert subprocess.run(argv, env=env, capture_output=True, timeout=600).returncode == 0
    _same_run(full, out, ["student/best.safetensors", "student/last.safetensors"])


# ---- disk full, read-only output, umask -------------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path):
    mounts = []

    def mount(size: str, readonly: bool = False) -> Path:
        where = tmp_path / f"mnt{len(mounts)}"
        where.mkdir()
        opts = f"size={size}" + (",ro" if readonly else "")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)]).returncode:
            pytest.skip("cannot mount a tmpfs here")
        mounts.append(where)
        return where

    yield mount
    for where in mounts:
        subprocess.run(["umount", str(where)])


@ROOT_ONLY
def test_disk_full_while_writing_a_checkpoint_keeps_the_last_good_epoch(ws, tmpfs, capsys):
    from annealing_kd.computer_vision_tasks import models

    size = 4 * models.num_parameters(models.create_model("plane4", 10))
    # an epoch commit holds the weights and the momentum (2 sizes); while the second epoch is
    # written the first stays: room for 3 sizes lets epoch 1 commit and epoch 2 fail
    where = tmpfs(f"{(3 * size + 64 * 1024) // 4096 * 4}k")
    out = where / "run"
    argv = [*CIFAR, "--method", "scratch", "--student", "plane4", "--output-dir", str(out)]
    assert cifar.main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # no bars
    assert len(err) == 1 and err[0].startswith(f"error: could not write {out}/student/"), err
    assert "at the end of student epoch 2; the last good epoch (1) is kept" in err[0], err
    state, edir = ckpt.load_committed(out / "student")
    assert state["epoch"] == 1 and load_file(edir / "last.safetensors")


@ROOT_ONLY
@pytest.mark.parametrize("cli", [C, G])
def test_read_only_output_folder(ws, tmpfs, capsys, cli):
    where = tmpfs("1m", readonly=True)
    argv = ([*CIFAR, "--output-dir", str(where)] if cli == C else glue_args(ws, where))
    assert (cifar.main if cli == C else glue.main)(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not writable" in err[0], err


def test_results_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        ckpt.atomic_write(tmp_path / "a.json", lambda tmp: Path(tmp).write_text("{}"))
        os.umask(0o077)
        ckpt.atomic_write(tmp_path / "b.json", lambda tmp: Path(tmp).write_text("{}"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600


# ---- overwrite, resume checks, corrupt cache ---------------------------------------------------
def test_overwrite_replaces_only_our_run_and_only_once_it_starts(ws, tmp_path, monkeypatch):
    monkeypatch.chdir(ws / "cwd")
    out = tmp_path / "run"
    shutil.copytree(ws / "done_cifar", out)
    seen = {}
    from annealing_kd.common.training.trainer import Trainer

    fit = Trainer.fit

    def spy(self, *a, **k):  # the old run is still there when the first phase is set up
        seen.setdefault("old", (out / "teacher" / "best.safetensors").exists())
        return fit(self, *a, **k)

    monkeypatch.setattr(Trainer, "fit", spy)
    assert cifar.main([*CIFAR, "--method", "scratch", "--student-epochs", "1", "--output-dir",
                       str(out), "--overwrite-output-dir"]) == 0
    assert seen["old"] and not (out / "teacher").exists()  # the kd run's teacher is gone
    assert json.loads((out / "results.json").read_text())["config"]["method"] == "scratch"
    assert (ws / "cwd" / "thesis.tex").exists()


def test_glue_resume_checks_the_config(ws, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert _run(glue.main, glue_args(ws, out, method="kd"), kill_at=12) == -9
    for flag, value in (("--learning_rate", "2e-3"), ("--seed", "7"), ("--max_temperature", "1"),
                        ("--method", "finetune")):
        argv = glue_args(ws, out, "--resume", method="kd")
        if flag in argv:
            i = argv.index(flag)
            argv[i + 1] = value
        else:
            argv += [flag, value]
        assert glue.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: --resume: {flag} was ") and "now" in err, err
        reset_accelerate()
    assert glue.main(glue_args(ws, out, "--resume", method="kd")) == 0


def test_corrupt_logit_cache_is_computed_again(ws, tmp_path, capsys):
    cache = tmp_path / "cache"
    argv = glue_args(ws, tmp_path / "a", "--logits_cache_dir", str(cache), method="kd")
    assert glue.main(argv) == 0
    reset_accelerate()
    for f in cache.glob("*.logits"):
        f.write_bytes(f.read_bytes()[:100])
    argv = glue_args(ws, tmp_path / "b", "--logits_cache_dir", str(cache), method="kd")
    assert glue.main(argv) == 0
    assert "computing them again" in capsys.readouterr().out
    a, b = (load_file(tmp_path / r / "student" / "model.safetensors") for r in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("cwd,out", [("run", "."), ("run/teacher", ".."), ("run/teacher", "../")])
def test_overwrite_never_empties_the_working_directory_or_its_parents(ws, tmp_path, monkeypatch,
                                                                     capsys, cwd, out):
    shutil.copytree(ws / "done_cifar", tmp_path / "run")
    monkeypatch.chdir(tmp_path / cwd)
    before = tree_hashes(tmp_path)
    assert cifar.main([*CIFAR, "--output-dir", out, "--overwrite-output-dir"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "working directory" in err[0], err
    assert tree_hashes(tmp_path) == before
