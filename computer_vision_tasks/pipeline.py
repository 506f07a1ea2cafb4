"""The image pipeline (torchvision datasets, image folders, Hugging Face image datasets): data,
models, forward, evaluation and saving of each role; the method (``annealing_kd.common.methods``) says which
phases run. Imported only when a run starts (not by ``--help``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from annealing_kd.common.cli import settings
from annealing_kd.common.errors import UsageError
from annealing_kd.common.integrations import model_card
from annealing_kd.common.integrations.tracking import FOLDER, trackers
from annealing_kd.common.methods import PhasePlan, get_method, run_method, table
from annealing_kd.common.methods.objectives import options_of
from annealing_kd.common.run_folder import (
    RunDir,
    check_apart,
    environment_info,
    load_weights,
    weights_writer,
)
from annealing_kd.common.training.guards import (
    check_teacher,
    has_batch_norm,
    majority_share,
    recalibrate_bn,
)
from annealing_kd.common.training.lr_schedules import LrSchedule
from annealing_kd.common.training.seeding import role_seed, seed_everything
from annealing_kd.common.training.trainer import (
    BatchReader,
    Phase,
    Trainer,
    frozen_logits,
    make_accelerator,
    predict,
)
from annealing_kd.computer_vision_tasks import data, inputs, model_zoo, models, own_args
from annealing_kd.computer_vision_tasks.cli import CLI


def read_state_dict(p: Path) -> dict[str, torch.Tensor]:
    """Our safetensors, or the original's torch.save'd ``{'model_state_dict': ...}`` (weights_only)."""
    if p.suffix == ".safetensors":
        return load_weights(p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"cannot read teacher checkpoint {p} ({type(exc).__name__}); give our "
                         ".safetensors file or a torch.save'd {'model_state_dict': ...}") from None
    state = obj.get("model_state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise UsageError(f"teacher checkpoint {p} holds no state dict; give our .safetensors "
                         "file or a torch.save'd {'model_state_dict': ...}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_teacher_checkpoint(model, path: str, arch: str, num_classes: int) -> None:
    """Load a teacher checkpoint that must fit ``model`` exactly (else a one-line UsageError)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"teacher checkpoint {p} does not exist; check --teacher-checkpoint")
    state = read_state_dict(p)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    heads = [k for k, v in own.items() if k in state and state[k].shape != v.shape
             and v.dim() >= 1 and v.shape[0] == num_classes and state[k].shape[1:] == v.shape[1:]]
    if heads and not missing and not unexpected and len(wrong) <= 2:  # weight (and bias)
        raise UsageError(f"teacher checkpoint {p} has {state[heads[0]].shape[0]} classes "
                         f"({heads[0]}) but the dataset has {num_classes}; give a teacher "
                         "trained on this dataset's classes")
    if missing or unexpected or wrong:
        detail = "; ".join(s for s in (
            f"{len(missing)} tensors missing (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
            f"shape mismatch {wrong[0]}" if wrong else "") if s)
        raise UsageError(f"teacher checkpoint {p} does not fit --teacher {arch} with {num_classes} "
                         f"classes ({detail}); pass the architecture and --dataset it was trained on")
    model.load_state_dict(state)


