"""Rows of a table are paired by seed: every method's student starts from the same weights and
sees the same batches (order and augmentation) at epoch e, in both data paths of the image CLI;
in the text CLI also the same dropout masks."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
import torch

from annealing_kd.common.training.trainer import Trainer
from annealing_kd.computer_vision_tasks.annealing_kd_train import main

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


# ---- the text CLI --------------------------------------------------------------------------------
TEXT_METHODS = {"finetune": ["--num_train_epochs", "2"], "kd": ["--num_train_epochs", "2"],
                "annealing": ["--num_train_epochs_phase_1", "2", "--num_train_epochs_phase_2", "1",
                              "--max_temperature", "2"]}


def _text_student_view(root, method: str, monkeypatch, seed: str = "3") -> dict:
    """The student's initial weights and, per batch of its first phase, the token ids it saw and
    the state of torch's random stream at its forward (which fixes its dropout masks)."""
    from annealing_kd.NLP_glue_tasks.annealing_kd_glue import main as glue_main

    seen: dict = {"init": None, "batches": []}
    fit = FIT

    def recording_fit(self, model, phase, loader, batches, **kw):
        if phase.name not in ("student", "phase1"):
            return fit(self, model, phase, loader, batches, **kw)
        seen["init"] = {k: _digest(v) for k, v in self.acc.unwrap_model(model).state_dict().items()}
        forward = batches.student_logits

        def student_logits(m, b):
            assert m.training  # dropout on: its masks come from the random stream
            seen["batches"].append((_digest(b["input_ids"]), _digest(torch.get_rng_state())))
            return forward(m, b)

        return fit(self, model, phase, loader, replace(batches, student_logits=student_logits), **kw)

    monkeypatch.setattr(Trainer, "fit", recording_fit)
    out = root / f"{method}-{seed}"
    teacher = [] if method == "finetune" else ["--teacher_model_name_or_path", str(root / "teacher")]
    assert glue_main(["--task_name", "rte", "--data_dir", str(root / "glue" / "RTE"), "--do_train",
                      "--output_dir", str(out), "--logits_cache_dir", str(root / "cache"),
                      "--student_model_name_or_path", str(root / "student"), *teacher,
                      "--per_gpu_train_batch_size", "8", "--per_gpu_eval_batch_size", "16",
                      "--learning_rate", "1e-3", "--no_cuda", "--seed", seed, "--method", method,
                      *TEXT_METHODS[method]]) == 0
    return seen


@pytest.mark.slow
def test_text_rows_are_paired(tmp_path, monkeypatch):
    """GLUE rows of a seed: the same new head, the same batches in the same order and the same
    dropout masks (the random stream at every student forward) in fine-tune, KD and Annealing-KD's
    phase 1; another seed changes them."""
    from glue_fixtures import tiny_bert, write_glue

    write_glue(tmp_path / "glue", "RTE", 24, 12, 6)
    tiny_bert(tmp_path / "teacher", num_labels=2, seed=2)
    tiny_bert(tmp_path / "student", num_labels=None, seed=10)  # no head: drawn from --seed
    views = {m: _text_student_view(tmp_path, m, monkeypatch) for m in TEXT_METHODS}
    ref = views["finetune"]
    assert ref["init"] and len(ref["batches"]) == 2 * 3  # 2 epochs of 3 batches
    for method, view in views.items():
        assert view["init"] == ref["init"], method
        assert view["batches"] == ref["batches"], method
    assert ref["batches"][:3] != ref["batches"][3:]  # the epochs differ
    other = _text_student_view(tmp_path, "finetune", monkeypatch, seed="4")
    assert other["init"] != ref["init"] and other["batches"] != ref["batches"]
