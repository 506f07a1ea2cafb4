"""Command line of the GLUE pipeline: every flag of the original script (same spelling) plus ours.
The two flags that the shared core's messages name also take the CIFAR CLI's dashed spelling.
No heavy imports here, so ``--help`` is fast."""

from __future__ import annotations

import argparse

from common.cli_args import Parser, integer, real
from common.methods import method_names
from NLP_glue_tasks.custom_data import add_arguments

# transformers.get_scheduler names that need no extra arguments
SCHEDULERS = ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
              "constant_with_warmup", "inverse_sqrt"]


def whole_number(text: str) -> int:
    """An epoch count; '3.0' (the original's float flags) is accepted, '3.5' is not."""
    value = real(text)
    if value != int(value):
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of epochs")
    return integer(str(int(value)))


def build_parser() -> Parser:
    p = Parser(
        prog="annealing_kd_glue.py",
        description="Annealing-KD (and fine-tune, KD, TAKD baselines) on a GLUE task.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _models_and_data(p.add_argument_group("models and data (original flags)"))
    _what_to_do(p.add_argument_group("what to do (original flags)"))
    _optimisation(p.add_argument_group("optimisation (original flags)"))
    _ours(p.add_argument_group("ours"))
    add_arguments(p)
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
    a.add_argument("--cache_dir", default=None, help="Hugging Face download cache")
    a.add_argument("--max_seq_length", type=integer, default=128, help="longer inputs are truncated")
    a.add_argument("--do_lower_case", action="store_true", help="lower-case (uncased tokenizers)")



def _what_to_do(r: argparse._ArgumentGroup) -> None:
    """The original script's run flags."""
    r.add_argument("--do_train", action="store_true", help="train the student")
    r.add_argument("--do_eval", action="store_true",
                   help="evaluate the saved student on dev (alone: <output_dir>/student, or "
                        "--student_model_name_or_path); writes eval_results.json")
    r.add_argument("--evaluate_during_training", action="store_true",
                   help="accepted; dev is always evaluated each epoch (needed for selection)")
    r.add_argument("--overwrite_output_dir", "--overwrite-output-dir", action="store_true",
                   help="replace an earlier run")
    r.add_argument("--overwrite_cache", action="store_true", help="recompute cached teacher logits")
    r.add_argument("--no_cuda", action="store_true", help="run on the CPU")
    r.add_argument("--fp16", action="store_true", help="fp16 mixed precision (GPU, native AMP)")
    r.add_argument("--local_rank", type=integer, default=-1,
                   help="accepted; torchrun / accelerate launch set up the processes")
    r.add_argument("--seed", type=integer, default=42)



def _optimisation(o: argparse._ArgumentGroup) -> None:
    """The original script's optimisation flags (and the scheduler type)."""
    o.add_argument("--per_gpu_train_batch_size", type=integer, default=8, help="per process")
    o.add_argument("--per_gpu_eval_batch_size", type=integer, default=8, help="per process")
    o.add_argument("--gradient_accumulation_steps", type=integer, default=1)
    o.add_argument("--learning_rate", type=real, default=5e-5, help="AdamW peak learning rate")
    o.add_argument("--weight_decay", type=real, default=0.0, help="on weight matrices only")
    o.add_argument("--adam_epsilon", type=real, default=1e-8)
    o.add_argument("--max_grad_norm", type=real, default=1.0, help="0: no clipping")
    o.add_argument("--num_train_epochs_phase_1", type=whole_number, default=14,
                   help="Annealing-KD phase 1 (annealed teacher logits)")
    o.add_argument("--num_train_epochs_phase_2", type=whole_number, default=4,
                   help="Annealing-KD phase 2 (hard labels)")
    o.add_argument("--max_temperature", type=integer, default=7, help="tau_max of the annealing")
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
    n.add_argument("--num_train_epochs", type=whole_number, default=None,
                   help="epochs of finetune/kd/takd students and the TAKD assistant "
                        "(default: phase 1 + phase 2, the same budget as Annealing-KD)")
    n.add_argument("--assistant_model_name_or_path", default=None, help="TAKD teacher assistant")
    n.add_argument("--kd_alpha", type=real, default=0.5, help="weight of the soft KD term")
    n.add_argument("--kd_temperature", type=real, default=4.0, help="KD softmax temperature")
    n.add_argument("--kd_reduction", choices=["batchmean", "elementwise-mean"], default="batchmean",
                   help="KD soft term: batchmean = KL summed over classes, mean over the batch; "
                        "elementwise-mean = mean over batch x classes (nn.KLDivLoss() default, the "
                        "TAKD code behind the paper's KD/TAKD rows: C times smaller)")
    n.add_argument("--train_teacher", action="store_true",
                   help="fine-tune the teacher on the task first (saved to <output_dir>/teacher)")
    n.add_argument("--teacher_epochs", type=whole_number, default=3)
    n.add_argument("--teacher_learning_rate", type=real, default=None,
                   help="default: --learning_rate")
    n.add_argument("--bf16", action="store_true", help="bf16 mixed precision")
    n.add_argument("--deterministic", action="store_true", help="ask torch for deterministic kernels")
    n.add_argument("--resume", action="store_true",
                   help="continue the unfinished run in --output_dir with the same settings "
                   "(refused if there is none)")
    n.add_argument("--do_predict", action="store_true",
                   help="write test-set predictions as GLUE leaderboard TSVs to <output_dir>/predictions")
    n.add_argument("--anneal_per_step", "--anneal-per-step", action="store_true",
                   help="step the temperature per optimizer step instead of per epoch")
    n.add_argument("--anneal_reduction", choices=["mean", "sum"], default="mean",
                   help="phase-1 MSE: mean over elements (original) or per-example sum (paper)")
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
