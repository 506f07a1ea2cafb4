"""The image pipeline (torchvision datasets, image folders, Hugging Face image datasets): data,
models, forward, evaluation and saving of each role; the method (``annealing_kd.common.methods``) says which
phases run. Imported only when a run starts (not by ``--help``)."""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from ..common.cli import settings
from ..common.cli.inputs import Inputs, Opened, given
from ..common.errors import UsageError
from ..common.methods import PhasePlan, get_method, run_method, table
from ..common.run_folder import check_apart, load_weights, weights_writer
from ..common.run_folder.run_dir import json_writer
from ..common.training.guards import (
    check_teacher,
    has_batch_norm,
    majority_share,
    recalibrate_bn,
)
from ..common.training.lr_schedules import LrSchedule
from ..common.training.pipeline import BasePipeline, run_accelerator
from ..common.training.seeding import role_seed, seed_everything
from ..common.training.trainer import BatchReader, Phase, frozen_logits, predict
from . import data, model_zoo, models, own_args
from .cli import CLI
from .teacher_cache import ImageCache, split_labels


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


def inputs_of(args) -> Inputs:
    """What an image run reads: the files that the loader of the dataset's folder opens (a Hub
    dataset: its name) and the teacher checkpoint; the logits cache is kept apart too."""
    name = args.dataset[3:] if args.dataset.startswith("hf:") else None
    if name is None:  # a torchvision dataset or an image folder (fake: no files)
        roots = {"dataset_dir": args.dataset_dir} if args.dataset != "fake" else {}
    else:  # a save_to_disk folder, or a Hub name
        roots = {"dataset": name} if name and Path(name).exists() else {}
    return Inputs(apart=roots | given(args, ("teacher_checkpoint", "logits_cache_dir")),
                  data={k: Opened(v) for k, v in roots.items()},
                  hub={"dataset": name} if name is not None and not roots else {},
                  models=given(args, ("teacher_checkpoint",)))


class ImagePipeline(BasePipeline):
    """One run: builds data, models and the trainer, then runs ``args.method``."""

    cli, program = CLI, "annealing_kd_train"

    def __init__(self, args) -> None:
        inputs = inputs_of(args)
        check_apart(Path(args.output_dir), inputs.apart)  # before the data is read
        self.arch = {"student": args.student, "teacher": args.teacher, "assistant": args.assistant}
        roles = [r for r in ("student", "teacher", "assistant") if get_method(args.method).uses(r)]
        for role in roles:
            model_zoo.check_model_name(self.arch[role], f"--{role}")
        if args.pretrained:
            model_zoo.check_pretrained([self.arch[r] for r in roles])
        super().__init__(args, run_accelerator(args, args.device, args.amp))
        seed_everything(args.seed)
        # one process downloads / unpacks; the data's fingerprint: the files its loader opened
        with self.acc.main_process_first(), next(iter(inputs.data.values()), nullcontext()):
            if own_args.is_own(args.dataset):  # imagefolder / hf:<name>: all from the data
                from . import own_data

                own = own_data.load(args)
                self.spec, self.splits, self.own_info = own.spec, own.splits, own.info
            else:
                self.spec, self.own_info = data.get_spec(args.dataset), {}
                self.splits = data.make_splits(args.dataset, args.dataset_dir, args.val_size,
                                               args.train_subset, args.seed)
        self.split = "val" if self.splits.val is not None else "test"
        # own data without a test split: the selection split is all that is reported
        self.report = "test" if self.splits.test is not None else "val"
        self.batches_per_epoch = math.ceil(len(self.splits.train)
                                           / (args.batch_size * self.acc.num_processes))
        self.memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
        # each role's initial weights come from its own seed: a seed's student starts from the
        # same weights whatever the method (a teacher from a checkpoint needs no pretrained ones)
        self.models, spec = {}, self.spec
        for r in roles:
            seed_everything(role_seed(args.seed, r))
            pretrained = args.pretrained and not (r == "teacher" and args.teacher_checkpoint)
            model = model_zoo.create_model(self.arch[r], spec.num_classes, spec.channels,
                                           spec.size, pretrained)
            self.models[r] = model.to(memory_format=self.memory_format)
        self.trains_teacher = "teacher" in roles and not args.teacher_checkpoint
        if "teacher" in roles and args.teacher_checkpoint:
            load_teacher_checkpoint(self.models["teacher"], args.teacher_checkpoint, args.teacher,
                                    self.spec.num_classes)
        sizes = {f"{k}_images": len(v) if v is not None else 0 for k, v in vars(self.splits).items()}
        self.start_run(inputs, self.evaluate, f"{self.split}_accuracy", self.split,
                       args.logging_steps, num_classes=self.spec.num_classes, **sizes,
                       processes=self.acc.num_processes,
                       derived=self.own_info)  # from the data: never compared with a flag
        self.make_loaders()
        self.frozen: dict[str, torch.nn.Module] = {}
        self.cache = self.make_cache()

    def make_cache(self):
        """The teacher-logit cache of ``--logits-cache-dir`` (one process only), or None."""
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
        train, val, test = vars(self.splits).values()
        self.train_loader = self.loader(train, True)
        self.sel_loader = self.loader(val if val is not None else test, False)
        self.test_loader = self.loader(test, False) if test is not None else self.sel_loader

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
        for split in dict.fromkeys((self.report, self.split)):  # the reported split, then the selection split
            info[f"{split}_accuracy"] = self.frozen_accuracy(role, model, split)
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

        return self.make_phase(step, make_optimizer, schedule)

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
        run.write("student/config.json", json_writer(model_zoo.student_config(
            self.arch["student"], self.spec)))  # loadable alone: model_zoo.from_pretrained
        self.finish(final, "student/README.md", self.args.teacher_checkpoint or str(
            run / "teacher" / "best.safetensors"), self.summary(chosen, metrics))
        if self.cache is not None:
            acc.print(self.cache.summary())
        acc.wait_for_everyone()
        return final

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