class ImagePipeline:
    """One run: builds data, models and the trainer, then runs ``args.method``."""

    def __init__(self, args) -> None:
        self.args, self.method = args, get_method(args.method)
        check_apart(Path(args.output_dir), inputs.input_paths(args))  # before the data is read
        self.arch = {"student": args.student, "teacher": args.teacher, "assistant": args.assistant}
        roles = [r for r in ("student", "teacher", "assistant") if self.method.uses(r)]
        for role in roles:
            model_zoo.check_model_name(self.arch[role], f"--{role}")
        if args.pretrained:
            model_zoo.check_pretrained([self.arch[r] for r in roles])
        self.acc = acc = make_accelerator(args.device, args.amp, log_with=trackers(args.report_to),
                                          project_dir=str(Path(args.output_dir) / FOLDER))
        seed_everything(args.seed)
        with acc.main_process_first():  # one process downloads / unpacks
            self.load_data()
        self.split = "val" if self.splits.val is not None else "test"
        # own data without a test split: the selection split is all that is reported
        self.report = "test" if self.splits.test is not None else "val"
        self.batches_per_epoch = math.ceil(len(self.splits.train) / (args.batch_size * acc.num_processes))
        self.memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
        # each role's initial weights come from its own seed: a seed's student starts from the
        # same weights whatever the method (a teacher from a checkpoint needs no pretrained ones)
        self.models = {}
        for r in roles:
            seed_everything(role_seed(args.seed, r))
            self.models[r] = self.make(self.arch[r], args.pretrained and not (
                r == "teacher" and args.teacher_checkpoint))
        self.trains_teacher = "teacher" in roles and not args.teacher_checkpoint
        if "teacher" in roles and args.teacher_checkpoint:
            load_teacher_checkpoint(self.models["teacher"], args.teacher_checkpoint, args.teacher,
                                    self.spec.num_classes)
        with acc.main_process_first():
            self.run = RunDir(args.output_dir, overwrite=args.overwrite_output_dir,
                              resume=args.resume, is_main=acc.is_main_process,
                              check=acc.is_main_process, inputs=inputs.input_paths(args),
                              program="annealing_kd_train")
        self.inputs = inputs.fingerprints(args)
        if args.resume:
            self.run.check_same({**vars(args), "inputs": self.inputs}, settings.resume_keys(CLI))
        self.make_loaders()
        self.frozen: dict[str, torch.nn.Module] = {}
        self.config = {**vars(args), "num_classes": self.spec.num_classes,
                       "train_images": len(self.splits.train),
                       "val_images": len(self.splits.val) if self.splits.val is not None else 0,
                       "test_images": len(self.splits.test) if self.splits.test is not None else 0,
                       "processes": acc.num_processes, "inputs": self.inputs,
                       "derived": self.own_info}  # from the data: never compared with a flag
        self.trainer = Trainer(acc, self.run, config=self.config, env=environment_info(),
                               evaluate=self.evaluate,
                               selection_metric=f"{self.split}_accuracy", selected_on=self.split,
                               seed=args.seed, resume=args.resume, deterministic=args.deterministic,
                               log_every=args.logging_steps, trackers=trackers(args.report_to))
        self.cache = self.make_cache()

    def make_cache(self):
        """The teacher-logit cache of ``--logits-cache-dir`` (one process only), or None."""
        from annealing_kd.computer_vision_tasks.teacher_cache import ImageCache

        args, acc = self.args, self.acc
        if not args.logits_cache_dir:
            return None
        if acc.num_processes > 1:
            acc.print("logit cache: not used with several processes; the teacher runs live")
            return None
        cache = ImageCache(args.logits_cache_dir, args.logits_cache_max_gb, acc, args.channels_last)
        if args.resume:  # the counters of the interrupted process go on
            cache.stats["streams"].update(self.run.read_results().get("logit_cache", {})
                                          .get("streams", {}))
        self.trainer.extra["logit_cache"] = cache.stats
        return cache

    # ---- data and models ---------------------------------------------------------------------
    def load_data(self) -> None:
        """A torchvision dataset, or own data (imagefolder / hf:<name>): classes, size and
        normalisation from the data."""
        args = self.args
        self.own_info: dict[str, Any] = {}
        if own_args.is_own(args.dataset):
            from annealing_kd.computer_vision_tasks import own_data

            loaded = own_data.load(args)
            self.spec, self.splits, self.own_info = loaded.spec, loaded.splits, loaded.info
        else:
            self.spec = data.get_spec(args.dataset)
            self.splits = data.make_splits(args.dataset, args.dataset_dir, args.val_size,
                                           args.train_subset, args.seed)

    def make(self, name: str, pretrained: bool) -> torch.nn.Module:
        model = model_zoo.create_model(name, self.spec.num_classes, self.spec.channels,
                                       self.spec.size, pretrained)
        return model.to(memory_format=self.memory_format)

    def loader(self, ds, train: bool):
        """The in-memory tensor loader (any device, one process; its stream depends on (seed,
        epoch) only), else torchvision's DataLoader (images decoded from disk, DDP,
        ``--no-tensor-loader``)."""
        args, acc = self.args, self.acc
        bs = args.batch_size if train else 2 * args.batch_size
        in_memory = self.own_info.get("images_in_memory", True)  # own data decoded per batch
        if acc.num_processes == 1 and not args.no_tensor_loader and in_memory:
            return data.tensor_loader(ds, self.spec, bs, train, args.seed, acc.device,
                                      args.channels_last)
        if train:
            return data.train_loader(ds, bs, args.seed, args.num_workers)
        return acc.prepare(data.eval_loader(ds, bs, args.num_workers))

    def make_loaders(self) -> None:
        splits = self.splits
        self.train_loader = self.loader(splits.train, True)
        self.sel_loader = self.loader(splits.val if splits.val is not None else splits.test, False)
        self.test_loader = (self.loader(splits.test, False) if splits.test is not None
                            else self.sel_loader)

    def forward(self, model, batch) -> torch.Tensor:
        return model(batch[0].contiguous(memory_format=self.memory_format))

    def frozen_forward(self, model, batch) -> torch.Tensor:
        with self.acc.autocast():  # a model that accelerate did not prepare: autocast here
            return self.forward(model, batch)

    @staticmethod
    def labels(batch) -> torch.Tensor:
        return batch[1]

    def recalibrate(self, model) -> None:
        """--recalibrate-bn: recompute the model's batch-norm statistics on the training batches."""
        if self.args.recalibrate_bn:
            batches = (b[0].to(self.acc.device).contiguous(
                memory_format=self.memory_format) for b in self.train_loader)
            with self.acc.autocast():
                recalibrate_bn(model, batches)

    def evaluate(self, model) -> dict[str, float]:
        """An epoch's metric: accuracy on the selection split (after --recalibrate-bn)."""
        self.recalibrate(model)
        return {f"{self.split}_accuracy": self.accuracy(model, self.sel_loader)}

    def accuracy(self, model, loader, frozen: bool = False) -> float:
        fwd = self.frozen_forward if frozen else self.forward
        logits, y = predict(self.acc, model, loader, fwd, self.labels)
        return (logits.argmax(1) == y).float().mean().item()

    def frozen_accuracy(self, role: str, model, split: str, own: bool = False) -> float:
        """Accuracy of a frozen model on the test or val split (its logits cached, if asked)."""
        from annealing_kd.computer_vision_tasks.teacher_cache import split_labels

        loader = self.test_loader if split == "test" else self.sel_loader
        if self.cache is None:
            return self.accuracy(model, loader, True)
        ds = getattr(self.splits, split)
        logits = self.cache.eval_logits(role, split, model, loader, ds, lambda: predict(
            self.acc, model, loader, self.frozen_forward, self.labels)[0], own)
        return (logits.argmax(1) == split_labels(ds)).float().mean().item()

    def describe(self, role: str, model, source: str) -> None:
        info = {"model": self.arch[role], "parameters": models.num_parameters(model),
                "source": source}
        if self.report == "test":
            info["test_accuracy"] = self.frozen_accuracy(role, model, "test")
        if self.split == "val":
            info["val_accuracy"] = self.frozen_accuracy(role, model, "val")
        self.trainer.extra[role] = info
        if role == "teacher":
            self.acc.print(f"teacher {self.arch[role]}: {self.report} accuracy "
                           f"{info[f'{self.report}_accuracy']:.4f}")
            info["chance_check"] = self.check_chance(model, info[f"{self.split}_accuracy"])

    def check_chance(self, teacher, accuracy: float) -> dict[str, Any]:
        """The chance-teacher guard on the selection split: one warning line (or the error of
        --fail-on-chance-teacher) when the teacher is no better than chance; its record."""
        advice = "check --teacher-checkpoint, --teacher and how the teacher was trained"
        if has_batch_norm(teacher) and not self.args.recalibrate_bn:
            advice = ("if its batch-norm statistics lag (low BN momentum), pass --recalibrate-bn "
                      "to recompute them on training batches; else " + advice)
        from annealing_kd.computer_vision_tasks.teacher_cache import split_labels

        labels = split_labels(self.splits.val if self.split == "val" else self.splits.test)
        return check_teacher({"accuracy": accuracy}, self.spec.num_classes, len(labels), self.split,
                             advice, majority_share(labels), fail=self.args.fail_on_chance_teacher,
                             say=self.acc.is_main_process)

    # ---- the method's hooks (annealing_kd.common.methods.run.Pipeline) --------------------------------------
    def phase(self, step: PhasePlan) -> Phase:
        """SGD; ResNets (and torchvision:/timm: models): x0.1 at each lr milestone of the phase;
        plain CNNs: constant lr/10."""
        args = self.args
        resnet = not model_zoo.is_plain_cnn(self.arch[step.model])
        lr = settings.for_budget(args, "learning_rate", step.budget)
        lr = lr if resnet else lr / 10
        schedule = LrSchedule("multistep", settings.for_budget(args, "lr_milestones", step.budget)
                              ) if resnet else LrSchedule("constant")

        def make_optimizer(model):
            return torch.optim.SGD(model.parameters(), lr=lr, momentum=args.momentum,
                                   weight_decay=args.weight_decay)

        return Phase(step.phase, step.objective, settings.epochs(args, step.budget),
                     make_optimizer, schedule, max_temperature=args.max_temperature,
                     anneal_per_step=args.anneal_per_step, options=options_of(args))

    def model(self, role: str):
        return self.acc.prepare(self.models.pop(role))

    def targets(self, role: str):
        if role not in self.frozen:  # a teacher from --teacher-checkpoint
            self.frozen[role] = self.models.pop(role).to(self.acc.device)
            self.recalibrate(self.frozen[role])
            self.describe(role, self.frozen[role], str(self.args.teacher_checkpoint))
        return frozen_logits(self.frozen[role], self.frozen_forward)

    def fit(self, model, step: PhasePlan, phase: Phase, targets) -> dict[str, Any]:
        if self.cache is not None and step.teacher:  # the frozen model's epochs from the cache
            targets = self.cache.targets(step.teacher, self.frozen[step.teacher], targets,
                                         self.train_loader, self.splits.train, self.args.seed,
                                         self.spec.num_classes, self.arch[step.model],
                                         phase.epochs)
        batches = BatchReader(self.forward, self.labels, targets)
        try:
            return self.trainer.fit(model, phase, self.train_loader, batches)
        finally:
            getattr(targets, "close", lambda: None)()  # a cached epoch left unfinished

    def finished(self, role: str, model) -> None:
        self.frozen[role] = self.acc.unwrap_model(model)
        self.describe(role, self.frozen[role], str(self.run / role / "best.safetensors"))

    # ---- the whole run ---------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        acc, run, trainer = self.acc, self.run, self.trainer
        student, chosen, phases = run_method(self.method, self)
        self.frozen.clear()  # the student's last phase no longer needs a teacher
        model = acc.unwrap_model(student)
        last = {k: v.detach().clone() for k, v in model.state_dict().items()}
        trainer.load_best(student, chosen["phase"])
        # with the cache, the best weights' logits are kept for a run that takes them as teacher
        best_test = self.frozen_accuracy("student", model, self.report, own=True)
        if all(torch.equal(v, last[k]) for k, v in model.state_dict().items()):
            last_test = best_test  # the best epoch is often the last: evaluated once
        else:  # the last epoch's weights, evaluated live, then the best ones back
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(last)
            last_test = self.accuracy(model, self.test_loader, True)
            model.load_state_dict(best)
        if acc.is_main_process and phases != ["student"]:
            stage = run.transaction()  # both recorded in the run's manifest, then moved into place
            stage.write(run / "student" / "best.safetensors",
                        weights_writer(acc.unwrap_model(student).state_dict()))
            stage.link(run / phases[-1] / "last.safetensors", run / "student" / "last.safetensors")
            stage.commit()
        metrics = {f"{self.split}_accuracy": chosen["metric"], f"{self.report}_accuracy": best_test,
                   f"last_epoch_{self.report}_accuracy": last_test}
        trainer.extra["student"] = {"model": self.arch["student"],
                                    "parameters": models.num_parameters(student),
                                    "checkpoint": str(run / "student" / "best.safetensors")}
        final = trainer.final_entry(chosen, metrics)
        if acc.is_main_process:  # before results.json, whose final entry marks the run complete
            model_card.write(run, "README.md", trainer.results(final), "image", self.teacher_path())
        trainer.write_results(final)
        acc.print(self.summary(chosen, metrics))
        if self.cache is not None:
            acc.print(self.cache.summary())
        acc.wait_for_everyone()
        return final

    def teacher_path(self) -> str | None:
        """The teacher's weights: the checkpoint given, or the one trained in this run."""
        if not self.method.uses("teacher"):
            return None
        return self.args.teacher_checkpoint or str(self.run / "teacher" / "best.safetensors")

    def summary(self, chosen: dict, metrics: dict) -> str:
        """The end-of-run table: teacher (and assistant), student best and last-epoch accuracy on
        the test split (own data without one: on the selection split)."""
        extra, report = self.trainer.extra, self.report
        rows = {role: [extra[role]["model"], f"{extra[role]['parameters']:,}",
                       f"{100 * extra[role][f'{report}_accuracy']:.2f}%", ""]
                for role in ("teacher", "assistant") if role in extra}
        s = extra["student"]
        rows["student"] = [s["model"], f"{s['parameters']:,}",
                           f"{100 * metrics[f'{report}_accuracy']:.2f}%",
                           f"{100 * metrics[f'last_epoch_{report}_accuracy']:.2f}%"]
        val_source = ("val images" if self.own_info.get("splits", {}).get("val") == "val"
                      else "held-out training images")
        where = (f"{self.config['val_images']} {val_source}" if self.split == "val"
                 else "the test set (as the paper; optimistic)")
        notes = [f"student selected: {chosen['phase']} epoch {chosen['epoch']}, by accuracy on {where}",
                 *settings.recipe_notes(self.args)]
        if report != "test":
            notes.append("no test split: the accuracies above are on the selection split (optimistic)")
        return table("", ["model", "params", f"{report} acc", "last epoch"], rows, notes)
