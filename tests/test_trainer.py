"""The shared loop on a tiny synthetic task: both phases, results, frozen teacher, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from annealing_kd.common.errors import UsageError
from annealing_kd.common.run_folder import RunDir, load_committed, load_weights
from annealing_kd.common.training.environment import environment_info
from annealing_kd.common.training.lr_schedules import STEP_DECAY, LrSchedule
from annealing_kd.common.training.seeding import EpochShuffleSampler, seed_everything
from annealing_kd.common.training.trainer import (
    BatchReader,
    Phase,
    Trainer,
    frozen_logits,
    make_accelerator,
    predict,
)


class Boom(RuntimeError):
    pass


def make_data(n=96, d=8, k=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, k, generator=g)
    return TensorDataset(x, (x @ w).argmax(1))


def run(tmp_path, *, fail_at_eval: int | None = None, resume=False, tau=2, epochs=(4, 2),
        per_step=False):
    """Teacher (task) -> phase1 (anneal, teacher on the fly) -> phase2 (task from best phase 1)."""
    seed_everything(0)
    acc = make_accelerator("cpu")
    ds = make_data()
    loader = DataLoader(ds, batch_size=16, sampler=EpochShuffleSampler(len(ds), seed=1))
    eval_loader = acc.prepare(DataLoader(ds, batch_size=32))
    forward = lambda m, b: m(b[0])  # noqa: E731
    labels = lambda b: b[1]  # noqa: E731
    calls = {"eval": 0, "teacher": 0}

    def evaluate(model):
        calls["eval"] += 1
        if fail_at_eval is not None and calls["eval"] == fail_at_eval:
            raise Boom("killed")
        logits, y = predict(acc, model, eval_loader, forward, labels)
        return {"accuracy": (logits.argmax(1) == y).float().mean().item()}

    rd = RunDir(tmp_path / "run", resume=resume)
    trainer = Trainer(acc, rd, config={"method": "annealing"}, env=environment_info(),
                      evaluate=evaluate, selection_metric="accuracy", selected_on="val",
                      seed=3, resume=resume)
    sgd = lambda m: torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9)  # noqa: E731
    step_decay = LrSchedule("multistep", STEP_DECAY)
    teacher = acc.prepare(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)))
    trainer.fit(teacher, Phase("teacher", "task", 3, sgd, step_decay), loader, BatchReader(forward, labels))

    def counting_forward(m, b):
        calls["teacher"] += 1
        assert torch.is_inference_mode_enabled()
        return m(b[0])

    student = acc.prepare(nn.Linear(8, 3))
    targets = frozen_logits(teacher, counting_forward)
    p1 = Phase("phase1", "anneal", epochs[0], sgd, step_decay, max_temperature=tau,
               anneal_per_step=per_step)
    trainer.fit(student, p1, loader, BatchReader(forward, labels, targets))
    teacher_calls_p1 = calls["teacher"]
    trainer.load_best(student, "phase1")
    trainer.fit(student, Phase("phase2", "task", epochs[1], sgd, step_decay), loader,
                BatchReader(forward, labels))
    chosen = trainer.select(["phase1", "phase2"])
    trainer.write_results(trainer.final_entry(chosen))
    return {"trainer": trainer, "student": student, "teacher": teacher, "calls": calls,
            "teacher_calls_p1": teacher_calls_p1, "run": rd}


def test_two_phases_records_results_and_curves(tmp_path):
    out = run(tmp_path)
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    for key in ("config", "versions", "device", "git_commit", "epochs", "final"):
        assert key in res
    assert [r["phase"] for r in res["epochs"]] == ["teacher"] * 3 + ["phase1"] * 4 + ["phase2"] * 2
    for r in res["epochs"]:
        assert set(r) == {"phase", "epoch", "temperature", "phi", "lr", "train_loss", "eval", "seconds"}
    p1 = [r for r in res["epochs"] if r["phase"] == "phase1"]
    assert [r["temperature"] for r in p1] == [2, 2, 1, 1]
    assert [r["phi"] for r in p1] == [0.5, 0.5, 1.0, 1.0]
    assert [r["lr"] for r in p1] == pytest.approx([0.5, 0.05, 0.005, 0.005])  # after each epoch
    final = res["final"]
    assert set(final) >= {"selected_by", "selected_on", "selected_epoch", "metrics"}
    assert final["selected_on"] == "val" and final["selected_by"] == "accuracy"
    best = max((r for r in res["epochs"] if r["phase"] != "teacher"),
               key=lambda r: r["eval"]["accuracy"])
    assert final["metrics"]["accuracy"] == best["eval"]["accuracy"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 9 and json.loads(lines[-1])["phase"] == "phase2"
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert out["trainer"].best["phase1"]["metric"] > 0.5  # the student learned something


def test_teacher_is_frozen_and_never_runs_in_phase_two(tmp_path):
    out = run(tmp_path)
    teacher = out["teacher"]
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert out["teacher_calls_p1"] == 4 * 6  # 4 epochs x 6 batches
    assert out["calls"]["teacher"] == out["teacher_calls_p1"]  # phase 2 never called it
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_phase_two_starts_from_best_phase_one(tmp_path):
    out = run(tmp_path, epochs=(4, 1))
    best_p1 = load_weights(tmp_path / "run" / "phase1" / "best.safetensors")
    p2_first = json.loads((tmp_path / "run" / "results.json").read_text())["epochs"][-1]
    assert p2_first["phase"] == "phase2"
    assert set(best_p1) == set(out["student"].state_dict())


@pytest.mark.parametrize("fail_at_eval", [5, 8])  # mid phase 1, mid phase 2
def test_resume_reaches_the_same_weights(tmp_path, fail_at_eval):
    ref = run(tmp_path / "a")["student"].state_dict()
    with pytest.raises(Boom):
        run(tmp_path / "b", fail_at_eval=fail_at_eval)
    with pytest.raises(UsageError, match="unfinished run"):
        RunDir(tmp_path / "b" / "run")
    resumed = run(tmp_path / "b", resume=True)["student"].state_dict()
    assert all(torch.equal(ref[k], resumed[k]) for k in ref)
    res = json.loads((tmp_path / "b" / "run" / "results.json").read_text())
    assert len(res["epochs"]) == 9  # no epoch recorded twice


def test_finished_run_is_not_overwritten(tmp_path):
    run(tmp_path)
    with pytest.raises(UsageError, match="finished run.*overwrite_output_dir"):
        RunDir(tmp_path / "run")
    with pytest.raises(UsageError, match="finished run"):
        RunDir(tmp_path / "run", resume=True)
    rd = RunDir(tmp_path / "run", overwrite=True)
    assert (tmp_path / "run" / "results.json").exists()  # removed only when the new run starts
    rd.start()
    assert not (tmp_path / "run" / "results.json").exists()


def test_per_step_annealing(tmp_path):
    run(tmp_path, tau=4, epochs=(2, 1), per_step=True)  # 12 optimizer steps, 3 per stage
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    p1 = [r for r in res["epochs"] if r["phase"] == "phase1"]
    assert [r["temperature"] for r in p1] == [3, 1]  # value at the last step of each epoch


def test_impossible_schedule_is_refused(tmp_path):
    with pytest.raises(UsageError, match="max_temperature"):
        run(tmp_path, tau=5, epochs=(3, 1))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    acc = make_accelerator("cpu")
    ds = make_data()
    loader = DataLoader(ds, batch_size=16, sampler=EpochShuffleSampler(len(ds)))
    model = acc.prepare(nn.Linear(8, 3))
    saved = {}

    def evaluate(m):  # after epoch 1: remember the checkpoint, then poison the forward
        saved.update(load_weights(tmp_path / "r" / "student" / "last.safetensors")
                     if (tmp_path / "r" / "student" / "last.safetensors").exists() else {})
        scale["value"] = float("nan")
        return {"accuracy": 0.0}

    scale = {"value": 1.0}
    trainer = Trainer(acc, RunDir(tmp_path / "r"), config={}, env={}, evaluate=evaluate,
                      selection_metric="accuracy", selected_on="val")
    sgd = lambda m: torch.optim.SGD(m.parameters(), lr=0.1)  # noqa: E731
    fwd = lambda m, b: m(b[0]) * scale["value"]  # noqa: E731
    with pytest.raises(UsageError, match="epoch 2.*not finite.*last good epoch") as err:
        trainer.fit(model, Phase("student", "task", 3, sgd), loader, BatchReader(fwd, lambda b: b[1]))
    named = str(err.value).split(" is kept in ")[1].split(";")[0]
    assert named == str(tmp_path / "r" / "student" / "last.safetensors") and Path(named).is_file()
    state, _ = load_committed(tmp_path / "r" / "student")
    assert state["epoch"] == 1
    kept = load_weights(tmp_path / "r" / "student" / "last.safetensors")
    assert all(torch.isfinite(v).all() for v in kept.values())
