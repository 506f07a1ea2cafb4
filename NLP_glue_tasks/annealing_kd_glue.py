"""Annealing-KD on GLUE with Hugging Face transformers.

Phases (each one a :class:`common.trainer.Phase`, resumable at every epoch):

    teacher     (--train_teacher) fine-tune the teacher on the task, saved to <out>/teacher
    assistant   (takd) KD from the teacher into the assistant, saved to <out>/assistant
    phase1      (annealing) MSE(z_s, Phi(T) z_t), T = tau_max ... 1
    phase2      (annealing) hard labels, from the best phase-1 student
    student     (finetune / kd / takd) hard labels / KD from the teacher / KD from the assistant

Teacher (and assistant) logits are computed once per example and cached (logit_cache.py). The
final student is the best epoch of the student phases by the task's dev metric; it is saved with
its tokenizer to <out>/student.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python NLP_glue_tasks/annealing_kd_glue.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli_args import check_number  # noqa: E402
from common.errors import UsageError, run_cli  # noqa: E402
from common.methods import ROLES, Step, get_method, run_method, table  # noqa: E402
from NLP_glue_tasks.cli import build_parser  # noqa: E402
from NLP_glue_tasks.custom_data import resolve_task, uses_own_data  # noqa: E402
from NLP_glue_tasks.data import attach  # noqa: E402
from NLP_glue_tasks.tasks import (  # noqa: E402
    SUBMISSION,
    Task,
    label_columns,
    split_suffix,
)


# ---- models ---------------------------------------------------------------------------------
def _load(fn, path: str, role: str):
    try:
        return fn()
    except UsageError:
        raise
    except Exception as exc:  # OSError, ValueError, safetensors' own errors (truncated files)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{role} model {path!r} could not be loaded ({first[:200]}); give a local "
                         "folder with intact files or a hub id that is in the Hugging Face cache") from None


def check_safetensors(path: str, role: str) -> None:
    """Weights are read from safetensors only (a pickle .bin file can run code when loaded), and
    a local folder's weight files must be whole (their headers cover the files)."""
    from safetensors import safe_open

    folder = Path(path)
    if not folder.is_dir():
        return
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and any(folder.glob("*.bin")):
        raise UsageError(f"{role} {path} has only pickle weights ({next(folder.glob('*.bin')).name}), "
                         "which can run arbitrary code when loaded; convert them to safetensors "
                         "(save_pretrained(..., safe_serialization=True) where you trust the file)")
    for f in weights:
        try:
            with safe_open(str(f), "pt"):
                pass
        except Exception as exc:
            raise UsageError(f"{role} weights {f} are truncated or corrupt ({exc}); copy the "
                             "checkpoint again") from None


def load_config(path: str, args, role: str):
    from transformers import AutoConfig

    return _load(lambda: AutoConfig.from_pretrained(path, cache_dir=args.cache_dir,
                                                    trust_remote_code=args.trust_remote_code),
                 path, role)


def load_tokenizer(path: str, args, role: str):
    from transformers import AutoTokenizer

    extra = {"do_lower_case": True} if args.do_lower_case else {}
    return _load(lambda: AutoTokenizer.from_pretrained(path, cache_dir=args.cache_dir,
                                                       trust_remote_code=args.trust_remote_code,
                                                       **extra), path, role)


