"""--logits-cache-dir in the image CLI: cached targets are the live ones bit for bit (fp32), a
warm run never runs the teacher, KD and Annealing-KD of a seed share their epochs, a damaged
file is computed again, and the key follows what changes the stream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from annealing_kd.common.training.trainer import frozen_logits
from annealing_kd.computer_vision_tasks.annealing_kd_train import main

TINY = ["--dataset", "fake", "--train-subset", "64", "--val-size", "16", "--batch-size", "16",
        "--num-workers", "0", "--device", "cpu", "--teacher", "plane2", "--student", "resnet8",
        "--teacher_epochs", "1", "--seed", "3"]
KD = ["--method", "kd", "--student-epochs", "2"]
ANNEAL = ["--method", "annealing", "--student_epochs_p1", "2", "--student_epochs_p2", "1",
          "--max_temperature", "2"]


def _run(out: Path, *args: str) -> dict:
    assert main([*TINY, *args, "--output-dir", str(out)]) == 0
    return json.loads((out / "results.json").read_text())


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "student" / "best.safetensors")


def _same(a: Path, b: Path) -> bool:
    x, y = _weights(a), _weights(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _train(results: dict) -> dict:
    return results["logit_cache"]["streams"]["teacher train"]


@pytest.fixture
def teacher_calls(monkeypatch):
    """How often the frozen teacher's forward runs (live targets)."""
    import annealing_kd.computer_vision_tasks.pipeline as pipeline

    calls = []

    def counting(teacher, forward):
        live = frozen_logits(teacher, forward)

        def targets(batch):
            calls.append(1)
            return live(batch)

        return targets

    monkeypatch.setattr(pipeline, "frozen_logits", counting)
    return calls


@pytest.mark.parametrize("loader", [[], ["--no-tensor-loader"]], ids=["tensor", "dataloader"])
def test_cached_targets_are_the_live_ones_bit_for_bit(tmp_path, teacher_calls, loader):
    cache = ["--logits-cache-dir", str(tmp_path / "cache"), *loader]
    _run(tmp_path / "live", *KD, *loader)
    live_calls = len(teacher_calls)
    cold = _run(tmp_path / "cold", *KD, *cache)
    assert len(teacher_calls) == 2 * live_calls == 2 * 2 * 4  # 2 epochs of 4 batches each
    warm = _run(tmp_path / "warm", *KD, *cache)
    assert len(teacher_calls) == 2 * live_calls  # the warm run never ran the teacher
    assert _same(tmp_path / "live", tmp_path / "cold") and _same(tmp_path / "live", tmp_path / "warm")
    assert (_train(cold)["files_written"], _train(warm)["files_read"]) == (2, 2)
    assert _train(warm)["files_written"] == 0 and _train(warm)["live_seconds"] == 0
    streams = warm["logit_cache"]["streams"]  # the teacher's val and test logits: read too
    assert streams["teacher val"]["files_read"] == streams["teacher test"]["files_read"] == 1
    for split in ("val_accuracy", "test_accuracy"):  # describe reports the same accuracies
        assert warm["teacher"][split] == cold["teacher"][split]
    # Annealing-KD of the same seed: phase 1 reads KD's epochs 1 and 2
    anneal = _run(tmp_path / "anneal", *ANNEAL, *cache)
    assert len(teacher_calls) == 2 * live_calls
    assert (_train(anneal)["files_read"], _train(anneal)["files_written"]) == (2, 0)
    _run(tmp_path / "anneal-live", *ANNEAL, *loader)
    assert _same(tmp_path / "anneal", tmp_path / "anneal-live")


