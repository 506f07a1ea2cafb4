"""Command line of the text CLI: every flag of the original GLUE script (same spelling), the shared
settings (:mod:`annealing_kd.common.cli.settings`, written with underscores) and ours, and the
checks that need nothing loaded. No heavy imports here, so ``--help`` is fast."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from ..common.cli import settings
from ..common.cli.args import Parser, check_folder, check_number, integer, real
from ..common.cli.settings import Setting
from ..common.errors import UsageError, setting
from ..common.methods import get_method, steps_of
from ..common.methods.objectives import check_steps
from .tasks import get_task, label_columns

CLI = "text"  # the spelling of the shared settings: --kd_alpha, --num_train_epochs_phase_1, ...
# transformers.get_scheduler names that need no extra arguments
SCHEDULERS = ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
              "constant_with_warmup", "inverse_sqrt"]
OWN_DATA_FLAGS = ("train_file", "validation_file", "test_file", "dataset_name")


class Precision(argparse.Action):
    """``--amp bf16`` / ``fp16``: the switch of that name (none: neither)."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        namespace.bf16, namespace.fp16 = value == "bf16", value == "fp16"

GROUPS = settings.declare(CLI, {
    "models and data (original flags)": [
        Setting("model_type", "accepted for compatibility; the architecture comes from each "
                "checkpoint", resume=False),
        Setting("teacher_model_name_or_path", "fine-tuned teacher (or a base model with "
                "--train_teacher)"),
        Setting("student_model_name_or_path", "student checkpoint"),
        Setting("task_name", "cola, sst-2, mrpc, sts-b, qqp, mnli, qnli, rte or wnli; leave it out "
                "for your own data (--train_file ... or --dataset_name: the task 'custom')"),
        Setting("data_dir", "GLUE task folder of download_glue_data.py (e.g. GLUE/RTE); without "
                "it, nyu-mll/glue is loaded through `datasets`"),
        "output_dir",
        Setting("config_name", "student config, if not the checkpoint's"),
        Setting("tokenizer_name", "student tokenizer, if not the checkpoint's"),
        Setting("cache_dir", "Hugging Face download cache and `datasets` cache (read data, token "
                "ids)", resume=False),
        Setting("max_seq_length", "longer inputs are truncated", 128, integer),
        Setting("do_lower_case", "lower-case (uncased tokenizers)", switch=True),
        Setting("ignore_mismatched_sizes", "a student, assistant or trained teacher whose "
                "classifier head has another label count gets a new head of the task's size (as "
                "HF's run_glue); a given fine-tuned teacher is still refused", switch=True)],
    "what to do (original flags)": [  # --seed, --overwrite_output_dir: the shared settings
        Setting("do_train", "train the student", switch=True, resume=False),
        Setting("do_eval", "evaluate the saved student on dev (alone: <output_dir>/student, or "
                "--student_model_name_or_path); writes eval_results.json", switch=True,
                resume=False),
        Setting("evaluate_during_training", "accepted; dev is always evaluated each epoch "
                "(needed for selection)", switch=True, resume=False),
        Setting("overwrite_cache", "recompute cached teacher logits", switch=True, resume=False),
        Setting("no_cuda", "run on the CPU", switch=True, resume=False,
                flags=["--no_cuda", "--use_cpu"]),  # and HF's current name
        Setting("fp16", "fp16 mixed precision (GPU, native AMP)", switch=True),
        Setting("text_amp", "mixed precision: bf16 is --bf16, fp16 is --fp16 (the image CLI's "
                "spelling)", choices=["none", "bf16", "fp16"], flags=["--amp"], resume=False,
                extra={CLI: dict(action=Precision, default=argparse.SUPPRESS)}),
        Setting("local_rank", "accepted; torchrun / accelerate launch set up the processes", -1,
                integer, resume=False)],
    "optimisation (original flags)": [  # epochs, lr, tau_max: the shared settings
        Setting("per_gpu_train_batch_size", "per process", 8, integer,
                flags=["--per_gpu_train_batch_size", "--per_device_train_batch_size"]),
        Setting("per_gpu_eval_batch_size", "per process", 8, integer, resume=False,
                flags=["--per_gpu_eval_batch_size", "--per_device_eval_batch_size"]),
        Setting("gradient_accumulation_steps", None, 1, integer),
        "weight_decay",
        Setting("adam_epsilon", None, 1e-8, real),
        Setting("max_grad_norm", "0: no clipping", 1.0, real),
        Setting("max_steps", "cap on optimizer steps per phase (0: none); phase 1 then anneals "
                "per step", 0, integer),
        Setting("warmup_steps", "linear warm-up steps", 0, integer),
        Setting("lr_scheduler_type", "learning-rate schedule after the warm-up "
                "(transformers.get_scheduler)", "linear", choices=SCHEDULERS),
        Setting("phase1_lr_scheduler_type", "the same for Annealing-KD's phase 1 only (default: "
                "--lr_scheduler_type)", None, choices=SCHEDULERS),
        "logging_steps",
        Setting("save_steps", "accepted; a checkpoint is written every epoch", 0, integer,
                resume=False)],
    "ours": [
        "method",
        Setting("assistant_model_name_or_path", "TAKD teacher assistant"),
        Setting("train_teacher", "fine-tune the teacher on the task first (saved to "
                "<output_dir>/teacher)", switch=True),
        Setting("teacher_learning_rate", "default: --learning_rate", None, real),
        Setting("bf16", "bf16 mixed precision", switch=True),
        "deterministic",
        Setting("do_predict", "write test-set predictions as GLUE leaderboard TSVs to "
                "<output_dir>/predictions", switch=True, resume=False),
        Setting("teacher_label_order", "label names of the teacher's outputs 0..C-1, "
                "comma-separated, when it was fine-tuned in another order (e.g. "
                "contradiction,entailment,neutral for an old run_glue.py MNLI teacher): its "
                "logits (cached ones too) are remapped to this task's order. Without it, a "
                "teacher that reads much better on dev in another order stops the run with the "
                "flag to pass"),
        Setting("trust_remote_code", "allow checkpoints to run their own code (off by default)",
                switch=True, resume=False),
        "logits_cache_dir",
        Setting("online_teacher", "for comparison only: run the teacher on every step instead "
                "of the cache", switch=True),
        Setting("pad_to_max_length", "pad every batch to --max_seq_length instead of its longest "
                "input", switch=True)]})
