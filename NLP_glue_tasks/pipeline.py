"""The text pipeline: the models, tokenizers and data of each role. Teacher (and assistant)
logits are computed once per example and cached (logit_cache.py); the student of the best epoch
by the task's dev metric is saved with its tokenizer to <out>/student. Imported only when a run
starts (not by ``--help``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..common.cli import settings
from ..common.cli.inputs import Inputs, given
from ..common.errors import UsageError
from ..common.methods import ROLES, PhasePlan, plan, run_method, table
from ..common.training.guards import check_teacher, majority_share
from ..common.training.lr_schedules import LrSchedule
from ..common.training.optim import adamw
from ..common.training.pipeline import BasePipeline, run_accelerator
from ..common.training.seeding import role_seed, seed_everything
from ..common.training.trainer import BatchReader, Phase, frozen_logits, predict
from .cli import CLI
from .data import (
    Attached,
    Collator,
    encode,
    labels_of,
    make_loader,
    model_inputs,
)
from .evaluate import dev_metrics, logits_of, metrics_of_logits
from .logit_cache import cached_logits, default_cache_dir, model_identity
from .metrics import better_label_order
from .models import check_checkpoints, load_model, load_tokenizer
from .tasks import Task, label_columns

MODEL_KEYS = ["teacher_model_name_or_path", "student_model_name_or_path",
              "assistant_model_name_or_path", "config_name", "tokenizer_name"]
# inputs that must lie outside the output folder (and it outside them)
INPUT_KEYS = ["data_dir", *MODEL_KEYS, "cache_dir", "logits_cache_dir", "train_file",
              "validation_file", "test_file"]


def inputs_of(args) -> Inputs:
    """What a text run reads: the data files its flags name (or the hub dataset's name) and
    every model."""
    read = given(args, ("data_dir", "train_file", "validation_file"))
    hub = {}
    if getattr(args, "dataset_name", None):
        hub["dataset_name"] = f"{args.dataset_name}/{args.dataset_config_name or ''}"
    elif not read and args.task_name:
        hub["task_name"] = f"nyu-mll/glue/{args.task_name.lower()}"
    return Inputs(given(args, INPUT_KEYS), read, hub, given(args, MODEL_KEYS))


def amp_of(args) -> str:
    return "fp16" if args.fp16 else "bf16" if args.bf16 else "none"


def accelerator(args, grad_accum: int = 1):
    return run_accelerator(args, "cpu" if args.no_cuda else "auto", amp_of(args), grad_accum)


class TokenizedData:
    """The data as one model sees it: its tokenizer, the token ids of train and dev, dev loaders."""

    def __init__(self, pipe: TextPipeline, tok) -> None:
        self.tok, args, acc = tok, pipe.args, pipe.acc
        # the datasets cache: the main process tokenizes, the others read its files
        with acc.main_process_first():
            self.train = encode(tok, pipe.train_ds, args.max_seq_length, "tokenizing train")
            self.dev = {s: encode(tok, ds, args.max_seq_length, f"tokenizing {s}")
                        for s, ds in pipe.dev_ds.items()}
        self.collator = Collator(tok, max_length=pipe.pad, pad_to_multiple_of=pipe.pad_multiple,
                                 regression=pipe.task.is_regression)
        self.dev_loaders = {s: acc.prepare(make_loader(f, args.per_gpu_eval_batch_size, self.collator))
                            for s, f in self.dev.items()}


class TextPipeline(BasePipeline):
    """One run on a GLUE task or your own text data: ``args.method`` says which phases run."""

    cli, program = CLI, "annealing_kd_glue"

    def __init__(self, args, task: Task, data) -> None:
        super().__init__(args, accelerator(args, args.gradient_accumulation_steps))
        self.task, acc = task, self.acc
        self.pad = args.max_seq_length if args.pad_to_max_length else None
        self.pad_multiple = 8 if amp_of(args) != "none" and acc.device.type == "cuda" else None
        self.start_run(inputs_of(args), None, task.selection, "dev", max(1, args.logging_steps))
        seed_everything(args.seed)
        with acc.main_process_first():  # the datasets cache: one process writes, the others read
            self.train_ds = data.split("train")
            self.dev_ds = {s: data.split(s) for s in task.dev}
        labels = None if task.is_regression else labels_of(self.train_ds)
        if labels is not None and len(set(labels.tolist())) < 2:
            where = args.data_dir or args.train_file or args.dataset_name or task.name
            raise UsageError(f"the training data of {where} has a single label; a classifier needs "
                             "examples of at least two classes")
        self.batches_per_epoch = math.ceil(len(self.train_ds) / (args.per_gpu_train_batch_size
                                                                 * acc.num_processes))
        self.cache_dir = args.logits_cache_dir or default_cache_dir()
        self.trainer.extra.update({"task": task.name, **data.describe(), "sizes": {
            "train": len(self.train_ds), **{s: len(d) for s, d in self.dev_ds.items()}}})
        self.trains_teacher = bool(args.train_teacher)
        self.paths = {r: getattr(args, f"{r}_model_name_or_path") for r in ROLES}
        self.toks: dict[str, Any] = {}
        self.tokenized: dict[str, TokenizedData] = {}
        self.done: dict[str, Any] = {}  # role -> its trained model, until its logits are taken
        self.rows: dict[str, dict[str, float]] = {}  # the end-of-run table
        self.online_collator = None

    def data_of(self, role: str) -> TokenizedData:
        """The tokenizer and token ids of a role's model (the student's carry the teacher's
        with --online_teacher)."""
        if role not in self.tokenized:
            if role not in self.toks:
                self.toks[role] = load_tokenizer(self.paths[role], self.args, role)
            self.tokenized[role] = TokenizedData(self, self.toks[role])
            if role == "student" and self.args.online_teacher:
                self.tokenized[role].train = Attached(self.tokenized[role].train,
                                                      self.data_of("teacher").train, "teacher")
        return self.tokenized[role]

    # ---- the method's hooks (annealing_kd.common.methods.run.Pipeline) ---------------------------------------
    def phase(self, step: PhasePlan) -> Phase:
        """AdamW (no decay on biases and LayerNorm), warm-up and decay by get_scheduler."""
        args = self.args
        lr = settings.for_budget(args, "learning_rate", step.budget)

        def make_optimizer(m):
            decay = [p for p in m.parameters() if p.requires_grad and p.dim() >= 2]
            rest = [p for p in m.parameters() if p.requires_grad and p.dim() < 2]  # bias, LayerNorm
            return adamw([{"params": decay, "weight_decay": args.weight_decay},
                          {"params": rest, "weight_decay": 0.0}], lr=lr, eps=args.adam_epsilon)

        return self.make_phase(step, make_optimizer, LrSchedule(
            "hf", name=settings.for_budget(args, "lr_scheduler_type", step.budget),
            warmup_steps=args.warmup_steps), max_grad_norm=args.max_grad_norm or None,
            max_steps=args.max_steps)

    def model(self, role: str):
        if role == "student":
            return self.acc.prepare(self.student)
        seed_everything(role_seed(self.args.seed, role))  # a new head: from the role's seed
        return self.acc.prepare(load_model(self.paths[role], self.task, self.args, role))

    def targets(self, role: str):
        """Frozen logits of the teacher or assistant, batch -> logits: cached per example and
        looked up by its position (or, with --online_teacher, computed on every step); the
        teacher's in the task's label order."""
        task, path = self.task, self.paths[role]
        if role == "teacher" and self.args.online_teacher:
            targets, self.online_collator, dev = self.online_teacher()
        else:
            cached, dev = self.logits(path, self.data_of(role), role, model=self.done.pop(role, None))
            table_ = cached.to(self.acc.device)

            def targets(batch):
                return table_[batch["index"]]
        if role == "teacher":
            targets, dev = self.in_task_order(targets, dev)
        self.rows.setdefault(role, metrics_of_logits(task, dev, self.dev_ds))
        extra = self.trainer.extra.setdefault(role, {"path": path, "eval": self.rows[role]})
        if role == "teacher":
            extra["chance_check"] = self.check_chance(self.rows[role])
        if role == "teacher" and not task.is_regression:
            extra["label_order"] = (self.args.teacher_label_order or ",".join(task.labels)).split(",")
        return targets

    def check_chance(self, metrics: dict[str, float]) -> dict[str, Any]:
        """The chance-teacher guard on dev: one warning line (or the error of
        --fail_on_chance_teacher) when the teacher is no better than chance; its record."""
        split = self.task.dev[0]
        advice = ("train it longer (--teacher_epochs) or with another --teacher_learning_rate"
                  if self.trains_teacher else "check that --teacher_model_name_or_path was "
                  "fine-tuned on this task (or pass --train_teacher)")
        labels = None if self.task.is_regression else labels_of(self.dev_ds[split])
        return check_teacher(metrics, len(self.task.labels) or None, len(self.dev_ds[split]),
                             split, advice, None if labels is None else majority_share(labels),
                             fail=self.args.fail_on_chance_teacher, say=self.acc.is_main_process)

    def fit(self, model, step: PhasePlan, phase: Phase, targets) -> dict[str, Any]:
        tokenized = self.data_of(step.model)
        batches = BatchReader(student_logits=logits_of, labels=lambda b: b["labels"], teacher_logits=targets)
        collator = self.online_collator if targets is not None and self.online_collator else tokenized.collator
        loader = make_loader(tokenized.train, self.args.per_gpu_train_batch_size, collator,
                             shuffle_seed=self.args.seed)
        return self.trainer.fit(model, phase, loader, batches, evaluate=lambda m: dev_metrics(
            self.acc, m, tokenized.dev_loaders, self.task))

    def finished(self, role: str, model) -> None:
        """A trained teacher or assistant: saved with its tokenizer to <out>/<role>."""
        self.paths[role] = str(self.save(model, self.data_of(role).tok, role))
        if role != "teacher":  # the teacher's row is its dev metrics as the students see it
            self.rows[role] = self.trainer.best[role]["eval"]
            self.trainer.extra[role] = {"path": self.paths[role], "eval": self.rows[role]}
            self.done[role] = self.acc.unwrap_model(model)
        self.acc.free_memory()

    # ---- the whole run ------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        args, trainer = self.args, self.trainer
        phases = plan(self.method, self)  # every schedule checked before any model loads
        check_checkpoints(self.paths, [r for r in ROLES if self.method.uses(r)], self.task, args,
                          self.trains_teacher)
        self.toks["student"] = load_tokenizer(args.tokenizer_name or self.paths["student"], args,
                                              "student")
        seed_everything(args.seed)  # the student's new head: the same in every method (paired)
        self.student = load_model(self.paths["student"], self.task, args, "student",
                                  config_name=args.config_name)
        student, chosen, _ = run_method(self.method, self, phases)
        trainer.load_best(student, chosen["phase"])
        out = self.save(student, self.data_of("student").tok, "student")
        final = trainer.final_entry(chosen)
        final["student_dir"] = str(out)
        self.rows["student"] = chosen["eval"]
        final["table"] = self.rows
        self.finish(final, "student/README.md", self.paths["teacher"], summary(
            self.task, self.rows, chosen, trainer.metric, settings.recipe_notes(args)))
        return final

    def save(self, model, tok, name: str) -> Path:
        """save_pretrained (safetensors) of the model and its tokenizer to <out>/<name>."""
        path = self.run / name
        if self.acc.is_main_process:
            unwrapped = self.acc.unwrap_model(model)
            stage = self.run.transaction()  # written aside, recorded, then moved into place
            stage.folder(path, lambda tmp: (unwrapped.save_pretrained(str(tmp)),
                                            tok.save_pretrained(str(tmp))))
            stage.commit()
        self.acc.wait_for_everyone()
        return path

    def logits(self, path: str, tokenized: TokenizedData, role: str, model=None):
        """Cached logits of a frozen model on train and dev (computed on a miss only)."""
        args = self.args
        identity = model_identity(path, args.cache_dir)

        def loader():
            return model if model is not None else load_model(path, self.task, args, role, need_head=True)

        def get(feats, tag):
            return cached_logits(self.acc, load_model=loader, identity=identity, task=self.task.name,
                                 feats=feats, collator=tokenized.collator,
                                 batch_size=args.per_gpu_eval_batch_size, cache_dir=self.cache_dir,
                                 tag=f"{role} {tag}", overwrite=args.overwrite_cache)

        return get(tokenized.train, "train"), {s: get(f, s) for s, f in tokenized.dev.items()}

    def in_task_order(self, targets, t_dev: dict[str, Any]):
        """The teacher's train targets and dev logits in the task's label order: remapped by
        --teacher_label_order (after the cache: it keeps the raw outputs); without the flag, stop
        before any training if the teacher reads much better on dev in another order."""
        args, task = self.args, self.task
        if args.teacher_label_order:
            cols = label_columns(task, args.teacher_label_order)

            def remapped(batch):
                return targets(batch)[:, cols]
            return remapped, {s: z[:, cols] for s, z in t_dev.items()}
        split = task.dev[0]
        found = better_label_order(task, t_dev[split].numpy(), labels_of(self.dev_ds[split]))
        if found:
            names, ours, theirs = found
            raise UsageError(
                f"the teacher's {split} accuracy is {ours:.3f} in the label order "
                f"{','.join(task.labels)} but {theirs:.3f} if its outputs mean {','.join(names)} "
                "(fine-tuned with another label order?); pass --teacher_label_order "
                f"{','.join(names)} to remap its outputs (--teacher_label_order "
                f"{','.join(task.labels)} keeps them)")
        return targets, t_dev

    def online_teacher(self):
        """For comparison only: the teacher runs on every training step (on its own token ids).
        Returns the targets, the collator that pads student and teacher inputs, its dev logits."""
        teacher_data = self.data_of("teacher")
        teacher = load_model(self.paths["teacher"], self.task, self.args, "teacher", need_head=True)
        teacher = teacher.to(self.acc.device)
        collator = Collator(self.toks["student"], {"teacher": teacher_data.tok}, max_length=self.pad,
                            regression=self.task.is_regression)
        targets = frozen_logits(teacher, lambda m, b: m(**model_inputs(b, "teacher")).logits)
        dev = {s: predict(self.acc, teacher, loader, logits_of, lambda b: b["labels"])[0]
               for s, loader in teacher_data.dev_loaders.items()}
        return targets, collator, dev


def summary(task: Task, rows: dict[str, dict[str, float]], chosen: dict[str, Any],
            metric: str, notes: list[str]) -> str:
    """The end-of-run table: dev metrics of teacher, assistant and student."""
    keys = list(next(iter(rows.values())).keys())
    cells = {name: [f"{100 * m.get(k, float('nan')):.2f}" for k in keys] for name, m in rows.items()}
    return table(f"\n{task.name} dev ({metric} selects; student = {chosen['phase']} "
                 f"epoch {chosen['epoch']})", keys, cells, notes)