def test_a_damaged_epoch_file_is_computed_again_with_one_warning(tmp_path, capsys):
    cache = ["--logits-cache-dir", str(tmp_path / "cache")]
    _run(tmp_path / "a", *KD, *cache)
    epoch2 = next((tmp_path / "cache").rglob("epoch-0002.logits"))
    epoch2.write_bytes(epoch2.read_bytes()[:-8])
    capsys.readouterr()
    b = _run(tmp_path / "b", *KD, *cache)
    warnings = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(epoch2) in warnings[0] and "computing" in warnings[0]
    assert (_train(b)["files_read"], _train(b)["files_written"]) == (1, 1)
    assert _same(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize("change", [["--seed", "4"], ["--channels-last"], ["--batch-size", "32"]],
                         ids=["seed", "memory-format", "batch-size"])
def test_what_changes_the_stream_or_the_teacher_changes_the_key(tmp_path, change):
    cache = ["--logits-cache-dir", str(tmp_path / "cache"), "--method", "kd",
             "--student-epochs", "1"]
    _run(tmp_path / "a", *cache)
    b = _run(tmp_path / "b", *cache, *change)
    assert (_train(b)["files_read"], _train(b)["files_written"]) == (0, 1)
    assert len({p.parent for p in (tmp_path / "cache").rglob("epoch-0001.logits")}) == 2


def test_the_size_limit_is_said_once_and_the_run_goes_on_live(tmp_path, capsys):
    _run(tmp_path / "a", *KD, "--logits-cache-dir", str(tmp_path / "cache"),
         "--logits-cache-max-gb", "0")
    out = capsys.readouterr().out
    assert out.count("would pass the limit") == 1 and "per epoch" in out
    assert not list((tmp_path / "cache").rglob("*.logits"))
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert _train(results)["files_live"] == 2


def test_a_trained_teachers_own_test_logits_are_read_by_its_students(tmp_path, monkeypatch,
                                                                      capsys):
    """The run that trains a model keeps its best weights' test logits in the cache: a KD run
    taking that model as its teacher reads them (the same bits it would compute), and the best
    weights, when they are the last epoch's, are evaluated once."""
    import annealing_kd.computer_vision_tasks.pipeline as pipeline

    evals = []
    real = pipeline.predict

    def counting(*args):
        evals.append(1)
        return real(*args)

    monkeypatch.setattr(pipeline, "predict", counting)
    teacher = _run(tmp_path / "teacher", "--method", "scratch", "--student", "plane2",
                   "--student-epochs", "1", "--logits-cache-dir", str(tmp_path / "cache"))
    assert len(evals) == 2  # the val split after the epoch, the test split once (best = last)
    summary = [x for x in capsys.readouterr().out.splitlines() if x.startswith("logit cache")]
    assert "1 written" in summary[-1] and "teacher 0.0s, the trained model's own test logits" \
        in summary[-1]
    assert teacher["final"]["metrics"]["test_accuracy"] \
        == teacher["final"]["metrics"]["last_epoch_test_accuracy"]
    kd = ["--method", "kd", "--student-epochs", "1", "--teacher-checkpoint",
          str(tmp_path / "teacher" / "student" / "best.safetensors")]
    seeded = _run(tmp_path / "kd", *kd, "--logits-cache-dir", str(tmp_path / "cache"))
    assert seeded["logit_cache"]["streams"]["teacher test"]["files_read"] == 1
    assert seeded["teacher"]["test_accuracy"] == teacher["final"]["metrics"]["test_accuracy"]
    fresh = _run(tmp_path / "kd-fresh", *kd, "--logits-cache-dir", str(tmp_path / "fresh"))
    assert fresh["logit_cache"]["streams"]["teacher test"]["files_written"] == 1
    kept = {p.relative_to(tmp_path / "cache"): p.read_bytes()
            for p in (tmp_path / "cache").rglob("test.logits")}
    computed = next((tmp_path / "fresh").rglob("test.logits"))
    assert kept[computed.relative_to(tmp_path / "fresh")] == computed.read_bytes()


def test_a_run_whose_best_epoch_is_not_its_last_keeps_one_file_and_the_same_figures(tmp_path):
    """Best epoch 1 of 4 (seed 0 of this setup): the best weights' test logits are the one file
    kept; the last epoch's are computed live; both figures equal a run without the cache."""
    own = ["--method", "scratch", "--student", "resnet8", "--student-epochs", "4", "--seed", "0"]
    plain = _run(tmp_path / "plain", *own)
    cached = _run(tmp_path / "cached", *own, "--logits-cache-dir", str(tmp_path / "cache"))
    assert plain["final"]["selected_epoch"] == 1  # the case under test: best is not last
    assert plain["final"]["metrics"] == cached["final"]["metrics"]
    streams = cached["logit_cache"]["streams"]
    assert list(streams) == ["student test"] and streams["student test"]["own"]
    assert streams["student test"]["files_written"] == 1
    assert len(list((tmp_path / "cache").rglob("*.logits"))) == 1
    assert _same(tmp_path / "plain", tmp_path / "cached")  # the best weights, written last
