"""Command line of the text CLI: every flag of the original GLUE script (same spelling), the shared
run settings (``annealing_kd.common.cli.settings``, written with underscores) and ours, and the checks that need
nothing loaded. No heavy imports here, so ``--help`` is fast."""

from __future__ import annotations

import argparse
from pathlib import Path

from annealing_kd.common.cli import settings
from annealing_kd.common.cli.args import Parser, check_folder, check_number, integer, real
from annealing_kd.common.errors import UsageError, setting
from annealing_kd.common.methods import get_method, method_names, steps_of
from annealing_kd.common.methods.objectives import check_steps
from annealing_kd.NLP_glue_tasks.tasks import get_task, label_columns

CLI = "text"  # the spelling of the shared settings: --kd_alpha, --num_train_epochs_phase_1, ...
# transformers.get_scheduler names that need no extra arguments
SCHEDULERS = ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
              "constant_with_warmup", "inverse_sqrt"]
OWN_DATA_FLAGS = ("train_file", "validation_file", "test_file", "dataset_name")
# this CLI's settings that --resume must not change (with the shared ones: resume_keys())
RESUME_KEYS = ["task_name", "data_dir", "method", "teacher_model_name_or_path",
               "student_model_name_or_path", "assistant_model_name_or_path", "config_name",
               "tokenizer_name", "max_seq_length", "do_lower_case", "per_gpu_train_batch_size",
               "gradient_accumulation_steps", "weight_decay", "adam_epsilon", "max_grad_norm",
               "max_steps", "warmup_steps", "train_teacher", "teacher_learning_rate", "fp16", "bf16",
               "online_teacher", "pad_to_max_length", "teacher_label_order", "metric",
               "lr_scheduler_type", "train_file", "validation_file", "dataset_name",
               "dataset_config_name", "text_column_names", "label_column_name"]


def resume_keys() -> list[str]:
    return RESUME_KEYS + settings.resume_keys(CLI)


def build_parser() -> Parser:
    p = Parser(
        prog="annealing_kd_glue.py",
        description="Annealing-KD (and fine-tune, KD, TAKD baselines) on a GLUE task or your own "
        "text classification data.",
    )
    _models_and_data(p.add_argument_group("models and data (original flags)"))
    _what_to_do(p.add_argument_group("what to do (original flags)"))
    _optimisation(p.add_argument_group("optimisation (original flags)"))
    _ours(p.add_argument_group("ours"))
    settings.add_arguments(p, CLI)
    _own_data(p.add_argument_group("your own data (instead of --task_name)"))
    return p


def _models_and_data(a: argparse._ArgumentGroup) -> None:
    """The original script's model and data flags."""
    a.add_argument("--model_type", default=None,
                   help="accepted for compatibility; the architecture comes from each checkpoint")
    a.add_argument("--teacher_model_name_or_path", default=None,
                   help="fine-tuned teacher (or a base model with --train_teacher)")
    a.add_argument("--student_model_name_or_path", default=None, help="student checkpoint")
    a.add_argument("--task_name", default=None,
                   help="cola, sst-2, mrpc, sts-b, qqp, mnli, qnli, rte or wnli; leave it out "
                        "for your own data (--train_file ... or --dataset_name: the task 'custom')")
    a.add_argument("--data_dir", default=None,
                   help="GLUE task folder of download_glue_data.py (e.g. GLUE/RTE); "
                        "without it, nyu-mll/glue is loaded through `datasets`")
    a.add_argument("--output_dir", required=True, help="where the run writes everything")
    a.add_argument("--config_name", default=None, help="student config, if not the checkpoint's")
    a.add_argument("--tokenizer_name", default=None, help="student tokenizer, if not the checkpoint's")
    a.add_argument("--cache_dir", default=None,
                   help="Hugging Face download cache and `datasets` cache (read data, token ids)")
    a.add_argument("--max_seq_length", type=integer, default=128, help="longer inputs are truncated")
    a.add_argument("--do_lower_case", action="store_true", help="lower-case (uncased tokenizers)")


def _what_to_do(r: argparse._ArgumentGroup) -> None:
    """The original script's run flags (--seed and --overwrite_output_dir: annealing_kd.common.cli.settings)."""
    r.add_argument("--do_train", action="store_true", help="train the student")
    r.add_argument("--do_eval", action="store_true",
                   help="evaluate the saved student on dev (alone: <output_dir>/student, or "
                        "--student_model_name_or_path); writes eval_results.json")
    r.add_argument("--evaluate_during_training", action="store_true",
                   help="accepted; dev is always evaluated each epoch (needed for selection)")
    r.add_argument("--overwrite_cache", action="store_true", help="recompute cached teacher logits")
    r.add_argument("--no_cuda", action="store_true", help="run on the CPU")
    r.add_argument("--fp16", action="store_true", help="fp16 mixed precision (GPU, native AMP)")
    r.add_argument("--local_rank", type=integer, default=-1,
                   help="accepted; torchrun / accelerate launch set up the processes")