OWN_DATA = settings.declare(CLI, {"your own data (instead of --task_name)": [  # as HF's scripts
    Setting("train_file", "training data: .csv, .tsv, .json or .jsonl"),
    Setting("validation_file", "dev data, selects the student"),
    Setting("test_file", "test data for --do_predict (labels not needed)", resume=False),
    Setting("dataset_name", "a Hugging Face dataset (train / validation / test splits)"),
    Setting("dataset_config_name", "its configuration"),
    Setting("text_column_names", "one or two comma-separated text columns (default: "
            "sentence1,sentence2, else sentence, else text)"),
    Setting("label_column_name", "strings/integers: classes (sorted); floats: regression",
            "label"),
    Setting("metric", "the dev metric that selects the best epoch (default: the task's, as the "
            "original: CoLA mcc, MRPC f1, STS-B corr = mean of pearson and spearman, others "
            "accuracy (MNLI matched); custom: accuracy or pearson); one of accuracy, f1 (two "
            "classes), macro_f1, pearson, spearman, mcc")]})


def resume_keys() -> list[str]:
    return settings.resume_keys(CLI)


def build_parser() -> Parser:
    return settings.parser(
        CLI, GROUPS, OWN_DATA, prog="annealing_kd_glue.py",
        description="Annealing-KD (and fine-tune, KD, TAKD baselines) on a GLUE task or your own "
        "text classification data.")


def uses_own_data(args: argparse.Namespace) -> bool:
    return any(getattr(args, k, None) for k in OWN_DATA_FLAGS)


def parse_args(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Problems found before anything is loaded (your own data: before it is read)."""
    if args.output_dir and Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():
        raise UsageError(f"--output_dir {args.output_dir} is a file; choose another path")
    _check_data(args)
    if not (args.do_train or args.do_eval or args.do_predict):
        raise UsageError("nothing to do: pass --do_train, --do_eval and/or --do_predict")
    if args.fp16 and args.bf16:
        raise UsageError("--fp16 and --bf16 exclude each other; pass one")
    check_folder(setting("cache_dir"), args.cache_dir)
    check_folder(setting("logits_cache_dir"), args.logits_cache_dir)
    for name in ("per_gpu_train_batch_size", "per_gpu_eval_batch_size",
                 "gradient_accumulation_steps", "max_seq_length"):
        check_number(name, getattr(args, name), low=1, high=2**31)
    if args.do_train:
        _check_training(args)


def _check_data(args: argparse.Namespace) -> None:
    name = (args.task_name or "").lower()
    if name and name != "custom" and uses_own_data(args):
        raise UsageError("--task_name picks a GLUE task; for your own data leave it out and "
                         "pass --train_file/--validation_file or --dataset_name")
    if not uses_own_data(args):
        if not name or name == "custom":
            raise UsageError("no data: pass --task_name (a GLUE task), or --train_file and "
                             "--validation_file, or --dataset_name")
        get_task(args.task_name)
    elif args.data_dir:
        raise UsageError("--data_dir is for GLUE task folders; your own files go to "
                         "--train_file/--validation_file/--test_file")


def _check_training(args: argparse.Namespace) -> None:
    method = get_method(args.method)
    if not args.student_model_name_or_path:
        raise UsageError("--do_train needs --student_model_name_or_path")
    for role in ("teacher", "assistant"):
        if method.uses(role) and not getattr(args, f"{role}_model_name_or_path"):
            what = " (the teacher assistant)" if role == "assistant" else ""
            raise UsageError(f"--method {args.method} needs --{role}_model_name_or_path{what}")
    if args.max_steps:
        args.anneal_per_step = True  # a capped phase 1 anneals per optimizer step
    settings.check(args, CLI)
    check_steps(args, steps_of(method, trains_teacher=args.train_teacher))
    for name in ("teacher_learning_rate", "adam_epsilon"):
        check_number(name, getattr(args, name), low=0, strict=True)
    for name in ("weight_decay", "max_grad_norm", "warmup_steps", "max_steps"):
        check_number(name, getattr(args, name), low=0)
    if args.train_teacher and not method.uses("teacher"):
        raise UsageError(f"--method {args.method} uses no teacher; to fine-tune a teacher alone, "
                         f"pass it as --student_model_name_or_path with --method {args.method}")
    if args.online_teacher and method.uses("assistant"):
        raise UsageError("--online_teacher is for methods without an assistant (annealing, kd)")
    if args.teacher_label_order:
        if not method.uses("teacher") or args.train_teacher:
            raise UsageError("--teacher_label_order remaps a given fine-tuned teacher; drop it with "
                             "--method finetune or --train_teacher (that teacher uses our order)")
        if not uses_own_data(args):  # your own data: checked once its labels are read
            label_columns(get_task(args.task_name), args.teacher_label_order)


flag_of = partial(settings.flag_of, CLI)  # how this CLI writes a setting in messages
