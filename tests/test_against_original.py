"""reproduce/against_original.py: data preparation, log parsing, statistics and report helpers
(always), and the whole comparison at a tiny size when ANNEALING_KD_ORIGINAL names the original
code (e.g. /work/original/Annealing_KD)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from annealing_kd.computer_vision_tasks import data
from reproduce import against_original as ao
from reproduce import stats

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


# ---- step for step (--steps) -------------------------------------------------------------------
def test_fixed_batches_count_passes_from_the_first_batch_read():
    from reproduce.steps_common import FixedBatches

    b = FixedBatches([[1, 2], [3, 4]])
    assert len(b) == 2
    unread = iter(b)  # made and never read (tqdm's asyncio flavour does this): no pass
    assert b.passes == 0 and unread is not None
    assert list(b) == [1, 2] and b.passes == 1
    b.set_epoch(0)
    assert list(b) == [3, 4] and b.set_epochs == [0]
    with pytest.raises(RuntimeError):
        list(b)
    with pytest.raises(ValueError):
        FixedBatches([[1, 2], [3]])


def test_step_recorder_records_each_backward_value_and_the_lr_of_each_step():
    import torch

    from reproduce.steps_common import StepRecorder

    w = torch.nn.Parameter(torch.tensor([2.0]))
    opt = torch.optim.SGD([w], lr=0.5)
    rec = StepRecorder()
    with rec.active():
        for _ in range(2):
            opt.zero_grad()
            loss = (w ** 2).sum()  # 4, then (2 - 0.5 * 4)^2 = 0
            loss.backward()
            opt.step()
            opt.param_groups[0]["lr"] = 0.25
    (w ** 2).sum().backward()  # after the context: not recorded
    assert rec.take() == {"losses": [4.0, 0.0], "lrs": [0.5, 0.25]}
    assert rec.take() == {"losses": [], "lrs": []}


def test_weight_and_loss_differences_and_verdict():
    import torch

    from reproduce.steps_common import loss_diff, verdict, weight_diff

    a = {"w": torch.tensor([1.0, -4.0]), "n": torch.tensor(3)}
    same = weight_diff(a, {"w": torch.tensor([1.0, -4.0]), "n": torch.tensor(3)})
    assert same == {"max_abs": 0.0, "tensor": "", "max_rel": 0.0, "bit_identical": True}
    near = weight_diff(a, {"w": torch.tensor([1.0, -4.5]), "n": torch.tensor(3)})
    assert near["max_abs"] == 0.5 and near["tensor"] == "w" and near["max_rel"] == 0.5 / 4
    assert weight_diff(a, {"w": a["w"], "n": torch.tensor(4)})["max_abs"] == math.inf
    with pytest.raises(ValueError):
        weight_diff(a, {"w": a["w"]})
    d = loss_diff({"losses": [1.0, 2.0, 3.0], "lrs": [0.1] * 3},
                  {"losses": [1.0, 2.5, 3.0], "lrs": [0.1] * 3})
    assert d["steps"] == [3, 3] and d["max_abs"] == 0.5 and d["max_abs_step"] == 2
    assert d["identical_steps"] == 2 and d["first_different_step"] == 2 and d["same_lr"]
    assert not loss_diff({"losses": [1.0], "lrs": [0.1]}, {"losses": [1.0], "lrs": [0.2]})["same_lr"]
    row = {"loss": d, "weights": same}
    assert verdict(row) == {"pass": False, "bit_identical": False}
    row["loss"] = loss_diff({"losses": [1.0], "lrs": [0.1]}, {"losses": [1.0 + 1e-6], "lrs": [0.1]})
    assert verdict(row) == {"pass": True, "bit_identical": False}
    row["loss"] = loss_diff({"losses": [1.0], "lrs": [0.1]}, {"losses": [1.0, 2.0], "lrs": [0.1] * 2})
    assert not verdict(row)["pass"]  # a step more on one side


def test_split_by_pass_gives_each_phase_its_steps():
    from reproduce.steps_cv import split_by_pass

    rec = {"losses": [1.0, 2.0, 3.0, 4.0, 5.0], "lrs": [0.1, 0.1, 0.01, 0.1, 0.1]}
    out = split_by_pass(rec, [1, 1, 2, 3, 3], [("phase1", 0, 2), ("phase2", 2, 3)])
    assert out == {"phase1": {"losses": [1.0, 2.0, 3.0], "lrs": [0.1, 0.1, 0.01]},
                   "phase2": {"losses": [4.0, 5.0], "lrs": [0.1, 0.1]}}


def test_takd_effective_schedule_is_its_never_true_condition():
    from reproduce.steps_cv import takd_effective

    # TAKD code per epoch of E = 8: lr 0.01 for epoch < int(3E/4) = 6, 0.001 after; base lr 0.1
    total, per_epoch = 80, 10
    lrs = [0.1 * takd_effective(s, total) for s in range(total)]
    for epoch in range(8):
        want = 0.1 * 0.1 if epoch < int(8 * 3 / 4.0) else 0.1 * 0.01
        assert set(lrs[epoch * per_epoch:(epoch + 1) * per_epoch]) == {want}


def test_one_ulp_apart_moves_one_weight_to_the_next_float32():
    import torch

    from reproduce.steps_cv import one_ulp_apart

    state = {"fc.bias": torch.tensor([0.5, 1.0]), "fc.weight": torch.ones(2, 2)}
    moved = one_ulp_apart(state)
    assert moved["fc.bias"][0].item() == 0.5 + 2.0 ** -24 and moved["fc.bias"][1].item() == 1.0
    assert state["fc.bias"][0].item() == 0.5 and torch.equal(moved["fc.weight"], state["fc.weight"])


def test_a_finished_comparison_is_kept_with_step_resume_only_for_the_same_spec(tmp_path):
    from reproduce import steps

    spec = {"name": "x", "kind": "none", "out": str(tmp_path / "x")}
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "x" / "done.json").write_text(json.dumps({"rows": [], "process_seconds": 3.0}))
    assert steps.run_worker(spec, resume=True) == {"rows": [], "process_seconds": 3.0}
    with pytest.raises(ao.UsageError):  # another spec: run again (and this one cannot run)
        steps.run_worker({**spec, "kind": "other"}, resume=True)
    assert not (tmp_path / "x" / "done.json").exists()


def test_adamw3_matches_hand_computed_transformers3_steps():
    import torch

    from reproduce.steps_glue import AdamW3

    lr, b1, b2, eps, wd = 0.1, 0.9, 0.999, 1e-2, 0.5
    p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = AdamW3([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    w, m, v = 1.0, 0.0, 0.0
    for t, g in enumerate((0.4, -0.2), start=1):
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        # eps added to sqrt(v) before the bias correction of the step size; decay after the update
        w = w - lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (math.sqrt(v) + eps)
        w = w - lr * wd * w
        assert p.item() == pytest.approx(w, rel=1e-12)
    torch_p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    torch_opt = torch.optim.AdamW([torch_p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    for g in (0.4, -0.2):
        torch_p.grad = torch.tensor([g], dtype=torch.float64)
        torch_opt.step()
    assert abs(torch_p.item() - p.item()) > 1e-4  # the two semantics really differ


def test_step_arguments_are_checked(tmp_path):
    for bad in (["--step-p1", "6"], ["--step-p2", "2"], ["--step-kd-epochs", "5"],
                ["--step-p1", "8", "--step-tau", "3"], ["--step-batches", "0"]):
        proc = _cli("--steps", "--original", str(tmp_path), *bad)
        assert proc.returncode == 2 and proc.stderr.startswith("error: --step")
        assert proc.stderr.count("\n") == 1


def _step_row(phase, ours, theirs, w=0.0):
    from reproduce.steps_common import loss_diff, verdict

    row = {"phase": phase, "loss": loss_diff({"losses": ours, "lrs": [0.1] * len(ours)},
                                             {"losses": theirs, "lrs": [0.1] * len(theirs)}),
           "weights": {"max_abs": w, "tensor": "fc.weight" if w else "", "max_rel": w,
                       "bit_identical": w == 0.0}, "accuracy": {"ours": [0.5], "original": [0.5]}}
    row.update(verdict(row))
    return row


def test_report_leads_with_the_step_table_and_keeps_the_statistical_section(tmp_path):
    steps = {"finished": "now", "seconds": 12.0, "command": "python x --steps", "results": [
        {"name": "annealing tau_max 2", "process_seconds": 7.0, "notes": ["a note"],
         "rows": [_step_row("phase1", [1.0, 2.0], [1.0, 2.0]),
                  _step_row("phase2", [1.0, 2.0], [1.0, 2.0 + 2e-5], w=3e-6)]}]}
    md = tmp_path / "against-original.md"
    ao.write_report(md, steps=steps)
    text = md.read_text()
    assert text.index("## Step for step") < len(text) and "Low-power" not in text
    assert "| annealing tau_max 2 | phase1 | 2 / 2 | 0 | 2 | - | 0 | yes | yes | 7 |" in text
    assert "|  | phase2 | 2 / 2 | 2.0e-05 | 1 | 2 | 3.0e-06 | no | NO |  |" in text
    assert "- a note" in text and "largest difference in `fc.weight`" in text
    assert "(7 s in all" in text
    report = {"finished": "now", "seconds": 1.0, "command": "python x",
              "summary": ao.summarize([_run("ours", "annealing", 1, 0.8, [1.0]),
                                       _run("original", "annealing", 1, 0.8, [1.0])],
                                      ["annealing"]),
              "settings": {"train_images": 4, "test_images": 2, "subset_seed": 0,
                           "teacher": "resnet20", "student": "resnet8", "teacher_epochs": 1,
                           "p1": 1, "p2": 1, "tau_max": 1, "learning_rate": 0.1, "seeds": [1]},
              "teacher": {"original_test_accuracy": 0.9, "ours_test_accuracy": None},
              "differences": [], "timings": {}}
    md.with_suffix(".json").write_text(json.dumps(report))
    (tmp_path / ao.STEPS_JSON).write_text(json.dumps(steps))
    ao.write_report(md)  # both sections from their JSON files
    text = md.read_text()
    assert text.index("## Step for step") < text.index("## Low-power statistical comparison")


def test_steps_report_only_adds_notes_to_the_step_section(tmp_path):
    steps = {"finished": "now", "seconds": 3.0, "command": "python x --steps", "results": [
        {"name": "kd", "process_seconds": 3.0, "rows": [_step_row("student", [1.0], [1.0])]}]}
    md = tmp_path / "against-original.md"
    (tmp_path / ao.STEPS_JSON).write_text(json.dumps(steps))
    (tmp_path / "notes.txt").write_text("Identical, step by step.")
    proc = _cli("--steps", "--original", str(tmp_path), "--report", str(md), "--report-only",
                "--notes", str(tmp_path / "notes.txt"))
    assert proc.returncode == 0, proc.stderr
    text = md.read_text()
    assert "### What this says\n\nIdentical, step by step." in text
    assert "| kd | student | 1 / 1 | 0 | 1 | - | 0 | yes | yes | 3 |" in text
    proc = _cli("--steps", "--original", str(tmp_path), "--report", str(tmp_path / "x" / "r.md"),
                "--report-only")
    assert proc.returncode == 2 and proc.stderr.startswith("error: cannot read")


TAKD = os.environ.get("ANNEALING_KD_TAKD")


@pytest.mark.skipif(not ORIGINAL, reason="set ANNEALING_KD_ORIGINAL to the original Annealing_KD")
@pytest.mark.skipif(not FASHION.is_dir(), reason="needs the Debian Fashion-MNIST package")
def test_step_for_step_at_a_tiny_size(tmp_path):
    """Annealing-KD (both phases) and GLUE bit-identical to the original; KD against the TAKD
    code (ANNEALING_KD_TAKD) identical but for its KL expression's rounding."""
    md = tmp_path / "report" / "against-original.md"
    args = ["--steps", "--original", ORIGINAL, "--out", str(tmp_path / "runs"), "--report", str(md),
            "--teacher", "resnet8", "--step-batch-size", "16", "--step-batches", "2",
            "--step-test-images", "32", "--step-p1", "4", "--step-tau", "2", "--step-p2", "4",
            "--step-kd-epochs", "4", "--step-phi-tau", "0", "--step-glue-train", "32",
            "--step-quick"]
    proc = _cli(*args, *(["--takd", TAKD] if TAKD else []))
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = {r["name"]: r for r in json.loads((md.parent / ao.STEPS_JSON).read_text())["results"]}
    ann = results["annealing tau_max 2"]["rows"]
    assert [r["phase"] for r in ann] == ["phase1", "phase2"]
    for row in ann:
        assert row["loss"]["steps"] == [8, 8] and row["bit_identical"] and row["loss"]["same_lr"]
    assert ann[0]["best_start"]["bit_identical"]
    glue = next(r for name, r in results.items() if name.startswith("glue"))["rows"]
    assert all(r["bit_identical"] and r["loss"]["steps"] == [8, 8] if r["phase"] == "phase1"
               else r["bit_identical"] for r in glue)
    if TAKD:
        kd = results["kd elementwise-mean"]["rows"][0]
        assert kd["loss"]["steps"] == [8, 8] and kd["loss"]["same_lr"]
        assert abs(kd["loss"]["ours"][0] - kd["loss"]["original"][0]) < 1e-6
        assert results["kd elementwise-mean (KL as the TAKD code computes it)"]["rows"][0]["bit_identical"]
    text = md.read_text()
    assert text.startswith("# Ours against the original code\n\n## Step for step")