def _optimisation(o: argparse._ArgumentGroup) -> None:
    """The original script's optimisation flags (epochs, lr, tau_max: annealing_kd.common.cli.settings)."""
    o.add_argument("--per_gpu_train_batch_size", type=integer, default=8, help="per process")
    o.add_argument("--per_gpu_eval_batch_size", type=integer, default=8, help="per process")
    o.add_argument("--gradient_accumulation_steps", type=integer, default=1)
    o.add_argument("--weight_decay", type=real, default=0.0, help="on weight matrices only")
    o.add_argument("--adam_epsilon", type=real, default=1e-8)
    o.add_argument("--max_grad_norm", type=real, default=1.0, help="0: no clipping")
    o.add_argument("--max_steps", type=integer, default=0,
                   help="cap on optimizer steps per phase (0: none); phase 1 then anneals per step")
    o.add_argument("--warmup_steps", type=integer, default=0, help="linear warm-up steps")
    o.add_argument("--lr_scheduler_type", default="linear", choices=SCHEDULERS,
                   help="learning-rate schedule after the warm-up (transformers.get_scheduler)")
    o.add_argument("--logging_steps", type=integer, default=50, help="progress-bar update interval")
    o.add_argument("--save_steps", type=integer, default=0,
                   help="accepted; a checkpoint is written every epoch")


def _ours(n: argparse._ArgumentGroup) -> None:
    """Flags the original did not have."""
    n.add_argument("--method", choices=method_names(), default="annealing",
                   help="the distillation method (common/methods; scratch = finetune)")
    n.add_argument("--assistant_model_name_or_path", default=None, help="TAKD teacher assistant")
    n.add_argument("--train_teacher", action="store_true",
                   help="fine-tune the teacher on the task first (saved to <output_dir>/teacher)")
    n.add_argument("--teacher_learning_rate", type=real, default=None,
                   help="default: --learning_rate")
    n.add_argument("--bf16", action="store_true", help="bf16 mixed precision")
    n.add_argument("--deterministic", action="store_true", help="ask torch for deterministic kernels")
    n.add_argument("--do_predict", action="store_true",
                   help="write test-set predictions as GLUE leaderboard TSVs to <output_dir>/predictions")
    n.add_argument("--teacher_label_order", default=None,
                   help="label names of the teacher's outputs 0..C-1, comma-separated, when it was "
                        "fine-tuned in another order (e.g. contradiction,entailment,neutral for an "
                        "old run_glue.py MNLI teacher): its logits (cached ones too) are remapped to "
                        "this task's order. Without it, a teacher that reads much better on dev in "
                        "another order stops the run with the flag to pass")
    n.add_argument("--trust_remote_code", action="store_true",
                   help="allow checkpoints to run their own code (off by default)")
    n.add_argument("--logits_cache_dir", default=None,
                   help="teacher-logit cache (default: ~/.cache/annealing-kd/teacher_logits)")
    n.add_argument("--online_teacher", action="store_true",
                   help="for comparison only: run the teacher on every step instead of the cache")
    n.add_argument("--pad_to_max_length", action="store_true",
                   help="pad every batch to --max_seq_length instead of its longest input")


def _own_data(g: argparse._ArgumentGroup) -> None:
    """The "your own data" flags (names as in HF run_classification.py)."""
    g.add_argument("--train_file", default=None, help="training data: .csv, .tsv, .json or .jsonl")
    g.add_argument("--validation_file", default=None, help="dev data, selects the student")
    g.add_argument("--test_file", default=None, help="test data for --do_predict (labels not needed)")
    g.add_argument("--dataset_name", default=None,
                   help="a Hugging Face dataset (train / validation / test splits)")
    g.add_argument("--dataset_config_name", default=None, help="its configuration")
    g.add_argument("--text_column_names", default=None,
                   help="one or two comma-separated text columns (default: sentence1,sentence2, "
                        "else sentence, else text)")
    g.add_argument("--label_column_name", default="label",
                   help="strings/integers: classes (sorted); floats: regression")
    g.add_argument("--metric", default=None,
                   help="the dev metric that selects the best epoch (default: the task's, as the "
                        "original: CoLA mcc, MRPC f1, STS-B corr = mean of pearson and spearman, "
                        "others accuracy (MNLI matched); custom: accuracy or pearson); one of "
                        "accuracy, f1 (two classes), macro_f1, pearson, spearman, mcc")


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
    if args.teacher_learning_rate is not None:
        check_number("teacher_learning_rate", args.teacher_learning_rate, low=0, strict=True)
    check_number("adam_epsilon", args.adam_epsilon, low=0, strict=True)
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


def flag_of(name: str) -> str:
    """How this CLI writes a setting in messages (``annealing_kd.common.errors.UsageError.spelled``)."""
    return settings.flag_speller(build_parser())(name)

