"""The text CLI's models: sequence classifiers and tokenizers from a local folder or the Hugging
Face cache, weights from safetensors only, and the checks that a head fits the task (label count
and label order)."""

from __future__ import annotations

import re
from pathlib import Path

from safetensors import safe_open
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from ..common.errors import UsageError
from .tasks import Task, normalize_label

# models whose position ids start after the padding index (RoBERTa's embeddings)
OFFSET_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer",
                    "data2vec-text", "roberta-prelayernorm", "xmod", "mpnet", "ibert", "luke"}


def _load(auto, path: str, args, role: str, **kwargs):
    """``auto.from_pretrained(path)``; any failure (OSError, ValueError, safetensors' own errors
    on truncated files) is a UsageError naming the model."""
    try:
        return auto.from_pretrained(path, cache_dir=args.cache_dir,
                                    trust_remote_code=args.trust_remote_code, **kwargs)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"{role} model {path!r} could not be loaded ({first[:200]}); give a "
                         "local folder with intact files or a hub id that is in the Hugging Face "
                         "cache") from None


def check_safetensors(path: str, role: str) -> None:
    """Weights are read from safetensors only (a pickle .bin file can run code when loaded), and
    a local folder's weight files must be whole (their headers cover the files)."""
    folder = Path(path)
    if not folder.is_dir():
        return
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and any(folder.glob("*.bin")):
        raise UsageError(f"{role} {path} has only pickle weights "
                         f"({next(folder.glob('*.bin')).name}), "
                         "which can run arbitrary code when loaded; convert them to safetensors "
                         "(save_pretrained(..., safe_serialization=True) where you trust the file)")
    for f in weights:
        try:
            with safe_open(str(f), "pt"):
                pass
        except Exception as exc:
            raise UsageError(f"{role} weights {f} are truncated or corrupt ({exc}); copy the "
                             "checkpoint again") from None


def max_positions(config) -> int | None:
    """The longest input a model's absolute position embeddings take (None: no such limit)."""
    n = getattr(config, "max_position_embeddings", None)
    if not isinstance(n, int) or getattr(config, "position_biased_input", True) is False:
        return None
    if config.model_type in OFFSET_POSITIONS:
        n -= (config.pad_token_id if isinstance(config.pad_token_id, int) else 1) + 1
    return n


def load_tokenizer(path: str, args, role: str):
    return _load(AutoTokenizer, path, args, role,
                 **({"do_lower_case": True} if args.do_lower_case else {}))


def new_head(args, need_head: bool) -> bool:
    """--ignore_mismatched_sizes: a head of another size is replaced (not a given teacher's)."""
    return bool(getattr(args, "ignore_mismatched_sizes", False)) and not need_head


def check_labels(config, task: Task, path: str, role: str, need_head: bool,
                 order: str | None = None, replace: bool = False) -> None:
    """A classifier head must fit the task: label count (``replace``: a head of another size is
    replaced by a new one), and label order when it is named (``order``: the teacher's
    --teacher_label_order, which its names must then match)."""
    head = any("ForSequenceClassification" in a for a in (config.architectures or []))
    if need_head and not head:
        raise UsageError(f"{role} {path} has no sequence-classification head; give a checkpoint "
                         f"fine-tuned on {task.name}, or pass --train_teacher")
    if not head or (replace and config.num_labels != task.num_labels):
        return
    if config.num_labels != task.num_labels:
        hint = "" if need_head else ", or pass --ignore_mismatched_sizes for a new head"
        raise UsageError(f"{role} {path} has {config.num_labels} output labels but {task.name} "
                         f"has {task.num_labels}; use a checkpoint fine-tuned on {task.name} or a "
                         f"base model{hint}")
    names = [config.id2label[i] for i in range(config.num_labels)]
    named = not all(re.fullmatch(r"LABEL_\d+", str(n)) for n in names)
    expected = order.split(",") if order else task.labels
    ours, theirs = [normalize_label(n) for n in expected], [normalize_label(n) for n in names]
    if named and not task.is_regression and theirs != ours:
        same = sorted(theirs) == sorted(map(normalize_label, task.labels))
        remap = (f", or pass --teacher_label_order {','.join(map(str, names))} to remap its "
                 "outputs" if role == "teacher" and same else "")
        raise UsageError(f"{role} {path} labels {names} do not match {task.name} labels "
                         f"{list(expected)} (this order); labels are never swapped silently: "
                         f"use a model fine-tuned with this label order{remap}")


def checked_config(path: str, task: Task, args, role: str, need_head: bool = False,
                   config_name: str | None = None):
    """A checkpoint's config, once its weights (safetensors, whole), its position embeddings
    (--max_seq_length must fit) and its head are checked."""
    check_safetensors(path, role)
    config = _load(AutoConfig, config_name or path, args, role)
    limit = max_positions(config)
    if limit is not None and args.max_seq_length > limit:
        raise UsageError(f"--max_seq_length {args.max_seq_length} exceeds the {limit} positions of "
                         f"the {role} {config_name or path}; pass --max_seq_length {limit} or less")
    order = getattr(args, "teacher_label_order", None) if role == "teacher" else None
    check_labels(config, task, path, role, need_head, order, new_head(args, need_head))
    return config


def load_model(path: str, task: Task, args, role: str, need_head: bool = False, config_name=None):
    """A sequence classifier with the task's label count and names, in float32 (a new head with
    --ignore_mismatched_sizes, as HF's run_glue)."""
    config = checked_config(path, task, args, role, need_head, config_name)
    config.num_labels = task.num_labels
    config.id2label = dict(enumerate(task.labels)) if task.labels else {0: "score"}
    config.label2id = {v: k for k, v in config.id2label.items()}
    config.problem_type = "regression" if task.is_regression else "single_label_classification"
    model = _load(AutoModelForSequenceClassification, path, args, role, config=config,
                  use_safetensors=True, ignore_mismatched_sizes=new_head(args, need_head))
    return model.float()


def check_checkpoints(paths: dict[str, str], roles: list[str], task: Task, args,
                      trains_teacher: bool) -> None:
    """Fail fast, before any model is loaded: every checkpoint's head fits the task."""
    for role in roles:
        checked_config(paths[role], task, args, role, role == "teacher" and not trains_teacher)
