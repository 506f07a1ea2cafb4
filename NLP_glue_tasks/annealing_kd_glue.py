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
from NLP_glue_tasks.cli import build_parser  # noqa: E402
from NLP_glue_tasks.data import attach  # noqa: E402
from NLP_glue_tasks.tasks import SUBMISSION, Task, get_task, split_suffix  # noqa: E402


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


def check_labels(config, task: Task, path: str, role: str, need_head: bool) -> None:
    """A classifier head must fit the task: label count, and label order when it is named."""
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
    if named and not task.is_regression and [_norm(n) for n in names] != [_norm(n) for n in task.labels]:
        raise UsageError(f"{role} {path} labels {names} do not match {task.name} labels "
                         f"{list(task.labels)} (this order); labels are never swapped silently: "
                         "use a model fine-tuned with this label order")


def load_model(path: str, task: Task, args, role: str, need_head: bool = False, config_name=None):
    """A sequence classifier with the task's label count and names, in float32."""
    from transformers import AutoModelForSequenceClassification

    check_safetensors(path, role)
    config = load_config(config_name or path, args, role)
    check_labels(config, task, path, role, need_head)
    config.num_labels = task.num_labels
    config.id2label = dict(enumerate(task.labels)) if task.labels else {0: "score"}
    config.label2id = {v: k for k, v in config.id2label.items()}
    config.problem_type = "regression" if task.is_regression else "single_label_classification"
    model = _load(lambda: AutoModelForSequenceClassification.from_pretrained(
        path, config=config, cache_dir=args.cache_dir, trust_remote_code=args.trust_remote_code,
        use_safetensors=True), path, role)
    return model.float()


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
        self.train = encode(tok, train_ex, args.max_seq_length)
        self.dev = {s: encode(tok, ex, args.max_seq_length) for s, ex in dev_ex.items()}
        pad = args.max_seq_length if args.pad_to_max_length else None
        self.collator = Collator(tok, max_length=pad, pad_to_multiple_of=pad_multiple)
        self.dev_loaders = {s: acc.prepare(make_loader(f, args.per_gpu_eval_batch_size, self.collator))
                            for s, f in self.dev.items()}


# ---- the pipeline -----------------------------------------------------------------------------
def check_args(args, task: Task) -> None:
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
    if not args.student_model_name_or_path:
        raise UsageError("--do_train needs --student_model_name_or_path")
    if args.method != "finetune" and not args.teacher_model_name_or_path:
        raise UsageError(f"--method {args.method} needs --teacher_model_name_or_path")
    if args.method == "takd" and not args.assistant_model_name_or_path:
        raise UsageError("--method takd needs --assistant_model_name_or_path (the teacher assistant)")
    if args.method == "annealing" and (args.num_train_epochs_phase_1 < 1 or args.num_train_epochs_phase_2 < 1):
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
    if args.method == "annealing":
        if args.max_temperature < 1:
            raise UsageError(f"--max_temperature must be at least 1, got {args.max_temperature}")
        if not (args.anneal_per_step or args.max_steps) and \
                args.max_temperature > args.num_train_epochs_phase_1:
            raise UsageError(
                f"--max_temperature {args.max_temperature} exceeds --num_train_epochs_phase_1 "
                f"{args.num_train_epochs_phase_1}: each temperature needs at least one epoch; lower "
                "--max_temperature, raise --num_train_epochs_phase_1, or pass --anneal_per_step")
    if args.train_teacher and args.method == "finetune":
        raise UsageError("--method finetune uses no teacher; to fine-tune a teacher alone, pass it "
                         "as --student_model_name_or_path with --method finetune")
    if args.online_teacher and args.method not in ("annealing", "kd"):
        raise UsageError("--online_teacher is for annealing and kd only")


# inputs that --overwrite_output_dir must never delete; settings that --resume must not change
INPUT_FLAGS = ["data_dir", "teacher_model_name_or_path", "student_model_name_or_path",
               "assistant_model_name_or_path", "config_name", "tokenizer_name", "cache_dir",
               "logits_cache_dir"]
RESUME_KEYS = ["task_name", "data_dir", "method", "teacher_model_name_or_path", "student_model_name_or_path",
               "assistant_model_name_or_path", "config_name", "tokenizer_name", "max_seq_length",
               "do_lower_case", "seed", "per_gpu_train_batch_size", "gradient_accumulation_steps",
               "learning_rate", "weight_decay", "adam_epsilon", "max_grad_norm",
               "num_train_epochs_phase_1", "num_train_epochs_phase_2", "max_temperature",
               "max_steps", "warmup_steps", "num_train_epochs", "kd_alpha", "kd_temperature",
               "train_teacher", "teacher_epochs", "teacher_learning_rate", "fp16", "bf16",
               "anneal_per_step", "anneal_reduction", "online_teacher", "pad_to_max_length"]


