"""reproduce/run_table.py: the plan of each table, the report, and a tiny end-to-end run."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reproduce import run_table as rt  # noqa: E402

TINY = ("--dataset fake --train-subset 160 --val-size 32 --batch-size 32 --num-workers 0 "
        "--device cpu")


def _commands(capsys, *argv: str) -> list[list[str]]:
    assert rt.main([*argv, "--dry-run"]) == 0
    return [shlex.split(line) for line in capsys.readouterr().out.splitlines()
            if not line.startswith("#")]  # the header: protocol and figures


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_cifar_dry_run_every_row(capsys, tmp_path: Path) -> None:
    cmds = _commands(capsys, "--table", "cifar10", "--seeds", "3", "--scale", "0.05",
                     "--out", str(tmp_path))
    assert len(cmds) == 1 + 6 * 3  # teacher once; assistant, alone, KD, TAKD, Annealing, recipe
    teacher = cmds[0]
    assert _flag(teacher, "--method") == "scratch" and _flag(teacher, "--student") == "resnet110"
    assert _flag(teacher, "--student-epochs") == "10"  # 200 * 0.05
    t_ckpt = str(tmp_path / "cifar10" / "teacher" / "student" / "best.safetensors")
    by_out = {Path(_flag(c, "--output-dir")).name: c for c in cmds}
    assert set(by_out) == {"teacher", *(f"{k}-s{s}" for k in ("kd", "takd", "annealing",
                                                              "annealing-recipe") for s in
                                        range(3)), *(f"assistant-resnet20-s{s}" for s in range(3)),
                           *(f"scratch-resnet8-s{s}" for s in range(3))}
    for seed in range(3):
        kd, ann, takd = by_out[f"kd-s{seed}"], by_out[f"annealing-s{seed}"], by_out[f"takd-s{seed}"]
        assert _flag(kd, "--teacher-checkpoint") == t_ckpt == _flag(ann, "--teacher-checkpoint")
        assert _flag(kd, "--seed") == str(seed) and _flag(kd, "--student-epochs") == "20"
        assert _flag(ann, "--student_epochs_p1") == "10" and _flag(ann, "--max_temperature") == "10"
        assert "--anneal-per-step" not in ann
        assistant = by_out[f"assistant-resnet20-s{seed}"]
        assert _flag(takd, "--teacher") == "resnet20" == _flag(assistant, "--student")
        assert _flag(takd, "--teacher-checkpoint") == str(
            Path(_flag(assistant, "--output-dir")) / "student" / "best.safetensors")
        assert _flag(by_out[f"scratch-resnet8-s{seed}"], "--method") == "scratch"
    assert all(_flag(c, "--dataset") == "cifar10" for c in cmds)


def test_few_epochs_anneal_per_step(capsys, tmp_path: Path) -> None:
    cmds = _commands(capsys, "--table", "cifar100", "--seeds", "1", "--scale", "0.01",
                     "--out", str(tmp_path))
    ann = [c for c in cmds if _flag(c, "--method") == "annealing"][0]
    assert _flag(ann, "--student_epochs_p1") == "2" and "--anneal-per-step" in ann
    assert rt.schedule({"teacher": 3, "p1": 14, "p2": 4, "tau": 7}, 0.05) == {
        "teacher": 1, "p1": 1, "p2": 1, "tau": 7, "per_step": True}


def test_fmnist_gap_shares_student_alone(capsys, tmp_path: Path) -> None:
    cmds = _commands(capsys, "--table", "fmnist-gap", "--seeds", "2", "--val-size", "5000",
                     "--out", str(tmp_path))
    teachers = [_flag(c, "--student") for c in cmds if c[-1].endswith("teacher")]
    assert teachers == ["resnet20", "resnet56", "resnet110"]
    scratch = [c for c in cmds if _flag(c, "--method") == "scratch" and "--teacher" not in c
               and not c[-1].endswith("teacher")]
    assert len(scratch) == 2  # one per seed, shared by the three teacher columns
    assert len(cmds) == 3 + 2 + 3 * 2 * 6  # teachers, alone, (assistant, 2 KD, TAKD, 2 Annealing)
    assert all(_flag(c, "--val-size") == "5000" and _flag(c, "--dataset") == "fashion-mnist"
               for c in cmds)
    takd = [c for c in cmds if "takd" in c[-1]]
    assert {_flag(c, "--teacher") for c in takd} == {"resnet14", "resnet20"}


def test_glue_dry_run(capsys, tmp_path: Path) -> None:
    cmds = _commands(capsys, "--table", "glue-roberta", "--seeds", "2", "--tasks", "rte,sts-b",
                     "--data-dir", "/glue", "--out", str(tmp_path))
    assert len(cmds) == 2 * (1 + 2 * 5)  # per task: teacher; finetune, KD, assistant, TAKD, Anneal
    teacher = cmds[0]
    assert _flag(teacher, "--student_model_name_or_path") == "roberta-large"
    assert _flag(teacher, "--data_dir") == "/glue/RTE" and _flag(teacher, "--task_name") == "rte"
    ann = [c for c in cmds if _flag(c, "--method") == "annealing" and "sts-b" in c]
    assert _flag(ann[0], "--teacher_model_name_or_path") == str(tmp_path / "sts-b" / "teacher" / "student")
    assert (_flag(ann[0], "--num_train_epochs_phase_1"), _flag(ann[0], "--max_temperature")) == ("14", "7")
    assert _flag(ann[0], "--student_model_name_or_path") == "distilroberta-base"


def test_movie_reviews_dry_run_prepares_data(capsys, tmp_path: Path) -> None:
    cmds = _commands(capsys, "--table", "movie-reviews", "--seeds", "1", "--teacher", "/m/teacher",
                     "--out", str(tmp_path))
    assert cmds[0][2:4] == ["movie-reviews", "--out"] and cmds[1][2] == "small-student"
    runs = cmds[2:]
    assert [_flag(c, "--method") for c in runs] == ["finetune", "finetune", "kd", "kd", "annealing", "annealing"]
    assert [_flag(c, "--kd_reduction") for c in runs[2:4]] == ["batchmean", "elementwise-mean"]
    assert all(_flag(c, "--kd_temperature") == "5" and _flag(c, "--kd_alpha") == "0.5"
               for c in runs[2:4])
    assert _flag(runs[0], "--student_model_name_or_path") == "/m/teacher"
    assert all(_flag(c, "--data_dir") == _flag(cmds[0], "--out") for c in runs)


@pytest.mark.parametrize(("argv", "message"), [
    (["--table", "cifar10", "--seeds", "0"], "--seeds must be at least 1"),
    (["--table", "cifar10", "--scale", "0"], "--scale must be positive"),
    (["--table", "cifar10", "--tasks", "rte"], "--tasks applies to"),
    (["--table", "glue-bert", "--tasks", "nope"], "unknown task"),
    (["--table", "cifar10", "--extra", "'unclosed"], "--extra is not a valid"),
])
def test_usage_errors(argv: list[str], message: str, capsys) -> None:
    assert rt.main([*argv, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def _finish(run: rt.Run, value: float, key: str = "test_accuracy", last: float | None = None) -> None:
    """A fake finished run: the selected epoch's ``value`` (and the last epoch's, if given)."""
    run.out.mkdir(parents=True, exist_ok=True)
    final = {"selected_by": key, "metrics": {key: value}}
    if last is not None:
        final["metrics"][f"last_epoch_{key}"] = last
    (run.out / "results.json").write_text(json.dumps({"final": final}))


def test_report_mean_std_beside_published(tmp_path: Path, capsys) -> None:
    """Fabricated results: KD 80/82/84 -> 82.00 ± 2.00; the teacher once; a missing cell."""
    args = rt.build_parser().parse_args(["--table", "cifar10", "--seeds", "3", "--out", str(tmp_path)])
    plan = rt.make_plan(args)
    kd = [r for r in plan.runs if r.row == "KD"]
    for run, value in zip(kd, [0.80, 0.82, 0.84], strict=True):
        _finish(run, value, last=value - 0.01)
    _finish([r for r in plan.runs if r.row == "teacher"][0], 0.9)
    alone = [r for r in plan.runs if r.row == "student alone"]
    _finish(alone[0], 0.5)
    _finish(alone[1], 0.6)
    assert rt.main(["--table", "cifar10", "--seeds", "3", "--out", str(tmp_path),
                    "--report-only"]) == 0
    md = (tmp_path / "cifar10.md").read_text()
    assert "| row | CIFAR-10: best test epoch | CIFAR-10: last epoch | CIFAR-10: paper |" in md
    assert "| KD | 82.00 ± 2.00 | 81.00 ± 2.00 | 88.45 |" in md
    assert "| teacher | 90.00 | – | 93.80 |" in md
    assert "| student alone | 55.00 ± 7.07 (n=2) | – | 88.44 |" in md
    assert "| Annealing-KD | – | – | 89.44 |" in md
    assert (tmp_path / "cifar10.png").stat().st_size > 1000
    values = json.loads((tmp_path / "cifar10.json").read_text())["values"]
    assert values["selected"]["KD"]["CIFAR-10"] == {"0": 80.0, "1": 82.0, "2": 84.0}
    assert values["last"]["KD"]["CIFAR-10"] == pytest.approx({"0": 79.0, "1": 81.0, "2": 83.0})


def test_glue_score_is_mean_over_tasks_per_seed(tmp_path: Path) -> None:
    args = rt.build_parser().parse_args(["--table", "glue-bert", "--seeds", "2", "--tasks",
                                         "cola,rte", "--out", str(tmp_path)])
    plan = rt.make_plan(args)
    got = {("cola", 0): (0.40, "mcc"), ("cola", 1): (0.50, "mcc"),
           ("rte", 0): (0.60, "accuracy"), ("rte", 1): (0.80, "accuracy")}
    for run in plan.runs:
        if run.row == "KD":
            value, key = got[(run.out.parent.name, run.seed)]
            _finish(run, value, key)
    score = rt.collect(plan)["selected"]["KD"]["score"]
    assert score == pytest.approx({0: 50.0, 1: 65.0})
    rt.write_report(plan, args, "cmd")
    md = (tmp_path / "glue-bert.md").read_text()
    assert ("| KD | 45.00 ± 7.07 | – | 41.89 | 70.00 ± 14.14 | – | 64.98 | 57.50 ± 10.61 | – "
            "| 77.65 |") in md


def test_tiny_cifar_table_end_to_end(tmp_path: Path, capsys) -> None:
    """Every row on fake data through the real CLI; a rerun skips finished runs and resumes an
    unfinished one."""
    argv = ["--table", "cifar10", "--seeds", "1", "--scale", "0.01", "--teacher", "resnet8",
            "--assistant", "resnet8", "--out", str(tmp_path), "--extra", TINY]
    assert rt.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count(": done in") == 7  # six paper rows and the recipe row
    md = (tmp_path / "cifar10.md").read_text()
    for row in ("teacher", "assistant", "student alone", "KD", "TAKD", "Annealing-KD"):
        line = [x for x in md.splitlines() if x.startswith(f"| {row} |")][0]
        assert line.split("|")[2].strip() not in ("", "–")
    assert "Runs: 7 of 7 finished" in md
    ann = json.loads((tmp_path / "cifar10" / "annealing-s0" / "results.json").read_text())
    assert ann["config"]["teacher_checkpoint"].endswith("teacher/student/best.safetensors")
    assert ann["config"]["anneal_per_step"] is True and ann["final"]["metrics"]["test_accuracy"] >= 0
    assert (tmp_path / "cifar10" / "annealing-s0" / "curves.png").is_file()
    # one logit cache for the table: the assistant computed the teacher's epochs, KD and
    # Annealing-KD phase 1 (the same seed and stream) read them
    kd_cache = json.loads((tmp_path / "cifar10" / "kd-s0" / "results.json").read_text())
    for run, epochs in ((kd_cache, 4), (ann, 2)):
        stream = run["logit_cache"]["streams"]["teacher train"]
        assert (stream["files_read"], stream["files_written"]) == (epochs, 0)
    assert "the cache saved about" in md

    # stop-and-restart: finished runs are skipped, an unfinished one is resumed
    kd = tmp_path / "cifar10" / "kd-s0" / "results.json"
    data = json.loads(kd.read_text())
    data["final"] = None
    kd.write_text(json.dumps(data))
    assert rt.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("finished earlier, skipped") == 6 and out.count(": done in") == 1
    log = (tmp_path / "logs" / "cifar10__kd-s0.log").read_text()
    calls = [line for line in log.splitlines() if line.startswith("$ ")]
    assert len(calls) == 2 and "--resume" not in calls[0] and calls[1].endswith("--resume")


def test_depends_on_finds_the_checkpoints_a_run_reads(tmp_path: Path) -> None:
    plan = rt.make_plan(rt.build_parser().parse_args(
        ["--table", "cifar10", "--seeds", "1", "--out", str(tmp_path)]))
    index = {r.row: i for i, r in enumerate(plan.runs)}
    need = {r.row: {plan.runs[j].row for j in rt.depends_on(r, plan.runs)} for r in plan.runs}
    assert need["teacher"] == need["student alone"] == set()
    assert need["KD"] == need["assistant"] == need["Annealing-KD"] == {"teacher"}
    assert need["TAKD"] == {"assistant"} and index["assistant"] < index["TAKD"]


def test_parallel_jobs_respect_dependencies(tmp_path: Path, capsys) -> None:
    """--jobs 3: every run finishes, and a run starts only after the runs it reads are done."""
    argv = ["--table", "cifar10", "--seeds", "1", "--scale", "0.01", "--teacher", "resnet8",
            "--assistant", "resnet8", "--out", str(tmp_path), "--extra", TINY, "--jobs", "3"]
    assert rt.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(": done in" in x for x in lines) == 7
    first = {}
    for n, line in enumerate(lines):
        for event in ("running", "done"):
            if f": {event}" in line:
                first.setdefault((line.split("|")[0].split("] ")[1].strip(), event), n)
    assert first[("teacher", "done")] < min(first[(r, "running")] for r in ("KD", "assistant",
                                                                           "Annealing-KD"))
    assert first[("assistant", "done")] < first[("TAKD", "running")]
    # two runs overlapped: one started before another finished
    assert first[("student alone", "running")] < first[("teacher", "done")]


@pytest.mark.parametrize("alone", [True, False], ids=["feeders-alone", "shared"])
def test_feeders_alone_run_by_themselves_with_every_core(tmp_path: Path, capsys, monkeypatch,
                                                         alone) -> None:
    """--jobs 2 --feeders-alone: the teacher and the assistants go first, each started when
    nothing else runs, nothing starts beside them, and they keep the environment's thread count
    (every core); the other runs get cores / jobs threads. Without the flag, the teacher shares
    the cores."""
    threads: dict[str, str | None] = {}

    def fake_launch(run, folder, args, extra, env):
        threads[f"{run.row} {run.seed}"] = env.get("OMP_NUM_THREADS")
        _finish(run, 0.5)
        log = folder.log(f"logs/{run.out.name}.log")
        log.write_text("")
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
        return proc, time.perf_counter(), log

    monkeypatch.setattr(rt, "launch", fake_launch)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    argv = ["--table", "fmnist-gap", "--teacher", "resnet20", "--seeds", "2", "--out",
            str(tmp_path), "--jobs", "2", *(["--feeders-alone"] if alone else [])]
    assert rt.main(argv) == 0
    in_flight, solo, shared, order = set(), [], False, []
    for line in capsys.readouterr().out.splitlines():
        if ": running" in line or ": done in" in line:
            name = line.split("] ", 1)[1].split(":")[0]
            feeder = name.startswith(("teacher |", "assistant |"))
            if ": running" in line:
                order.append(feeder)
                if feeder:
                    solo.append(not in_flight)
                shared |= any(n.startswith(("teacher |", "assistant |")) for n in in_flight)
                in_flight.add(name)
            else:
                in_flight.discard(name)
    cores = str(max(1, (os.cpu_count() or 1) // 2))
    feeders = {k for k in threads if k.startswith(("teacher", "assistant"))}
    assert len(threads) == 15 and len(feeders) == 3  # 1 teacher, 2 seeds x (assistant + 6 rows)
    if alone:
        assert solo == [True] * 3 and not shared and order[:3] == [True] * 3
        assert all(threads[k] is None for k in feeders)  # torch's default: every core
        assert all(threads[k] == cores for k in threads if k not in feeders)
    else:
        assert shared and set(threads.values()) == {cores}


def test_deadline_stops_runs_and_reports_what_finished(tmp_path: Path, capsys) -> None:
    argv = ["--table", "cifar10", "--seeds", "1", "--scale", "0.01", "--teacher", "resnet8",
            "--out", str(tmp_path), "--extra", TINY, "--jobs", "2", "--deadline-s", "0.5"]
    assert rt.main(argv) == 0
    assert "deadline of 0.5s reached: 7 runs unfinished" in capsys.readouterr().out
    assert "Runs: 0 of 7 finished" in (tmp_path / "cifar10.md").read_text()


def test_failed_run_stops_with_one_line_error(tmp_path: Path, capsys) -> None:
    argv = ["--table", "cifar10", "--seeds", "1", "--out", str(tmp_path), "--extra",
            "--dataset nosuch"]
    assert rt.main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'nosuch'" in err  # the CLI's message, from the log tail
    assert err.strip().splitlines()[-1].startswith("error: [1/7] teacher")
    assert "Runs: 0 of 7 finished" in (tmp_path / "cifar10.md").read_text()  # partial report


@pytest.mark.parametrize(("table", "cli", "kd_methods"), [
    ("cifar10", "cifar", {"KD", "TAKD", "assistant"}),
    ("glue-bert", "glue", {"KD", "TAKD", "assistant"}),
])
def test_paper_tables_use_the_paper_era_kd_loss(tmp_path: Path, table, cli, kd_methods) -> None:
    """Every KD-trained row of a paper table: T=5, lambda=0.5, KL averaged over batch x classes;
    the table's header says so."""
    argv = ["--table", table, "--seeds", "1", "--out", str(tmp_path)]
    argv += ["--tasks", "rte"] if cli == "glue" else []
    plan = rt.make_plan(rt.build_parser().parse_args(argv))
    sep = "-" if cli == "cifar" else "_"
    kd_runs = [r for r in plan.runs if _flag(r.args, "--method") == "kd"]
    assert {r.row for r in kd_runs} == kd_methods
    for run in kd_runs:
        assert _flag(run.args, f"--kd{sep}reduction") == "elementwise-mean"
        assert _flag(run.args, f"--kd{sep}temperature") == "5"
        assert _flag(run.args, f"--kd{sep}alpha") == "0.5"
    others = [r for r in plan.runs if r not in kd_runs]
    assert others and not any(f"--kd{sep}reduction" in r.args for r in others)
    rt.write_report(plan, rt.build_parser().parse_args(argv), "cmd")
    md = (tmp_path / f"{table}.md").read_text()
    assert f"`--kd{sep}reduction elementwise-mean`" in md and "T=5" in md


