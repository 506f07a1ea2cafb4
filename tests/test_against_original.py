"""reproduce/against_original.py: data preparation, log parsing, statistics and report helpers
(always), and the whole comparison at a tiny size when ANNEALING_KD_ORIGINAL names the original
code (e.g. /work/original/Annealing_KD)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import stats
from computer_vision_tasks import data
from reproduce import against_original as ao

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "reproduce" / "against_original.py"
FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_to_rgb32_pads_with_zeros_and_repeats_the_grey():
    img = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    out = ao.to_rgb32(img)
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.uint8
    assert (out[:, :2] == 0).all() and (out[:, -2:] == 0).all()
    assert (out[:, :, :2] == 0).all() and (out[:, :, -2:] == 0).all()
    for c in range(3):
        assert (out[:, 2:30, 2:30, c] == img).all()
    with pytest.raises(ValueError):
        ao.to_rgb32(np.zeros((2, 32, 32), np.uint8))


def test_balanced_subset_is_fixed_sorted_and_balanced():
    labels = np.repeat(np.arange(10), 50)[np.random.default_rng(3).permutation(500)]
    idx = ao.balanced_subset(labels, 23, seed=0)
    assert len(idx) == 23 and len(set(idx)) == 23 and (np.diff(idx) > 0).all()
    counts = np.bincount(labels[idx], minlength=10)
    assert sorted(counts.tolist()) == [2] * 7 + [3] * 3
    assert (ao.balanced_subset(labels, 23, seed=0) == idx).all()
    assert not (ao.balanced_subset(labels, 23, seed=1) == idx).all()
    with pytest.raises(ao.UsageError):
        ao.balanced_subset(labels, 501, seed=0)


def test_cifar10_layout_is_read_back_by_our_data_module(tmp_path):
    rng = np.random.default_rng(0)
    tx, ty = rng.integers(0, 256, (13, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 13)
    vx, vy = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 4)
    ao.write_cifar10_layout(tmp_path, tx, ty, vx, vy, ao.FASHION_CLASSES)
    train = data.load_split("cifar10", tmp_path, True, None)  # no md5 refusal, no download
    test = data.load_split("cifar10", tmp_path, False, None)
    assert (train.data == tx).all() and train.targets == ty.tolist()
    assert (test.data == vx).all() and test.targets == vy.tolist()
    assert train.classes == ao.FASHION_CLASSES


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs the Debian Fashion-MNIST package")
def test_load_fashion_reads_the_idx_files():
    x, y = ao.load_fashion(FASHION, train=False)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [1000] * 10


ORIGINAL_LOG = """epoch 1/4
{"metric": "resnet8_val_accuracy", "value": 50.0}
epoch 2/4
{"metric": "resnet8_val_accuracy", "value": 62.5}
temperature is 2
epoch 3/4
{"metric": "resnet8_val_accuracy", "value": 70.0}
epoch 4/4
{"metric": "resnet8_val_accuracy", "value": 71.25}
"""


def test_parse_original_log_phase1_phi_is_T_over_tau_max():
    epochs = ao.parse_original_log(ORIGINAL_LOG, tau_max=2)
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert [e["temperature"] for e in epochs] == [1, 1, 2, 2]
    assert [e["phi"] for e in epochs] == [0.5, 0.5, 1.0, 1.0]
    assert [e["test_accuracy"] for e in epochs] == [0.5, 0.625, 0.7, 0.7125]
    plain = ao.parse_original_log(ORIGINAL_LOG, tau_max=None)
    assert all(e["phi"] is None and e["temperature"] is None for e in plain)


def test_verdict_sentences():
    same = ao.verdict("annealing", [0.80, 0.82], [0.81, 0.79], stats.welch([0.80, 0.82], [0.81, 0.79]))
    assert same.startswith("ours and the original are statistically indistinguishable on "
                           "annealing test accuracy")
    a, b = [0.90, 0.91, 0.90], [0.70, 0.71, 0.70]
    diff = ao.verdict("scratch", a, b, stats.welch(a, b))
    assert diff.startswith("ours and the original differ on scratch test accuracy: ours 90.33%")
    assert "+20.00 points" in diff


def _run(code, method, seed, acc, phis=()):
    epochs = [{"phase": "phase1", "epoch": i + 1, "phi": p} for i, p in enumerate(phis)]
    return {"code": code, "method": method, "seed": seed, "test_accuracy": acc, "epochs": epochs}


def test_summarize_and_report(tmp_path):
    runs = [_run("ours", "annealing", 1, 0.8, [0.5, 1.0]), _run("original", "annealing", 1, 0.81,
                                                                 [0.5, 1.0]),
            _run("ours", "annealing", 2, 0.82, [0.5, 1.0]), _run("original", "annealing", 2, 0.79,
                                                                 [0.5, 1.0])]
    s = ao.summarize(runs, ["annealing", "scratch"])
    assert "scratch" not in s and s["phi_identical"]
    assert s["annealing"]["mean_std"]["ours"][0] == pytest.approx(0.81)
    runs[1]["epochs"][0]["phi"] = 0.25
    assert not ao.summarize(runs, ["annealing"])["phi_identical"]
    report = {"finished": "now", "seconds": 1.0, "command": "python x", "summary": s,
              "settings": {"train_images": 4, "test_images": 2, "subset_seed": 0,
                           "teacher": "resnet20", "student": "resnet8", "teacher_epochs": 1,
                           "p1": 2, "p2": 1, "tau_max": 2, "learning_rate": 0.1, "seeds": [1, 2]},
              "teacher": {"original_test_accuracy": 0.9, "ours_test_accuracy": 0.89},
              "differences": ["one"], "timings": {"teacher (original)": 3.0}}
    md = tmp_path / "r.md"
    ao.write_report(md, report)
    text = md.read_text()
    assert s["annealing"]["verdict"] in text
    assert "| 2 | 1.0000 | 1.0000 | yes |" in text
    assert "| annealing | 81.00 +- 1.41 | 80.00 +- 1.41 | +1.00 |" in text


def test_report_only_rebuilds_the_summary_and_adds_notes(tmp_path):
    runs = [{**_run(code, "annealing", seed, acc, [0.5, 1.0]), "best_last_phase_test_accuracy": acc}
            for code, seed, acc in [("ours", 1, 0.8), ("ours", 2, 0.82), ("original", 1, 0.81),
                                    ("original", 2, 0.79)]]
    report = {"finished": "now", "seconds": 1.0, "command": "python x", "runs": runs,
              "settings": {"train_images": 4, "test_images": 2, "subset_seed": 0,
                           "teacher": "resnet20", "student": "resnet8", "teacher_epochs": 1,
                           "p1": 2, "p2": 1, "tau_max": 2, "learning_rate": 0.1, "seeds": [1, 2],
                           "methods": ["annealing"]},
              "teacher": {"original_test_accuracy": 0.9, "ours_test_accuracy": None},
              "differences": [], "timings": {}}
    md = tmp_path / "r.md"
    md.with_suffix(".json").write_text(json.dumps(report))
    (tmp_path / "notes.txt").write_text("A note by hand.")
    proc = _cli("--original", str(tmp_path), "--report", str(md), "--report-only",
                "--notes", str(tmp_path / "notes.txt"))
    assert proc.returncode == 0, proc.stderr
    text = md.read_text()
    assert "A note by hand." in text and "| annealing phase 2 | 81.00 +- 1.41 |" in text
    assert set(json.loads(md.with_suffix(".json").read_text())["summary"]) >= {
        "annealing", "annealing phase 2", "phi", "phi_identical"}
    proc = _cli("--original", str(tmp_path), "--report", str(tmp_path / "none.md"), "--report-only")
    assert proc.returncode == 2 and proc.stderr.startswith("error: cannot read")


def _cli(*args, env=None):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_bad_original_path_is_one_line_exit_2(tmp_path):
    proc = _cli("--original", str(tmp_path), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --original") and proc.stderr.count("\n") == 1


def test_p1_must_be_a_multiple_of_tau_max(tmp_path):
    proc = _cli("--original", str(tmp_path), "--p1", "5", "--tau-max", "2")
    assert proc.returncode == 2 and "multiple" in proc.stderr and proc.stderr.count("\n") == 1


ORIGINAL = os.environ.get("ANNEALING_KD_ORIGINAL")


@pytest.mark.skipif(not ORIGINAL, reason="set ANNEALING_KD_ORIGINAL to the original Annealing_KD")
@pytest.mark.skipif(not FASHION.is_dir(), reason="needs the Debian Fashion-MNIST package")
def test_whole_comparison_at_a_tiny_size(tmp_path):
    md = tmp_path / "report" / "against-original.md"
    proc = _cli("--original", ORIGINAL, "--out", str(tmp_path / "runs"), "--report", str(md),
                "--train-images", "128", "--test-images", "64", "--teacher-epochs", "1",
                "--p1", "2", "--p2", "1", "--tau-max", "2", "--seeds", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(md.with_suffix(".json").read_text())
    s = report["summary"]
    assert s["phi"]["ours"] == s["phi"]["original"] == [0.5, 1.0] and s["phi_identical"]
    for m in ("annealing", "scratch"):
        for code in ("ours", "original"):
            accs = s[m]["test_accuracy"][code]
            assert len(accs) == 2 and all(0 <= a <= 1 for a in accs)
        assert s[m]["verdict"] in md.read_text()
    assert 0 <= report["teacher"]["ours_test_accuracy"] <= 1
    ours = [r for r in report["runs"] if r["code"] == "ours" and r["method"] == "annealing"]
    assert [[e["phase"] for e in r["epochs"]] for r in ours] == [["phase1"] * 2 + ["phase2"]] * 2
    assert (tmp_path / "runs" / "teacher" / "checkpoint.tar").is_file()
