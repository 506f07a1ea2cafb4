"""docs/architecture.md "where new things go", each checked: a new image dataset touches
computer_vision_tasks/data.py only, a model family computer_vision_tasks/model_zoo.py only, a text
task NLP_glue_tasks/tasks.py only, and a new task domain reuses the methods, the loop and the run
directory through the hooks of annealing_kd.common.methods.run.Pipeline. (A method and an objective with an
option: tests/test_new_method.py.) Each test changes only what its file would hold (by
monkeypatch) and runs the CLI unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from glue_fixtures import HEADERS, tiny_bert, write_glue
from torch import nn

IMAGE = ["--train-subset", "32", "--val-size", "16", "--batch-size", "16", "--num-workers", "0",
         "--device", "cpu", "--teacher", "plane2", "--student", "resnet8", "--teacher_epochs", "1",
         "--student_epochs_p1", "2", "--student_epochs_p2", "1", "--max_temperature", "2"]


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_a_dataset_is_data_py(tmp_path, monkeypatch):
    """A Spec in DATASETS and its reader in load_split: 4 classes of 12x12 grey images."""
    from annealing_kd.computer_vision_tasks import data
    from annealing_kd.computer_vision_tasks.annealing_kd_train import main

    spec = data.Spec(4, 1, 12, (0.5,), (0.25,), flip=False)
    monkeypatch.setitem(data.DATASETS, "tiny-grey", spec)
    load_split = data.load_split

    def with_tiny(name, root, train, transform):
        if name != "tiny-grey":
            return load_split(name, root, train, transform)
        images, labels = data.fake_arrays(64 if train else 24, spec, 1 if train else 2)
        return data.ArrayImages(images, labels, transform)

    monkeypatch.setattr(data, "load_split", with_tiny)
    out = tmp_path / "run"
    assert main([*IMAGE, "--dataset", "tiny-grey", "--output-dir", str(out)]) == 0
    r = results(out)
    assert r["config"]["num_classes"] == 4 and r["config"]["test_images"] == 24
    assert [e["phase"] for e in r["epochs"]] == ["teacher", "phase1", "phase1", "phase2"]


class TinyNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def test_a_model_family_is_model_zoo_py(tmp_path, monkeypatch):
    from annealing_kd.computer_vision_tasks import model_zoo
    from annealing_kd.computer_vision_tasks.annealing_kd_train import main

    monkeypatch.setitem(model_zoo.FAMILIES, "toy", model_zoo.Family(
        lambda name: name == "tiny", "the toy family has tiny only",
        lambda name, classes, channels, pretrained: TinyNet(classes, channels)))
    out = tmp_path / "run"
    assert main([*IMAGE, "--dataset", "fake", "--teacher", "toy:tiny", "--output-dir", str(out)]) == 0
    r = results(out)
    assert r["teacher"]["model"] == "toy:tiny"
    assert r["teacher"]["parameters"] == sum(p.numel() for p in TinyNet(10, 3).parameters())
    assert main([*IMAGE, "--dataset", "fake", "--student", "toy:huge",
                 "--output-dir", str(tmp_path / "bad")]) == 2


def test_a_text_task_is_tasks_py(tmp_path, monkeypatch):
    """A Task (files, columns, labels, metrics) in TASKS: here RTE's files under another name."""
    from annealing_kd.NLP_glue_tasks import tasks
    from annealing_kd.NLP_glue_tasks.annealing_kd_glue import main

    monkeypatch.setitem(tasks.TASKS, "toy", tasks.Task(
        "toy", "RTE", "sentence1", "sentence2", "label", ("entailment", "not_entailment"),
        ("entailment", "not_entailment"), ("accuracy", "f1"), "f1"))
    assert "RTE" in HEADERS
    folder = write_glue(tmp_path / "glue", "RTE", 16, 8, 4)
    out = tmp_path / "run"
    assert main(["--task_name", "toy", "--data_dir", str(folder), "--output_dir", str(out),
                 "--method", "finetune", "--num_train_epochs", "1", "--no_cuda", "--do_train",
                 "--student_model_name_or_path", tiny_bert(tmp_path / "s", num_labels=None),
                 "--do_predict"]) == 0
    r = results(out)
    assert r["task"] == "toy" and r["final"]["selected_by"] == "f1"
    assert set(r["final"]["metrics"]) == {"accuracy", "f1"}
    assert (out / "predictions" / "RTE.tsv").is_file()


def test_a_task_domain_reuses_methods_loop_and_run_dir(tmp_path):
    """A third domain: its own pipeline (the hooks of annealing_kd.common.methods.run.Pipeline) on vectors."""
    from annealing_kd.common.cli.settings import epochs
    from annealing_kd.common.methods import get_method, run_method
    from annealing_kd.common.methods.objectives import options_of
    from annealing_kd.common.run_folder import RunDir
    from annealing_kd.common.training.seeding import EpochShuffleSampler
    from annealing_kd.common.training.trainer import (
        BatchReader,
        Phase,
        Trainer,
        frozen_logits,
        make_accelerator,
        predict,
    )

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    y = (x @ torch.randn(6, 3, generator=g)).argmax(1)
    ds = torch.utils.data.TensorDataset(x, y)
    args = type("Args", (), {"student_epochs_p1": 2, "student_epochs_p2": 1, "kd_alpha": 0.5,
                             "kd_temperature": 4.0, "kd_reduction": "batchmean",
                             "anneal_reduction": "mean"})()

    class VectorPipeline:
        trains_teacher, batches_per_epoch = False, 4

        def __init__(self) -> None:
            self.acc = make_accelerator("cpu")
            self.eval_loader = self.acc.prepare(torch.utils.data.DataLoader(ds, batch_size=32))
            self.trainer = Trainer(self.acc, RunDir(tmp_path / "run"), config={"method": "annealing"},
                                   env={}, evaluate=self.evaluate, selection_metric="accuracy",
                                   selected_on="train")
            self.teacher = nn.Linear(6, 3)

        def evaluate(self, model):
            logits, labels = predict(self.acc, model, self.eval_loader, lambda m, b: m(b[0]),
                                     lambda b: b[1])
            return {"accuracy": (logits.argmax(1) == labels).float().mean().item()}

        def phase(self, step):
            return Phase(step.phase, step.objective, epochs(args, step.budget),
                         lambda m: torch.optim.SGD(m.parameters(), lr=0.1), max_temperature=2,
                         options=options_of(args))

        def model(self, role):
            return self.acc.prepare(nn.Linear(6, 3))

        def targets(self, role):
            return frozen_logits(self.teacher, lambda m, b: m(b[0]))

        def fit(self, model, step, phase, targets):
            loader = torch.utils.data.DataLoader(ds, batch_size=16,
                                                 sampler=EpochShuffleSampler(len(ds), 0))
            return self.trainer.fit(model, phase, loader, BatchReader(lambda m, b: m(b[0]),
                                                                  lambda b: b[1], targets))

        def finished(self, role, model):
            pass

    student, chosen, phases = run_method(get_method("annealing"), VectorPipeline())
    assert phases == ["phase1", "phase2"] and chosen["phase"] in phases
    r = results(tmp_path / "run")
    assert [e["phase"] for e in r["epochs"]] == ["phase1", "phase1", "phase2"]
    assert [e["phi"] for e in r["epochs"]] == [0.5, 1.0, None]