def _norm(name: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def check_labels(config, task: Task, path: str, role: str, need_head: bool,
                 order: str | None = None) -> None:
    """A classifier head must fit the task: label count, and label order when it is named
    (``order``: the teacher's --teacher_label_order, which its names must then match)."""
    head = any("ForSequenceClassification" in a for a in (config.architectures or []))
    if need_head and not head:
        raise UsageError(f"{role} {path} has no sequence-classification head; give a checkpoint "
                         f"fine-tuned on {task.name}, or pass --train_teacher")
    if not head:
        return
    if config.num_labels != task.num_labels:
        raise UsageError(f"{role} {path} has {config.num_labels} output labels but {task.name} has "
                         f"{task.num_labels}; use a checkpoint fine-tuned on {task.name} or a base model")
    names = [config.id2label[i] for i in range(config.num_labels)]
    named = not all(re.fullmatch(r"LABEL_\d+", str(n)) for n in names)
    expected = order.split(",") if order else task.labels
    if named and not task.is_regression and [_norm(n) for n in names] != [_norm(n) for n in expected]:
        remap = (f", or pass --teacher_label_order {','.join(map(str, names))} to remap its outputs"
                 if role == "teacher" and sorted(map(_norm, names)) == sorted(map(_norm, task.labels))
                 else "")
        raise UsageError(f"{role} {path} labels {names} do not match {task.name} labels "
                         f"{list(expected)} (this order); labels are never swapped silently: "
                         f"use a model fine-tuned with this label order{remap}")


def load_model(path: str, task: Task, args, role: str, need_head: bool = False, config_name=None):
    """A sequence classifier with the task's label count and names, in float32."""
    from transformers import AutoModelForSequenceClassification

    check_safetensors(path, role)
    config = load_config(config_name or path, args, role)
    check_labels(config, task, path, role, need_head, teacher_order(args, role))
    config.num_labels = task.num_labels
    config.id2label = dict(enumerate(task.labels)) if task.labels else {0: "score"}
    config.label2id = {v: k for k, v in config.id2label.items()}
    config.problem_type = "regression" if task.is_regression else "single_label_classification"
    model = _load(lambda: AutoModelForSequenceClassification.from_pretrained(
        path, config=config, cache_dir=args.cache_dir, trust_remote_code=args.trust_remote_code,
        use_safetensors=True), path, role)
    return model.float()


def teacher_order(args, role: str) -> str | None:
    return getattr(args, "teacher_label_order", None) if role == "teacher" else None


# ---- data and evaluation ----------------------------------------------------------------------
def make_loader(feats, batch_size: int, collator, shuffle_seed: int | None = None):
    from torch.utils.data import DataLoader

    from common.seeding import EpochShuffleSampler

    if shuffle_seed is None:
        return DataLoader(feats, batch_size=batch_size, shuffle=False, collate_fn=collator)
    return DataLoader(feats, batch_size=batch_size, collate_fn=collator,
                      sampler=EpochShuffleSampler(len(feats), shuffle_seed))


def dev_metrics(acc, model, loaders: dict[str, Any], task: Task) -> dict[str, float]:
    from common.trainer import predict
    from NLP_glue_tasks.data import model_inputs
    from NLP_glue_tasks.metrics import compute_metrics

    out: dict[str, float] = {}
    for split, loader in loaders.items():
        logits, labels = predict(acc, model, loader, lambda m, b: m(**model_inputs(b)).logits,
                                 lambda b: b["labels"])
        out.update(compute_metrics(task, logits.numpy(), labels.numpy(), split_suffix(task, split)))
    return out


def metrics_of_logits(task: Task, logits: dict[str, Any], dev) -> dict[str, float]:
    from NLP_glue_tasks.metrics import compute_metrics

    out: dict[str, float] = {}
    for split, lg in logits.items():
        out.update(compute_metrics(task, lg.numpy(), dev[split].labels, split_suffix(task, split)))
    return out


class Side:
    """One model's view of the data: its tokenizer, token ids of train and dev, dev loaders."""

    def __init__(self, acc, tok, train_ex, dev_ex, args, pad_multiple: int | None) -> None:
        from NLP_glue_tasks.data import Collator, encode

        self.tok = tok
        # datasets' on-disk cache: the main process tokenizes, the others read its files
        with acc.main_process_first() if hasattr(train_ex, "encode") else contextlib.nullcontext():
            self.train = encode(tok, train_ex, args.max_seq_length)
            self.dev = {s: encode(tok, ex, args.max_seq_length) for s, ex in dev_ex.items()}
        pad = args.max_seq_length if args.pad_to_max_length else None
        self.collator = Collator(tok, max_length=pad, pad_to_multiple_of=pad_multiple)
        self.dev_loaders = {s: acc.prepare(make_loader(f, args.per_gpu_eval_batch_size, self.collator))
                            for s, f in self.dev.items()}


# ---- the pipeline -----------------------------------------------------------------------------
def check_args(args, task: Task | None = None) -> None:
    """Problems found before anything heavy is imported."""
    if not (args.do_train or args.do_eval or args.do_predict):
        raise UsageError("nothing to do: pass --do_train, --do_eval and/or --do_predict")
    if args.fp16 and args.bf16:
        raise UsageError("--fp16 and --bf16 exclude each other; pass one")
    for name in ("per_gpu_train_batch_size", "per_gpu_eval_batch_size", "gradient_accumulation_steps",
                 "max_seq_length"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not args.do_train:
        return
    method = get_method(args.method)
    if not args.student_model_name_or_path:
        raise UsageError("--do_train needs --student_model_name_or_path")
    for role in ("teacher", "assistant"):
        if method.uses(role) and not getattr(args, f"{role}_model_name_or_path"):
            what = " (the teacher assistant)" if role == "assistant" else ""
            raise UsageError(f"--method {args.method} needs --{role}_model_name_or_path{what}")
    if any(s.objective == "anneal" for s in method.steps) and (
            args.num_train_epochs_phase_1 < 1 or args.num_train_epochs_phase_2 < 1):
        raise UsageError("--num_train_epochs_phase_1 and --num_train_epochs_phase_2 must be >= 1")
    for flag, value in (("--num_train_epochs", args.num_train_epochs),
                        ("--teacher_epochs", args.teacher_epochs if args.train_teacher else None)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    for flag, value in (("--learning_rate", args.learning_rate),
                        ("--teacher_learning_rate", args.teacher_learning_rate),
                        ("--adam_epsilon", args.adam_epsilon), ("--kd_temperature", args.kd_temperature)):
        if value is not None:
            check_number(flag, value, low=0, strict=True)
    for flag, value in (("--weight_decay", args.weight_decay), ("--max_grad_norm", args.max_grad_norm),
                        ("--warmup_steps", args.warmup_steps), ("--max_steps", args.max_steps)):
        check_number(flag, value, low=0)
    check_number("--kd_alpha", args.kd_alpha, low=0, high=1)
    if any(s.objective == "anneal" for s in method.steps):
        if args.max_temperature < 1:
            raise UsageError(f"--max_temperature must be at least 1, got {args.max_temperature}")
        if not (args.anneal_per_step or args.max_steps) and \
                args.max_temperature > args.num_train_epochs_phase_1:
            raise UsageError(
                f"--max_temperature {args.max_temperature} exceeds --num_train_epochs_phase_1 "
                f"{args.num_train_epochs_phase_1}: each temperature needs at least one epoch; lower "
                "--max_temperature, raise --num_train_epochs_phase_1, or pass --anneal_per_step")
    if args.train_teacher and not method.uses("teacher"):
        raise UsageError(f"--method {args.method} uses no teacher; to fine-tune a teacher alone, "
                         f"pass it as --student_model_name_or_path with --method {args.method}")
    if args.online_teacher and method.uses("assistant"):
        raise UsageError("--online_teacher is for methods without an assistant (annealing, kd)")
    if args.teacher_label_order:
        if not method.uses("teacher") or args.train_teacher:
            raise UsageError("--teacher_label_order remaps a given fine-tuned teacher; drop it with "
                             "--method finetune or --train_teacher (that teacher uses our order)")
        if task is not None:  # your own data: checked once its labels are read
            label_columns(task, args.teacher_label_order)

def amp_of(args) -> str:
    return "fp16" if args.fp16 else "bf16" if args.bf16 else "none"


# inputs that --overwrite_output_dir must never delete; settings that --resume must not change
INPUT_FLAGS = ["data_dir", "teacher_model_name_or_path", "student_model_name_or_path",
               "assistant_model_name_or_path", "config_name", "tokenizer_name", "cache_dir",
               "logits_cache_dir", "train_file", "validation_file", "test_file"]
RESUME_KEYS = ["task_name", "data_dir", "method", "teacher_model_name_or_path", "student_model_name_or_path",
               "assistant_model_name_or_path", "config_name", "tokenizer_name", "max_seq_length",
               "do_lower_case", "seed", "per_gpu_train_batch_size", "gradient_accumulation_steps",
               "learning_rate", "weight_decay", "adam_epsilon", "max_grad_norm",
               "num_train_epochs_phase_1", "num_train_epochs_phase_2", "max_temperature",
               "max_steps", "warmup_steps", "num_train_epochs", "kd_alpha", "kd_temperature",
               "train_teacher", "teacher_epochs", "teacher_learning_rate", "fp16", "bf16",
               "anneal_per_step", "anneal_reduction", "online_teacher", "pad_to_max_length",
               "kd_reduction", "teacher_label_order", "metric", "lr_scheduler_type", "train_file",
               "validation_file", "dataset_name", "dataset_config_name", "text_column_names",
               "label_column_name"]


class Pipeline:
    """One GLUE run: the models, tokenizers and data of each role; ``args.method`` says which
    phases run (``common.methods``)."""

    def __init__(self, args, task: Task) -> None:
        from common.run_dir import RunDir, check_same_run, environment_info
        from common.seeding import seed_everything
        from common.trainer import Trainer, make_accelerator
        from NLP_glue_tasks.data import load_split
        from NLP_glue_tasks.logit_cache import default_cache_dir

        self.args, self.task, self.method = args, task, get_method(args.method)
        amp = amp_of(args)
        self.acc = acc = make_accelerator("cpu" if args.no_cuda else "auto", amp,
                                          args.gradient_accumulation_steps)
        self.pad_multiple = 8 if amp != "none" and acc.device.type == "cuda" else None
        inputs = {f"--{k}": getattr(args, k) for k in INPUT_FLAGS}
        self.run = RunDir(args.output_dir, overwrite=args.overwrite_output_dir, resume=args.resume,
                          is_main=acc.is_main_process, inputs=inputs)
        if args.resume:
            check_same_run(self.run.saved_config(), vars(args), RESUME_KEYS)
        seed_everything(args.seed)
        self.train_ex = load_split(task, "train", args.data_dir, args.cache_dir)
        self.dev_ex = {s: load_split(task, s, args.data_dir, args.cache_dir) for s in task.dev}
        self.batches_per_epoch = math.ceil(len(self.train_ex) / (args.per_gpu_train_batch_size
                                                                 * acc.num_processes))
        self.cache_dir = args.logits_cache_dir or default_cache_dir()
        self.dev_of: dict[int, dict[str, Any]] = {}  # id(model) -> its dev loaders
        self.trainer = Trainer(acc, self.run, config=dict(vars(args)), env=environment_info(),
                               evaluate=self.evaluate,
                               selection_metric=args.metric or task.selection,
                               selected_on="dev", seed=args.seed, resume=args.resume,
                               deterministic=args.deterministic,
                               log_every=max(1, args.logging_steps))
        self.trainer.extra["task"] = task.name
        if getattr(task, "source", None) is not None:  # your own data: files, columns, labels
            self.trainer.extra.update(task.source.describe())
        self.trains_teacher = bool(args.train_teacher)
        self.paths = {r: getattr(args, f"{r}_model_name_or_path") for r in ROLES}
        self.toks: dict[str, Any] = {}
        self.sides: dict[str, Side] = {}
        self.done: dict[str, Any] = {}  # role -> its trained model, until its logits are taken
        self.rows: dict[str, dict[str, float]] = {}  # the end-of-run table
        self.online_collator = None

    def evaluate(self, model) -> dict[str, float]:
        return dev_metrics(self.acc, model, self.dev_of[id(model)], self.task)

    def side(self, role: str) -> Side:
        """The tokenizer and token ids of a role's model (the student's carry the teacher's
        with --online_teacher)."""
        if role not in self.sides:
            if role not in self.toks:
                self.toks[role] = load_tokenizer(self.paths[role], self.args, role)
            self.sides[role] = Side(self.acc, self.toks[role], self.train_ex, self.dev_ex, self.args,
                                    self.pad_multiple)
            if role == "student" and self.args.online_teacher:
                self.sides[role].train = attach(self.sides[role].train,
                                                self.side("teacher").train, "teacher")
        return self.sides[role]

    # ---- the method's hooks (common.methods.run.Pipeline) ---------------------------------------
    def phase(self, step: Step):
        """AdamW (no decay on biases and LayerNorm), warm-up and decay by get_scheduler."""
        from transformers import get_scheduler

        from common.optim import adamw
        from common.trainer import Phase

        args = self.args
        lr = (args.teacher_learning_rate or args.learning_rate) if step.model == "teacher" \
            else args.learning_rate

        def make_optimizer(m):
            decay = [p for p in m.parameters() if p.requires_grad and p.dim() >= 2]
            rest = [p for p in m.parameters() if p.requires_grad and p.dim() < 2]  # bias, LayerNorm
            return adamw([{"params": decay, "weight_decay": args.weight_decay},
                          {"params": rest, "weight_decay": 0.0}], lr=lr, eps=args.adam_epsilon)

        def make_scheduler(optimizer, total: int):
            return get_scheduler(args.lr_scheduler_type, optimizer,
                                 num_warmup_steps=args.warmup_steps, num_training_steps=total)

        n_epochs = args.num_train_epochs or args.num_train_epochs_phase_1 + args.num_train_epochs_phase_2
        epochs = {"teacher": args.teacher_epochs, "phase1": args.num_train_epochs_phase_1,
                  "phase2": args.num_train_epochs_phase_2}.get(step.budget, n_epochs)
        return Phase(step.phase, step.objective, epochs, make_optimizer,
                     max_temperature=args.max_temperature,
                     anneal_per_step=args.anneal_per_step or bool(args.max_steps),
                     max_grad_norm=args.max_grad_norm or None, max_steps=args.max_steps,
                     make_scheduler=make_scheduler,
                     options={"anneal_reduction": args.anneal_reduction, "kd_alpha": args.kd_alpha,
                              "kd_temperature": args.kd_temperature,
                              "kd_reduction": args.kd_reduction})

    def model(self, role: str):
        if role == "student":
            return self.acc.prepare(self.student)
        from common.seeding import role_seed, seed_everything

        seed_everything(role_seed(self.args.seed, role))  # a new head: from the role's seed
        return self.acc.prepare(load_model(self.paths[role], self.task, self.args, role))

    def targets(self, role: str):
        """Frozen logits of the teacher or assistant: cached per example (or, with
        --online_teacher, computed on every step); the teacher's in the task's label order."""
        task, path = self.task, self.paths[role]
        if role == "teacher" and self.args.online_teacher:
            targets, self.online_collator, dev = self.online_teacher()
        else:
            targets, dev = self.logits(path, self.side(role), role, model=self.done.pop(role, None))
        if role == "teacher":
            targets, dev = self.in_task_order(targets, dev)
        self.rows.setdefault(role, metrics_of_logits(task, dev, self.dev_ex))
        extra = self.trainer.extra.setdefault(role, {"path": path, "eval": self.rows[role]})
        if role == "teacher" and not task.is_regression:
            extra["label_order"] = (self.args.teacher_label_order or ",".join(task.labels)).split(",")
        return targets

    def fit(self, model, step: Step, phase, targets) -> dict[str, Any]:
        from common.trainer import Batches
        from NLP_glue_tasks.data import model_inputs

        side = self.side(step.model)
        self.dev_of[id(model)] = side.dev_loaders
        if callable(targets) or targets is None:
            lookup = targets
        else:
            table_ = targets.to(self.acc.device)

            def lookup(b):
                return table_[b["index"]]
        batches = Batches(student_logits=lambda m, b: m(**model_inputs(b)).logits,
                          labels=lambda b: b["labels"], teacher_logits=lookup)
        collator = self.online_collator if targets is not None and self.online_collator else side.collator
        loader = make_loader(side.train, self.args.per_gpu_train_batch_size, collator,
                             shuffle_seed=self.args.seed)
        return self.trainer.fit(model, phase, loader, batches)

    def finished(self, role: str, model) -> None:
        """A trained teacher or assistant: saved with its tokenizer to <out>/<role>."""
        self.paths[role] = str(self.save(model, self.side(role).tok, role))
        if role != "teacher":  # the teacher's row is its dev metrics as the students see it
            self.rows[role] = self.trainer.best[role]["eval"]
            self.trainer.extra[role] = {"path": self.paths[role], "eval": self.rows[role]}
            self.done[role] = self.acc.unwrap_model(model)
        self.acc.free_memory()

    def save(self, model, tok, name: str) -> Path:
        """save_pretrained (safetensors) of the model and its tokenizer to <out>/<name>."""
        path = self.run / name
        if self.acc.is_main_process:
            self.acc.unwrap_model(model).save_pretrained(str(path))
            tok.save_pretrained(str(path))
        self.acc.wait_for_everyone()
        return path

    def logits(self, path: str, side: Side, role: str, model=None) -> tuple[Any, dict[str, Any]]:
        """Cached logits of a frozen model on train and dev (computed on a miss only)."""
        from NLP_glue_tasks.logit_cache import cached_logits, model_identity

        args = self.args
        identity = model_identity(path, args.cache_dir)

        def loader():
            return model if model is not None else load_model(path, self.task, args, role, need_head=True)

        def get(feats, tag):
            return cached_logits(self.acc, load_model=loader, identity=identity, task=self.task.name,
                                 feats=feats, collator=side.collator,
                                 batch_size=args.per_gpu_eval_batch_size, cache_dir=self.cache_dir,
                                 tag=f"{role} {tag}", overwrite=args.overwrite_cache)

        return get(side.train, "train"), {s: get(f, s) for s, f in side.dev.items()}

    def phase1_steps(self) -> int:
        """Optimizer steps of phase 1, as the trainer will count them."""
        args = self.args
        per_process = math.ceil(len(self.train_ex) / self.acc.num_processes)
        batches = math.ceil(per_process / args.per_gpu_train_batch_size)
        total = math.ceil(batches / args.gradient_accumulation_steps) * args.num_train_epochs_phase_1
        return min(total, args.max_steps) if args.max_steps else total

    # the whole run ------------------------------------------------------------------------------
    def check_models(self) -> None:
        """Fail fast, before any model is loaded: every checkpoint's head fits the task."""
        for role in ROLES:
            if self.method.uses(role):
                need_head = role == "teacher" and not self.trains_teacher
                path = self.paths[role]
                check_safetensors(path, role)
                check_labels(load_config(path, self.args, role), self.task, path, role, need_head,
                             teacher_order(self.args, role))

    def train(self) -> dict[str, Any]:
        from common.schedule import check_schedule
        from common.seeding import seed_everything

        args, trainer = self.args, self.trainer
        if self.method.name == "annealing" and (args.anneal_per_step or args.max_steps):
            check_schedule(self.phase1_steps(), args.max_temperature, "optimizer steps")  # before any work
        self.check_models()
        self.toks["student"] = load_tokenizer(args.tokenizer_name or self.paths["student"], args,
                                              "student")
        seed_everything(args.seed)  # the student's new head: the same in every method (paired)
        self.student = load_model(self.paths["student"], self.task, args, "student",
                                  config_name=args.config_name)
        student, chosen = run_method(self.method, self)
        trainer.load_best(student, chosen["phase"])
        out = self.save(student, self.side("student").tok, "student")
        final = trainer.final_entry(chosen)
        final["student_dir"] = str(out)
        self.rows["student"] = chosen["eval"]
        final["table"] = self.rows
        trainer.write_results(final)
        self.acc.print(summary(self.task, self.rows, chosen, self.trainer.metric))
        return final

    def in_task_order(self, targets, t_dev: dict[str, Any]):
        """The teacher's train targets and dev logits in the task's label order: remapped by
        --teacher_label_order (after the cache: it keeps the raw outputs); without the flag, stop
        before any training if the teacher reads much better on dev in another order."""
        from NLP_glue_tasks.metrics import better_label_order

        args, task = self.args, self.task
        if args.teacher_label_order:
            cols = label_columns(task, args.teacher_label_order)
            if callable(targets):
                raw = targets

                def targets(batch):
                    return raw(batch)[:, cols]
            else:
                targets = targets[:, cols]
            return targets, {s: z[:, cols] for s, z in t_dev.items()}
        split = task.dev[0]
        found = better_label_order(task, t_dev[split].numpy(), self.dev_ex[split].labels)
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
        from common.trainer import frozen_logits, predict
        from NLP_glue_tasks.data import Collator, model_inputs

        t_side = self.side("teacher")
        teacher = load_model(self.paths["teacher"], self.task, self.args, "teacher", need_head=True)
        teacher = teacher.to(self.acc.device)
        pad = self.args.max_seq_length if self.args.pad_to_max_length else None
        collator = Collator(self.toks["student"], {"teacher": t_side.tok}, max_length=pad)
        targets = frozen_logits(teacher, lambda m, b: m(**model_inputs(b, "teacher")).logits)
        dev = {s: predict(self.acc, teacher, loader, lambda m, b: m(**model_inputs(b)).logits,
                          lambda b: b["labels"])[0] for s, loader in t_side.dev_loaders.items()}
        return targets, collator, dev


def summary(task: Task, rows: dict[str, dict[str, float]], chosen: dict[str, Any],
            metric: str) -> str:
    """The end-of-run table: dev metrics of teacher, assistant and student."""
    keys = list(next(iter(rows.values())).keys())
    cells = {name: [f"{100 * m.get(k, float('nan')):.2f}" for k in keys] for name, m in rows.items()}
    return table(f"\n{task.name} dev ({metric} selects; student = {chosen['phase']} "
                 f"epoch {chosen['epoch']})", keys, cells, [])


# ---- evaluation and prediction of a saved student -----------------------------------------------
def saved_student(args) -> str:
    own = Path(args.output_dir) / "student"
    if (own / "config.json").is_file():
        return str(own)
    if args.student_model_name_or_path:
        return args.student_model_name_or_path
    raise UsageError(f"no trained student in {own}; train one with --do_train, or pass "
                     "--student_model_name_or_path with --do_eval / --do_predict")


def evaluate_saved(args, task: Task, acc) -> dict[str, Any]:
    """Dev metrics of the saved student; written to <out>/eval_results.json."""
    from common.run_dir import RunDir
    from NLP_glue_tasks.data import Collator, encode, load_split

    path = saved_student(args)
    tok = load_tokenizer(path, args, "student")
    model = acc.prepare(load_model(path, task, args, "student"))
    loaders = {s: acc.prepare(make_loader(encode(tok, load_split(task, s, args.data_dir, args.cache_dir),
                                                 args.max_seq_length),
                                          args.per_gpu_eval_batch_size, Collator(tok)))
               for s in task.dev}
    metrics = dev_metrics(acc, model, loaders, task)
    result = {"task": task.name, "model": path, "split": list(task.dev), "metrics": metrics}
    RunDir(args.output_dir, is_main=acc.is_main_process, check=False).write_json("eval_results.json", result)
    acc.print(f"{task.name} dev of {path}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return result


def predict_test(args, task: Task, acc) -> list[Path]:
    """GLUE leaderboard files: ``index<TAB>prediction`` per test split in <out>/predictions."""
    from common.checkpoint import atomic_write
    from common.trainer import predict
    from NLP_glue_tasks.data import Collator, encode, load_split, model_inputs

    path = saved_student(args)
    tok = load_tokenizer(path, args, "student")
    model = acc.prepare(load_model(path, task, args, "student"))
    written = []
    for split in task.test:
        ex = load_split(task, split, args.data_dir, args.cache_dir)
        loader = acc.prepare(make_loader(encode(tok, ex, args.max_seq_length),
                                         args.per_gpu_eval_batch_size, Collator(tok)))
        logits, index = predict(acc, model, loader, lambda m, b: m(**model_inputs(b)).logits,
                                lambda b: b["index"])
        order = index.argsort()
        logits = logits[order]
        if task.is_regression:
            scores = logits.view(-1) if task.name == "custom" else logits.view(-1).clamp(0.0, 5.0)
            preds = [f"{v:.3f}" for v in scores.tolist()]
        else:
            preds = [task.tsv_labels[i] for i in logits.argmax(-1).tolist()]
        text = "index\tprediction\n" + "".join(f"{i}\t{p}\n" for i, p in zip(ex.ids, preds, strict=True))
        out = Path(args.output_dir) / "predictions" / f"{SUBMISSION.get(split, task.folder)}.tsv"
        if acc.is_main_process:
            atomic_write(out, lambda tmp, text=text: Path(tmp).write_text(text))
        written.append(out)
        acc.print(f"wrote {len(preds)} test predictions to {out}")
    return written


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    own = uses_own_data(args)  # your own files are read only once the other arguments are fine
    task = None if own else resolve_task(args)
    check_args(args, task)
    task = task or resolve_task(args)
    if args.do_train:
        pipe = Pipeline(args, task)
        pipe.train()
        acc = pipe.acc
    else:
        from common.trainer import make_accelerator

        acc = make_accelerator("cpu" if args.no_cuda else "auto", amp_of(args))
    if args.do_eval:
        evaluate_saved(args, task, acc)
    if args.do_predict:
        predict_test(args, task, acc)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
