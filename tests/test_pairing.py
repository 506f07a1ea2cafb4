"""Rows of a table are paired by seed: every method's student starts from the same weights and
sees the same batches (order and augmentation) at epoch e, in both data paths of the image CLI."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
import torch

from common.trainer import Trainer
from computer_vision_tasks.annealing_kd_train import main

TINY = ["--dataset", "fake", "--train-subset", "64", "--val-size", "16", "--batch-size", "16",
        "--num-workers", "0", "--device", "cpu", "--teacher", "plane2", "--student", "resnet8",
        "--teacher_epochs", "1", "--seed", "3"]
METHODS = {"scratch": ["--student-epochs", "2"], "kd": ["--student-epochs", "2"],
           "annealing": ["--student_epochs_p1", "2", "--student_epochs_p2", "1",
                         "--max_temperature", "2"]}
FIT = Trainer.fit


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha1(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _student_view(tmp_path, monkeypatch, method: str, *extra: str) -> dict:
    """The student's initial weights and, per epoch of its first phase, the batches it saw."""
    seen: dict = {"init": None, "batches": []}
    fit = FIT

    def recording_fit(self, model, phase, loader, batches):
        if phase.name not in ("student", "phase1"):
            return fit(self, model, phase, loader, batches)
        seen["init"] = {k: _digest(v) for k, v in self.acc.unwrap_model(model).state_dict().items()}
        forward = batches.student_logits

        def student_logits(m, b):
            seen["batches"].append((_digest(b[0]), b[1].tolist(), b[2].tolist()))
            return forward(m, b)

        return fit(self, model, phase, loader, replace(batches, student_logits=student_logits))

    monkeypatch.setattr(Trainer, "fit", recording_fit)
    out = tmp_path / f"{method}{'-'.join(extra)}"
    assert main([*TINY, *METHODS[method], "--method", method, *extra, "--output-dir", str(out)]) == 0
    return seen


@pytest.mark.parametrize("loader", [[], ["--no-tensor-loader"]], ids=["tensor", "dataloader"])
def test_every_method_sees_the_same_student_start_and_stream(tmp_path, monkeypatch, loader):
    views = {m: _student_view(tmp_path, monkeypatch, m, *loader) for m in METHODS}
    ref = views["scratch"]
    assert ref["init"] and len(ref["batches"]) == 2 * 4  # 2 epochs of 4 batches
    for method, view in views.items():
        assert view["init"] == ref["init"], method
        assert view["batches"] == ref["batches"], method
    # the stream changes with the epoch and the seed: no two epochs alike
    assert ref["batches"][:4] != ref["batches"][4:]


def test_another_seed_gives_another_start_and_stream(tmp_path, monkeypatch):
    a = _student_view(tmp_path, monkeypatch, "scratch")
    b = _student_view(tmp_path, monkeypatch, "scratch", "--seed", "4")
    assert a["init"] != b["init"] and a["batches"] != b["batches"]
