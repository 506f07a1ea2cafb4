"""run_table's reports (issue 18): the paper's protocol and the two figures per row, paired tests,
the per-epoch curves, and the fmnist-ablation report read from earlier folders (--from)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from reproduce import run_table as rt
from reproduce import table_report as tr


def _record(phase: str, epoch: int, value: float, key: str = "test_accuracy", lr: float = 0.1) -> dict:
    """An epoch record as the CLIs (and the versions before manifests) write it."""
    return {"phase": phase, "epoch": epoch, "temperature": None, "phi": None, "lr": lr,
            "train_loss": 0.5, "eval": {key: value}, "seconds": 1.0}


def _write(out: Path, final: dict, epochs: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"config": {}, "epochs": epochs, "final": final}))


def _image_run(out: Path, phases: dict[str, list[float]], selected_on: str) -> None:
    """A finished image run: per phase the eval accuracy of each epoch (on test when
    ``selected_on == 'test'``, else on val, the test figures then written in final)."""
    key = f"{selected_on}_accuracy"
    epochs = [_record(p, i + 1, v, key) for p, vals in phases.items() for i, v in enumerate(vals)]
    best = max(epochs, key=lambda r: r["eval"][key])  # the CLI's choice: best over all phases
    metrics = {key: best["eval"][key], "test_accuracy": best["eval"][key] - 0.05,
               "last_epoch_test_accuracy": epochs[-1]["eval"][key] - 0.05}
    if selected_on == "test":
        metrics = {"test_accuracy": best["eval"][key],
                   "last_epoch_test_accuracy": epochs[-1]["eval"][key]}
    _write(out, {"selected_by": key, "selected_on": selected_on, "selected_phase": best["phase"],
                 "selected_epoch": best["epoch"], "metrics": metrics}, epochs)


def _dry_run(capsys, *argv: str) -> tuple[list[str], list[list[str]]]:
    assert rt.main([*argv, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    return ([x for x in lines if x.startswith("#")],
            [shlex.split(x) for x in lines if not x.startswith("#")])


# ---- the protocol --------------------------------------------------------------------------------
def test_cifar_tables_train_on_all_50000_images_and_say_so(capsys, tmp_path: Path) -> None:
    header, cmds = _dry_run(capsys, "--table", "cifar10", "--seeds", "2", "--out", str(tmp_path))
    assert len(cmds) == 1 + 6 * 2  # the teacher; five paper rows and the recipe row per seed
    for cmd in cmds:  # every row, the teacher included: nothing held out
        assert cmd[cmd.index("--val-size") + 1] == "0"
    text = "\n".join(header)
    assert "all 50,000 cifar10 training images" in text and "selected on test" in text
    assert "**best test epoch**" in text and "best phase-2 epoch" in text
    assert "**last epoch**" in text and "unselected" in text

    header, cmds = _dry_run(capsys, "--table", "cifar100", "--protocol", "heldout", "--seeds", "1",
                            "--out", str(tmp_path))
    assert not any("--val-size" in c for c in cmds)  # the CLI's default: 5,000 held out
    text = "\n".join(header)
    assert "holds 5,000 of the 50,000 cifar100 training images out" in text
    assert "trains on 45,000" in text and "**selected epoch**" in text

    header, cmds = _dry_run(capsys, "--table", "fmnist-ablation", "--seeds", "1", "--out",
                            str(tmp_path), "--extra", "--train-subset 6000")
    assert "holds 600 of the 60,000 fashion-mnist training images out" in "\n".join(header)
    header, cmds = _dry_run(capsys, "--table", "cifar10", "--seeds", "1", "--out", str(tmp_path),
                            "--extra", "--val-size 32")  # --extra's --val-size: held out
    assert "holds 32 of the 50,000" in "\n".join(header)
    assert all(c[c.index("--val-size") + 1] == "32" for c in cmds if "--val-size" in c)


@pytest.mark.parametrize(("argv", "message"), [
    (["--table", "cifar10", "--protocol", "paper", "--val-size", "100"],
     "--protocol paper contradicts --val-size 100"),
    (["--table", "cifar10", "--protocol", "heldout", "--extra", "--val-size 0"],
     "--protocol heldout contradicts --val-size 0"),
    (["--table", "glue-bert", "--protocol", "paper"], "--protocol applies to the image tables"),
    (["--table", "fmnist-ablation", "--from", "."], "--from reads runs for a report: add --report-only"),
    (["--table", "fmnist-ablation", "--report-only", "--from", "/no/such/dir"],
     "--from /no/such/dir is not a folder"),
    (["--table", "fmnist-ablation", "--report-only", "--notes", "/no/such/file"],
     "--notes /no/such/file cannot be read"),
])
def test_protocol_and_source_usage_errors(argv: list[str], message: str, capsys) -> None:
    assert rt.main([*argv, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


# ---- figures of one run --------------------------------------------------------------------------
def test_figures_paper_protocol_take_the_best_epoch_of_the_students_last_phase() -> None:
    """Annealing-KD evaluated on test every epoch: phase 1 reached 95, phase 2 at best 90 and
    last 89: the paper's figure is 90 (the original reports phase 2's best), the last 89."""
    epochs = [_record("phase1", 1, 0.95), _record("phase2", 1, 0.90), _record("phase2", 2, 0.89)]
    final = {"selected_by": "test_accuracy", "selected_on": "test", "metrics": {
        "test_accuracy": 0.95, "last_epoch_test_accuracy": 0.89}}
    assert tr.figures({"final": final, "epochs": epochs}, "cifar") == pytest.approx(
        {"selected": 90.0, "last": 89.0})
    # TAKD in one run: the assistant's epochs are not the student's
    takd = [_record("assistant", 1, 0.99), _record("student", 1, 0.70), _record("student", 2, 0.80)]
    assert tr.figures({"final": {**final, "metrics": {"test_accuracy": 0.99}}, "epochs": takd},
                      "cifar") == pytest.approx({"selected": 80.0, "last": 80.0})
    # phase 1 only: its best
    p1 = [_record("phase1", 1, 0.60), _record("phase1", 2, 0.70), _record("phase1", 3, 0.65)]
    assert tr.figures({"final": final, "epochs": p1}, "cifar")["selected"] == pytest.approx(70.0)


def test_figures_heldout_and_older_results_read_final() -> None:
    """Selected on val: the test accuracy of that epoch, as final says (also without
    selected_on, as versions before the manifest wrote it)."""
    epochs = [_record("student", 1, 0.5, "val_accuracy"), _record("student", 2, 0.9, "val_accuracy")]
    final = {"selected_by": "val_accuracy", "selected_on": "val", "metrics": {
        "val_accuracy": 0.9, "test_accuracy": 0.87, "last_epoch_test_accuracy": 0.86}}
    assert tr.figures({"final": final, "epochs": epochs}, "cifar") == pytest.approx(
        {"selected": 87.0, "last": 86.0})
    old = {k: v for k, v in final.items() if k != "selected_on"}
    assert tr.figures({"final": old, "epochs": epochs}, "cifar") == pytest.approx(
        {"selected": 87.0, "last": 86.0})
    glue = {"selected_by": "corr", "metrics": {"pearson": 0.8, "corr": 0.79}}
    recs = [_record("phase2", 1, 0.8, "pearson"), _record("phase2", 2, 0.7, "pearson")]
    assert tr.figures({"final": glue, "epochs": recs}, "glue") == pytest.approx(
        {"selected": 80.0, "last": 70.0})


def test_mean_curve_over_seeds_and_phase_boundaries() -> None:
    a = [{"phase": "phase1", "value": 50.0, "lr": 0.1}, {"phase": "phase1", "value": 60.0, "lr": 0.01},
         {"phase": "phase2", "value": 70.0, "lr": 0.1}]
    b = [{**r, "value": r["value"] + 10} for r in a]
    m = tr.mean_curve([a, b])
    assert m["value"] == [55.0, 65.0, 75.0] and m["lr"] == [0.1, 0.01, 0.1]
    assert m["boundaries"] == [2] and m["seeds"] == 2


# ---- whole reports from fake runs ----------------------------------------------------------------
def test_image_table_report_has_both_figures_labelled(tmp_path: Path) -> None:
    """cifar10 on the paper's protocol: KD seeds (best test, last) = (85, 80), (87, 84);
    Annealing-KD's phase 1 peaks above its phase 2, which the paper's figure ignores."""
    argv = ["--table", "cifar10", "--seeds", "2", "--out", str(tmp_path)]
    args = rt.build_parser().parse_args(argv)
    plan = rt.make_plan(args)
    runs = {(r.row, r.seed): r for r in plan.runs}
    _image_run(runs["KD", 0].out, {"student": [0.70, 0.85, 0.80]}, "test")
    _image_run(runs["KD", 1].out, {"student": [0.75, 0.87, 0.84]}, "test")
    _image_run(runs["Annealing-KD", 0].out, {"phase1": [0.99], "phase2": [0.88, 0.86]}, "test")
    _image_run(runs["Annealing-KD", 1].out, {"phase1": [0.99], "phase2": [0.90, 0.90]}, "test")
    _image_run(runs["teacher", 0].out, {"student": [0.93, 0.92]}, "test")
    rt.write_report(plan, args, "cmd")
    md = (tmp_path / "cifar10.md").read_text()
    assert "| row | CIFAR-10: best test epoch | CIFAR-10: last epoch | CIFAR-10: paper |" in md
    assert "| KD | 86.00 ± 1.41 | 82.00 ± 2.83 | 88.45 |" in md
    assert "| Annealing-KD | 89.00 ± 1.41 | 88.00 ± 2.83 | 89.44 |" in md
    assert "| teacher | 93.00 | 92.00 | 93.80 |" in md
    assert "**best test epoch**: the paper's figure" in md and "all 50,000" in md
    assert "| Annealing-KD | CIFAR-10 | KD | 2 | +3.00 | " in md  # 88 - 85, 90 - 87
    assert "Tests, best test epoch" in md and "Tests, last epoch" in md
    assert "Pairing: every row of a seed starts from the same student weights" in md
    assert (tmp_path / "cifar10-curves.png").stat().st_size > 1000
    data = json.loads((tmp_path / "cifar10.json").read_text())
    assert data["figures"] == {"selected": "best test epoch", "last": "last epoch"}
    assert data["values"]["last"]["Annealing-KD"]["CIFAR-10"] == pytest.approx({"0": 86.0, "1": 90.0})
    assert data["curves"]["KD"]["CIFAR-10"]["value"] == pytest.approx([72.5, 86.0, 82.0])


def test_glue_table_report_best_dev_and_last_epoch(tmp_path: Path) -> None:
    argv = ["--table", "glue-bert", "--tasks", "rte", "--seeds", "2", "--out", str(tmp_path)]
    args = rt.build_parser().parse_args(argv)
    plan = rt.make_plan(args)
    for run in plan.runs:
        if run.row in ("KD", "fine-tune"):
            vals = [0.60, 0.70, 0.65] if run.row == "KD" else [0.55, 0.58, 0.50]
            vals = [v + 0.02 * run.seed for v in vals]
            _write(run.out, {"selected_by": "accuracy", "selected_on": "dev",
                             "metrics": {"accuracy": max(vals)}},
                   [_record("student", i + 1, v, "accuracy") for i, v in enumerate(vals)])
    rt.write_report(plan, args, "cmd")
    md = (tmp_path / "glue-bert.md").read_text()
    assert "| row | RTE: best dev epoch | RTE: last epoch | RTE: paper |" in md
    assert "| KD | 71.00 ± 1.41 | 66.00 ± 1.41 |" in md
    assert "| fine-tune | 59.00 ± 1.41 | 51.00 ± 1.41 |" in md
    assert "**best dev epoch**" in md
    # best dev epochs: 70 - 58, 72 - 60: a constant difference, no paired test (no spread)
    assert "| KD | RTE | fine-tune | 2 | +12.00 | – | +12.00 | 0." in md
    assert "| KD | RTE | fine-tune | 2 | +15.00 | " in md  # last epochs: 65 - 50, 67 - 52


def _snapshot(folder: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime)
            for p in sorted(folder.rglob("*"))}


def test_ablation_report_from_two_earlier_folders(tmp_path: Path, capsys) -> None:
    """fmnist-ablation: the first rows in one folder, later rows in another (older results.json:
    no manifest, no selected_on); the report reads both, writes only into --out, gives both
    figures per row, paired and Welch tests against KD and Annealing-KD, the curves and the
    notes."""
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "report"
    args = rt.build_parser().parse_args(["--table", "fmnist-ablation", "--seeds", "3", "--out", str(a)])
    plan = rt.make_plan(args)
    late = {"AKD phase 1 only", "AKD phase 2 at lr 0.001"}
    values = {"KD": [0.89, 0.90, 0.91], "Annealing-KD": [0.87, 0.87, 0.88],
              "AKD phase 1 only": [0.86, 0.88, 0.90], "AKD phase 2 at lr 0.001": [0.90, 0.92, 0.93]}
    for run in plan.runs:
        if run.row not in values:
            continue
        root = b if run.row in late else a
        v = values[run.row][run.seed]
        phases = {"student": [v - 0.1, v]} if run.row == "KD" else {"phase1": [v - 0.2, v - 0.1],
                                                                    "phase2": [v]}
        epochs = [_record(p, i + 1, x, "val_accuracy") for p, xs in phases.items()
                  for i, x in enumerate(xs)]
        _write(root / run.out.relative_to(a), {"selected_by": "val_accuracy", "metrics": {
            "val_accuracy": v, "test_accuracy": v, "last_epoch_test_accuracy": v - 0.01}}, epochs)
    (b / "annealing-kd-s0").mkdir()  # an unfinished copy in the later folder: not read
    notes = tmp_path / "notes.txt"
    notes.write_text("Phase 2 at a low rate closes the gap.\nSecond line.\n")
    before = {f: _snapshot(f) for f in (a, b)}
    argv = ["--table", "fmnist-ablation", "--seeds", "3", "--report-only", "--out", str(out),
            "--from", str(a), "--from", str(b), "--notes", str(notes)]
    assert rt.main(argv) == 0
    assert {f: _snapshot(f) for f in (a, b)} == before  # read only
    md = (out / "fmnist-ablation.md").read_text()
    assert "| KD | 90.00 ± 1.00 | 89.00 ± 1.00 |" in md
    assert "| Annealing-KD | 87.33 ± 0.58 | 86.33 ± 0.58 |" in md
    assert "| AKD phase 1 only | 88.00 ± 2.00 | 87.00 ± 2.00 |" in md
    assert "| AKD phase 2 at lr 0.001 | 91.67 ± 1.53 | 90.67 ± 1.53 |" in md
    assert "| student alone | – | – |" in md
    # phase 2 at lr 0.001 - Annealing-KD per seed: 3, 5, 5 -> mean 4.33, sd 1.155, t = 6.5,
    # df 2, p = 1 - t / sqrt(t^2 + 2) = 0.0229; against KD: 1, 2, 2 -> t = 5, p = 0.0377
    assert "| AKD phase 2 at lr 0.001 | teacher resnet20 | Annealing-KD | 3 | +4.33 | 0.023* |" in md
    assert "| AKD phase 2 at lr 0.001 | teacher resnet20 | KD | 3 | +1.67 | 0.038* |" in md
    assert "| Annealing-KD | teacher resnet20 | KD | 3 | -2.67 |" in md
    assert "## Conclusion\n\nPhase 2 at a low rate closes the gap.\nSecond line.\n" in md
    assert f"finished runs read from `{a}`, `{b}`" in md
    assert "Per-epoch curves ([fmnist-ablation-curves.png]" in md
    assert (out / "fmnist-ablation-curves.png").stat().st_size > 1000
    data = json.loads((out / "fmnist-ablation.json").read_text())
    curve = data["curves"]["Annealing-KD"]["teacher resnet20"]
    assert curve["boundaries"] == [2] and curve["value"][2] == pytest.approx(87.333, abs=1e-3)
    assert data["notes"] == ["Phase 2 at a low rate closes the gap.", "Second line."]
    assert not (out / "kd-s0").exists() and os.listdir(out)  # nothing copied, the report written
    # without notes: a slot for the conclusion
    assert rt.main(argv[:-2]) == 0
    assert "_Not written yet: rerun with `--report-only --notes FILE`" in (
        out / "fmnist-ablation.md").read_text()