class Pipeline:
    def __init__(self, args, task: Task) -> None:
        from common.run_dir import RunDir, check_same_run, environment_info
        from common.seeding import seed_everything
        from common.trainer import Trainer, make_accelerator
        from NLP_glue_tasks.data import load_split
        from NLP_glue_tasks.logit_cache import default_cache_dir

        self.args, self.task = args, task
        amp = "fp16" if args.fp16 else "bf16" if args.bf16 else "none"
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
        self.cache_dir = args.logits_cache_dir or default_cache_dir()
        self.dev_of: dict[int, dict[str, Any]] = {}  # id(model) -> its dev loaders
        self.trainer = Trainer(acc, self.run, config=dict(vars(args)), env=environment_info(),
                               evaluate=self.evaluate, selection_metric=task.selection,
                               selected_on="dev", seed=args.seed, resume=args.resume,
                               deterministic=args.deterministic,
                               log_every=max(1, args.logging_steps))
        self.trainer.extra["task"] = task.name

    def evaluate(self, model) -> dict[str, float]:
        return dev_metrics(self.acc, model, self.dev_of[id(model)], self.task)

    def side(self, tok) -> Side:
        return Side(self.acc, tok, self.train_ex, self.dev_ex, self.args, self.pad_multiple)

    # one phase of training ---------------------------------------------------------------------
    def fit(self, model, side: Side, name: str, objective: str, epochs: int, lr: float,
            targets=None, collator=None) -> dict[str, Any]:
        import torch

        from common.lr_schedules import linear_warmup_decay
        from common.trainer import Batches, Phase
        from NLP_glue_tasks.data import model_inputs

        args, acc = self.args, self.acc
        self.dev_of[id(model)] = side.dev_loaders

        def make_optimizer(m):
            decay = [p for p in m.parameters() if p.requires_grad and p.dim() >= 2]
            rest = [p for p in m.parameters() if p.requires_grad and p.dim() < 2]  # bias, LayerNorm
            return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                      {"params": rest, "weight_decay": 0.0}], lr=lr,
                                     eps=args.adam_epsilon)

        per_step = args.anneal_per_step or bool(args.max_steps)
        phase = Phase(name, objective, epochs, make_optimizer,
                      lr_factor=linear_warmup_decay(args.warmup_steps),
                      max_temperature=args.max_temperature, anneal_per_step=per_step,
                      anneal_reduction=args.anneal_reduction, kd_alpha=args.kd_alpha,
                      kd_temperature=args.kd_temperature, max_grad_norm=args.max_grad_norm or None,
                      max_steps=args.max_steps)
        if callable(targets) or targets is None:
            lookup = targets
        else:
            table = targets.to(acc.device)

            def lookup(b):
                return table[b["index"]]
        batches = Batches(student_logits=lambda m, b: m(**model_inputs(b)).logits,
                          labels=lambda b: b["labels"], teacher_logits=lookup)
        loader = make_loader(side.train, args.per_gpu_train_batch_size, collator or side.collator,
                             shuffle_seed=args.seed)
        return self.trainer.fit(model, phase, loader, batches)

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
    def train(self) -> dict[str, Any]:
        from common.schedule import check_schedule
        from NLP_glue_tasks.metrics import label_order_hint

        args, acc, task, trainer = self.args, self.acc, self.task, self.trainer
        method = args.method
        if method == "annealing" and (args.anneal_per_step or args.max_steps):  # before any work
            check_schedule(self.phase1_steps(), args.max_temperature, "optimizer steps")
        n_epochs = args.num_train_epochs or args.num_train_epochs_phase_1 + args.num_train_epochs_phase_2
        s_path = args.student_model_name_or_path
        checks = [(s_path, "student", False)]
        if method != "finetune":
            checks.append((args.teacher_model_name_or_path, "teacher", not args.train_teacher))
        if method == "takd":
            checks.append((args.assistant_model_name_or_path, "assistant", False))
        for path, role, need_head in checks:  # fail fast, before any model is loaded
            check_safetensors(path, role)
            check_labels(load_config(path, args, role), task, path, role, need_head)
        s_tok = load_tokenizer(args.tokenizer_name or s_path, args, "student")
        student = load_model(s_path, task, args, "student", config_name=args.config_name)

        targets, collator, rows = None, None, {}
        if method != "finetune":
            t_path = args.teacher_model_name_or_path
            t_tok = load_tokenizer(t_path, args, "teacher")
            t_side = self.side(t_tok)
            if args.train_teacher:
                teacher = acc.prepare(load_model(t_path, task, args, "teacher"))
                self.fit(teacher, t_side, "teacher", "task", args.teacher_epochs,
                         args.teacher_learning_rate or args.learning_rate)
                trainer.load_best(teacher, "teacher")
                t_path = str(self.save(teacher, t_tok, "teacher"))
                del teacher
                acc.free_memory()
            if args.online_teacher:
                targets, collator, rows["teacher"] = self.online_teacher(t_path, t_tok, t_side, s_tok)
            else:
                targets, t_dev = self.logits(t_path, t_side, "teacher")
                rows["teacher"] = metrics_of_logits(task, t_dev, self.dev_ex)
                split = task.dev[0]
                hint = label_order_hint(task, t_dev[split].numpy(), self.dev_ex[split].labels)
                if hint:
                    acc.print(hint)
            trainer.extra["teacher"] = {"path": t_path, "eval": rows["teacher"]}

        if method == "takd":
            a_path = args.assistant_model_name_or_path
            a_tok = load_tokenizer(a_path, args, "assistant")
            a_side = self.side(a_tok)
            assistant = acc.prepare(load_model(a_path, task, args, "assistant"))
            best = self.fit(assistant, a_side, "assistant", "kd", n_epochs, args.learning_rate, targets)
            trainer.load_best(assistant, "assistant")
            a_saved = str(self.save(assistant, a_tok, "assistant"))
            targets, _ = self.logits(a_saved, a_side, "assistant", model=acc.unwrap_model(assistant))
            rows["assistant"] = best["eval"]
            trainer.extra["assistant"] = {"path": a_saved, "eval": best["eval"]}
            del assistant
            acc.free_memory()

        student = acc.prepare(student)
        s_side = self.side(s_tok)
        if args.online_teacher:
            s_side.train = attach(s_side.train, t_side.train, "teacher")
        if method == "annealing":
            self.fit(student, s_side, "phase1", "anneal", args.num_train_epochs_phase_1,
                     args.learning_rate, targets, collator)
            trainer.load_best(student, "phase1")
            self.fit(student, s_side, "phase2", "task", args.num_train_epochs_phase_2,
                     args.learning_rate)
            phases = ["phase1", "phase2"]
        else:
            objective = "task" if method == "finetune" else "kd"
            self.fit(student, s_side, "student", objective, n_epochs, args.learning_rate, targets,
                     collator)
            phases = ["student"]

        chosen = trainer.select(phases)
        trainer.load_best(student, chosen["phase"])
        out = self.save(student, s_tok, "student")
        final = trainer.final_entry(chosen)
        final["student_dir"] = str(out)
        rows["student"] = chosen["eval"]
        final["table"] = rows
        trainer.write_results(final)
        print_table(acc, task, rows, chosen)
        return final

    def online_teacher(self, t_path: str, t_tok, t_side: Side, s_tok):
        """For comparison only: the teacher runs on every training step (on its own token ids).
        Returns the targets, the collator that pads student and teacher inputs, its dev metrics."""
        from common.trainer import frozen_logits
        from NLP_glue_tasks.data import Collator, model_inputs

        teacher = load_model(t_path, self.task, self.args, "teacher", need_head=True)
        teacher = teacher.to(self.acc.device)
        pad = self.args.max_seq_length if self.args.pad_to_max_length else None
        collator = Collator(s_tok, {"teacher": t_tok}, max_length=pad)
        targets = frozen_logits(teacher, lambda m, b: m(**model_inputs(b, "teacher")).logits)
        return targets, collator, dev_metrics(self.acc, teacher, t_side.dev_loaders, self.task)


def print_table(acc, task: Task, rows: dict[str, dict[str, float]], chosen: dict[str, Any]) -> None:
    keys = list(next(iter(rows.values())).keys())
    acc.print(f"\n{task.name} dev ({task.selection} selects; student = {chosen['phase']} "
              f"epoch {chosen['epoch']})")
    acc.print(f"{'model':<10}" + "".join(f"{k:>14}" for k in keys))
    for name, m in rows.items():
        acc.print(f"{name:<10}" + "".join(f"{100 * m.get(k, float('nan')):>14.2f}" for k in keys))


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
            preds = [f"{v:.3f}" for v in logits.view(-1).clamp(0.0, 5.0).tolist()]
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
    task = get_task(args.task_name)
    check_args(args, task)
    if args.do_train:
        pipe = Pipeline(args, task)
        pipe.train()
        acc = pipe.acc
    else:
        from common.trainer import make_accelerator

        amp = "fp16" if args.fp16 else "bf16" if args.bf16 else "none"
        acc = make_accelerator("cpu" if args.no_cuda else "auto", amp)
    if args.do_eval:
        evaluate_saved(args, task, acc)
    if args.do_predict:
        predict_test(args, task, acc)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