def test_fmnist_gap_has_both_kd_losses(tmp_path: Path) -> None:
    """The Fashion-MNIST table: "KD" is ours (batchmean), "KD (paper-era)", TAKD and its assistant
    the TAKD code's form; the header says which is which."""
    argv = ["--table", "fmnist-gap", "--teacher", "resnet20", "--seeds", "2", "--out", str(tmp_path)]
    plan = rt.make_plan(rt.build_parser().parse_args(argv))
    reduction: dict[str, set] = {}
    for r in plan.runs:
        value = _flag(r.args, "--kd-reduction") if "--kd-reduction" in r.args else None
        reduction.setdefault(r.row, set()).add(value)
    assert reduction["KD"] == {"batchmean"}
    assert reduction["KD (paper-era)"] == reduction["TAKD"] == {"elementwise-mean"}
    assert reduction["assistant"] == {"elementwise-mean"}
    assert reduction["student alone"] == reduction["Annealing-KD"] == {None}
    rt.write_report(plan, rt.build_parser().parse_args(argv), "cmd")
    md = (tmp_path / "fmnist-gap.md").read_text()
    assert "`--kd-reduction batchmean`" in md and "`--kd-reduction elementwise-mean`" in md


def test_movie_reviews_sizes_epochs_and_seed_subset(capsys, tmp_path: Path) -> None:
    """The teacher trains on its own, larger set (same dev); --epochs replaces the schedule;
    --run-seeds keeps the teacher and the given seeds only."""
    cmds = _commands(capsys, "--table", "movie-reviews", "--seeds", "5", "--teacher", "/m/t",
                     "--student", "/m/s", "--train-size", "400", "--teacher-train-size", "1200",
                     "--dev-size", "500", "--learning-rate", "1e-4", "--epochs",
                     "teacher=2,p1=2,p2=1,tau=4", "--run-seeds", "1,3", "--out", str(tmp_path))
    students_data, teacher_data = cmds[0], cmds[1]
    assert _flag(students_data, "--train-size") == "400" and _flag(students_data, "--dev-size") == "500"
    assert _flag(teacher_data, "--train-size") == "1200" and _flag(teacher_data, "--dev-size") == "500"
    teacher, runs = cmds[2], cmds[3:]
    assert _flag(teacher, "--data_dir") == _flag(teacher_data, "--out")
    assert _flag(teacher, "--num_train_epochs") == "2" and _flag(teacher, "--learning_rate") == "1e-4"
    assert {_flag(c, "--seed") for c in runs} == {"1", "3"} and len(runs) == 2 * 5
    assert all(_flag(c, "--data_dir") == _flag(students_data, "--out") for c in runs)
    ann = [c for c in runs if _flag(c, "--method") == "annealing"][0]
    assert (_flag(ann, "--num_train_epochs_phase_1"), _flag(ann, "--num_train_epochs_phase_2"),
            _flag(ann, "--max_temperature")) == ("2", "1", "4") and "--anneal_per_step" in ann
    assert all(_flag(c, "--num_train_epochs") == "3" for c in runs if _flag(c, "--method") != "annealing")


@pytest.mark.parametrize(("argv", "message"), [
    (["--epochs", "p3=2"], "--epochs item 'p3=2'"),
    (["--epochs", "p1=0"], "--epochs item 'p1=0'"),
    (["--run-seeds", "a,b"], "--run-seeds 'a,b'"),
])
def test_epochs_and_run_seeds_usage_errors(argv: list[str], message: str, capsys) -> None:
    assert rt.main(["--table", "movie-reviews", *argv, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_report_significance_and_seconds(tmp_path: Path) -> None:
    """Fabricated: KD 80/82/84 against alone 50/60/70: Welch p = 0.057, not significant at 0.05;
    paired by seed (differences 30, 22, 14: t = 22 / (8 / sqrt 3) = 4.763, df 2, two-sided
    p = 1 - t / sqrt(t^2 + 2) = 0.041) it is. Annealing-KD 90/91/92 against KD: differences
    10, 9, 8, t = 15.59, p = 0.0041. Seconds from results.json 'started'."""
    args = rt.build_parser().parse_args(["--table", "cifar10", "--seeds", "3", "--out", str(tmp_path)])
    plan = rt.make_plan(args)
    for row, vals in (("KD", [0.80, 0.82, 0.84]), ("student alone", [0.5, 0.6, 0.7]),
                      ("Annealing-KD", [0.90, 0.91, 0.92])):
        for run, value in zip([r for r in plan.runs if r.row == row], vals, strict=True):
            _finish(run, value)
    kd0 = [r for r in plan.runs if r.row == "KD"][0]
    data = json.loads((kd0.out / "results.json").read_text())
    data["started"] = "2026-01-01T00:00:00+0000"
    (kd0.out / "results.json").write_text(json.dumps(data))
    import os
    end = rt.datetime.strptime("2026-01-01T00:02:05+0000", "%Y-%m-%dT%H:%M:%S%z").timestamp()
    os.utime(kd0.out / "results.json", (end, end))
    rt.write_report(plan, args, "cmd")
    md = (tmp_path / "cifar10.md").read_text()
    assert "| KD | CIFAR-10 | student alone | 3 | +22.00 | 0.041* | +22.00 | 0.057 |" in md
    assert "| Annealing-KD | CIFAR-10 | KD | 3 | +9.00 | 0.004* | +9.00 | 0.00" in md
    assert "| Annealing-KD | CIFAR-10 | student alone | 3 | +31.00 | 0.027* | +31.00 |" in md
    assert "| student alone | CIFAR-10 | KD |" not in md  # each pair once
    assert "Tests, best test epoch" in md and "Tests, last epoch" not in md  # no last epochs
    assert "| KD | 1 | 125 | 125 |" in md


def test_teacher_extra_goes_to_the_teacher_only(capsys, tmp_path: Path) -> None:
    cmds = _commands(capsys, "--table", "fmnist-gap", "--teacher", "resnet20", "--seeds", "1",
                     "--extra", "--train-subset 2000", "--teacher-extra", "--train-subset 6000",
                     "--out", str(tmp_path))
    teacher = [c for c in cmds if _flag(c, "--student") == "resnet20"][0]
    assert teacher[-2:] == ["--train-subset", "6000"]  # after --extra's: argparse keeps the last
    others = [c for c in cmds if c is not teacher]
    assert others and all(c[-2:] == ["--train-subset", "2000"] for c in others)


def test_one_logit_cache_per_table_for_the_runs_that_read_the_teacher(capsys, tmp_path: Path):
    cmds = _commands(capsys, "--table", "fmnist-gap", "--teacher", "resnet20", "--seeds", "2",
                     "--out", str(tmp_path))
    cache = str(tmp_path / "logit-cache")
    by_row: dict[str, set] = {}
    for c in cmds:
        row = Path(_flag(c, "--output-dir")).name.rsplit("-s", 1)[0]
        by_row.setdefault(row, set()).add(_flag(c, "--logits-cache-dir") if "--logits-cache-dir"
                                          in c else None)
    assert by_row["kd"] == by_row["kd-paper"] == by_row["annealing"] == {cache}
    assert by_row["assistant-resnet14"] == {cache}
    assert by_row["teacher"] == by_row["takd"] == {cache}  # test logits kept for their readers
    assert by_row["scratch-resnet8"] == {None}
    shared = _commands(capsys, "--table", "fmnist-ablation", "--seeds", "1", "--out",
                       str(tmp_path), "--logits-cache-dir", str(tmp_path / "shared"))
    assert {_flag(c, "--logits-cache-dir") for c in shared if "--teacher-checkpoint" in c} \
        == {str(tmp_path / "shared")}
    off = _commands(capsys, "--table", "cifar10", "--seeds", "1", "--out", str(tmp_path),
                    "--no-logits-cache")
    assert not any("--logits-cache-dir" in c for c in off)


def test_report_states_the_teacher_time_the_cache_saved(tmp_path: Path) -> None:
    """Fabricated: KD computed 4 epochs of a stream in 40 s; Annealing-KD read 2 of them in 1 s
    (saves 2 x 10 - 1 = 19 s); TAKD's stream was read once but computed elsewhere (not counted).
    Then the teacher's run keeps its own test logits (30 s of its evaluation, not teacher time)
    and KD reads them in 0.4 s: 29.6 s more saved."""
    args = rt.build_parser().parse_args(["--table", "cifar10", "--seeds", "1", "--out", str(tmp_path)])
    plan = rt.make_plan(args)

    def stream(key, read, written, live_s, read_s):
        return {"key": key, "files_read": read, "files_written": written, "files_live": 0,
                "live_seconds": live_s, "read_seconds": read_s}

    for row, streams in (("KD", [stream("a", 0, 4, 40.0, 0.0)]),
                         ("Annealing-KD", [stream("a", 2, 0, 0.0, 1.0)]),
                         ("TAKD", [stream("b", 1, 0, 0.0, 0.0)])):
        run = [r for r in plan.runs if r.row == row][0]
        _finish(run, 0.5)
        data = json.loads((run.out / "results.json").read_text())
        data["logit_cache"] = {"streams": {"teacher train": streams[0]}}
        (run.out / "results.json").write_text(json.dumps(data))
    rt.write_report(plan, args, "cmd")
    md = (tmp_path / "cifar10.md").read_text()
    assert "| KD | 40 | 4 | 0 | 0.0 |" in md and "| Annealing-KD | 0 | 0 | 2 | 1.0 |" in md
    assert "The teacher ran 40 s; the cache saved about 19 s" in md
    for row, streams in (("teacher", {"student test": {**stream("t", 0, 1, 30.0, 0.0), "own": True}}),
                         ("KD", {"teacher train": stream("a", 0, 4, 40.0, 0.0),
                                 "teacher test": stream("t", 1, 0, 0.0, 0.4)})):
        run = [r for r in plan.runs if r.row == row][0]
        _finish(run, 0.5)
        data = json.loads((run.out / "results.json").read_text())
        data["logit_cache"] = {"streams": streams}
        (run.out / "results.json").write_text(json.dumps(data))
    rt.write_report(plan, args, "cmd")
    md = (tmp_path / "cifar10.md").read_text()
    assert "| KD | 40 | 4 | 1 | 0.4 |" in md and "| teacher |" not in md.split("Teacher logits")[1]
    assert "The teacher ran 40 s; the cache saved about 49 s" in md


def test_budget_sweep_plan_splits_each_budget_and_pairs_rows(capsys, tmp_path: Path) -> None:
    assert rt.budget_split(8) == (5, 3, 5) and rt.budget_split(30) == (20, 10, 10)
    assert rt.budget_split(64) == (43, 21, 10)
    cmds = _commands(capsys, "--table", "fmnist-budget", "--seeds", "2", "--budgets", "8,16",
                     "--out", str(tmp_path))
    assert len(cmds) == 1 + 2 * 2 * 4  # the teacher, then budgets x seeds x rows
    b8 = [c for c in cmds if f"{tmp_path}/b8/" in _flag(c, "--output-dir")]
    akd = [c for c in b8 if _flag(c, "--method") == "annealing"]
    assert {(_flag(c, "--student_epochs_p1"), _flag(c, "--student_epochs_p2"),
             _flag(c, "--max_temperature")) for c in akd} == {("5", "3", "5")}
    recipe = [c for c in akd if "--recipe" in c]
    assert len(recipe) == 2 and {_flag(c, "--recipe") for c in recipe} == {"no-phase1-decay"}
    assert {_flag(c, "--student-epochs") for c in b8 if "--student-epochs" in c} == {"8"}


def test_budget_sweep_report_gives_paired_differences_against_kd(tmp_path: Path) -> None:
    """Fabricated: at 8 epochs KD 80, 82, 84 and the recipe 81, 84, 84 over 3 seeds: differences
    1, 2, 0, mean +1.00, sd 1, 95% interval 1 -+ 4.303 / sqrt(3) = [-1.48, +3.48]."""
    argv = ["--table", "fmnist-budget", "--seeds", "3", "--budgets", "8", "--out", str(tmp_path)]
    plan = rt.make_plan(rt.build_parser().parse_args(argv))
    for row, vals in (("KD", [0.80, 0.82, 0.84]), (rt.RECIPE_ROW, [0.81, 0.84, 0.84])):
        for run, v in zip([r for r in plan.runs if r.row == row], vals, strict=True):
            _finish(run, v)
    assert rt.main([*argv, "--report-only"]) == 0
    md = (tmp_path / "fmnist-budget.md").read_text()
    assert f"| {rt.RECIPE_ROW} | 8 epochs | 3 | +1.00 | [-1.48, +3.48] |" in md
    assert (tmp_path / "fmnist-budget-vs-kd.png").stat().st_size > 0
    data = json.loads((tmp_path / "fmnist-budget.json").read_text())
    assert data["against_kd"]["selected"][rt.RECIPE_ROW]["8 epochs"]["pairs"] == 3


def test_the_recipe_row_beside_the_papers_in_every_table_that_has_annealing_kd(capsys, tmp_path):
    for table, row in (("fmnist-gap", rt.RECIPE_ROW), ("movie-reviews", rt.RECIPE_ROW),
                       ("cifar10", f"{rt.RECIPE_ROW} (not in the paper)")):
        plan = rt.make_plan(rt.build_parser().parse_args(
            ["--table", table, "--seeds", "2", "--out", str(tmp_path / table)]))
        assert row in plan.rows and row not in plan.published.get(plan.columns[0], {})
        paper = {r.seed: r.args for r in plan.runs if r.row == "Annealing-KD"}
        recipe = {r.seed: r.args for r in plan.runs if r.row == row}
        assert recipe.keys() == paper.keys() == {0, 1}
        assert all(sorted(recipe[s]) == sorted([*paper[s], *rt.RECIPE]) for s in recipe)
    cmds = _commands(capsys, "--table", "cifar100", "--seeds", "1", "--out", str(tmp_path / "c"))
    assert sum("--recipe" in c for c in cmds) == 1


def test_the_recipe_row_can_be_run_alone(capsys, tmp_path):
    cmds = _commands(capsys, "--table", "fmnist-gap", "--teacher", "resnet20", "--seeds", "2",
                     "--rows", rt.RECIPE_ROW, "--out", str(tmp_path))
    assert sum("--recipe" in c for c in cmds) == 2 and len(cmds) == 3  # its teacher, 2 seeds


@pytest.mark.parametrize("scale", ["1e308", "1e4"])
def test_a_scale_past_the_epoch_limit_is_one_line(scale, capsys, tmp_path):
    assert rt.main(["--table", "cifar10", "--scale", scale, "--dry-run", "--out",
                    str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --scale {float(scale):g} makes 200 epochs") and err.count("\n") == 1


def test_a_finished_run_of_another_command_is_neither_adopted_nor_reported(tmp_path, capsys):
    """A user's run in the table's kd-s0 folder (other epochs, seed, method) was once waited for
    and reported as the KD row."""
    argv = ["--table", "cifar10", "--seeds", "1", "--scale", "0.01", "--out", str(tmp_path)]
    plan = rt.make_plan(rt.build_parser().parse_args(argv))
    kd = next(r for r in plan.runs if r.row == "KD")
    _finish(kd, 0.99)
    data = json.loads((kd.out / "results.json").read_text())
    data["config"] = {"method": "kd", "student_epochs": 7, "seed": 0}
    (kd.out / "results.json").write_text(json.dumps(data))
    assert rt.main(argv) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {kd.out} holds a finished run of another command (its student_epochs "
                   "is 7, this row's 4): an earlier --scale, --epochs or --extra, or not this "
                   "table's; pass another --out, or move that folder away\n")
    assert not (tmp_path / "logs").exists()  # refused before anything ran
    assert rt.main([*argv, "--report-only"]) == 0
    md = (tmp_path / "cifar10.md").read_text()
    assert "| KD | – |" in md and "99.00" not in md
    data["config"]["student_epochs"] = 4  # the row's own: adopted
    (kd.out / "results.json").write_text(json.dumps(data))
    assert rt.main([*argv, "--report-only"]) == 0
    assert "| KD | 99.00 |" in (tmp_path / "cifar10.md").read_text()


@pytest.mark.parametrize("budgets", ["8,x", "8,,16", "1", "0x10"])
def test_a_bad_budget_list_is_one_line(budgets, capsys, tmp_path):
    assert rt.main(["--table", "fmnist-budget", "--budgets", budgets, "--dry-run", "--out",
                    str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --budgets:") and err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["--cpus-per-run", "0"], "--cpus-per-run must be at least 1, got 0"),
    ([], "squeue failed (no cluster here)"),
])
def test_a_refused_slurm_submission_writes_nothing(tmp_path, capsys, monkeypatch, argv, message):
    """Bad cluster options, or a scheduler that does not answer: one line, and --out is not
    created (nothing is written before the scheduler has answered)."""
    from reproduce import slurm

    def no_cluster():
        raise RuntimeError("squeue failed (no cluster here)")

    monkeypatch.setattr(rt.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(slurm, "queue", no_cluster)
    out = tmp_path / "table"
    assert rt.main(["--table", "cifar10", "--out", str(out), "--launcher", "slurm", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()
