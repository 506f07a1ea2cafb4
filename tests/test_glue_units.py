"""GLUE pieces without training: task table, TSV reading, metrics, logit-cache keys, --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from glue_fixtures import HEADERS, write_glue

from annealing_kd.common.errors import UsageError
from annealing_kd.NLP_glue_tasks.data import GlueData, ids_of, labels_of, read_tsv, task_dir
from annealing_kd.NLP_glue_tasks.metrics import better_label_order, compute_metrics
from annealing_kd.NLP_glue_tasks.tasks import TASKS, get_task, label_columns, metric_names

ROOT = Path(__file__).resolve().parents[1]


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys; import annealing_kd.NLP_glue_tasks.annealing_kd_glue as m; "
            "print(sorted(k for k in ('torch', 'transformers', 'datasets') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr
    out = subprocess.run([sys.executable, "NLP_glue_tasks/annealing_kd_glue.py", "--help"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "--num_train_epochs_phase_1" in out.stdout


def test_task_table_matches_the_paper():
    assert set(TASKS) == {"cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli"}
    sel = {k: t.selection for k, t in TASKS.items()}
    assert sel == {"cola": "mcc", "sst-2": "accuracy", "mrpc": "f1", "sts-b": "corr",
                   "qqp": "accuracy", "mnli": "accuracy", "qnli": "accuracy", "rte": "accuracy",
                   "wnli": "accuracy"}
    assert get_task("SST2") is TASKS["sst-2"] and get_task("STS-B").is_regression
    assert TASKS["mnli"].dev == ("dev_matched", "dev_mismatched")
    for t in TASKS.values():
        assert len(t.labels) == len(t.tsv_labels) and t.selection in t.metrics
    with pytest.raises(UsageError, match="unknown task"):
        get_task("squad")


def test_metrics_hand_computed():
    # preds 1 1 0 0 vs labels 1 0 0 0: TP 1, FP 1, TN 2, FN 0
    logits = np.array([[0, 1], [0, 1], [1, 0], [1, 0]], dtype=float)
    labels = np.array([1, 0, 0, 0])
    m = compute_metrics(TASKS["mrpc"], logits, labels)
    assert m["accuracy"] == pytest.approx(0.75) and m["f1"] == pytest.approx(2 / 3)
    mcc = compute_metrics(TASKS["cola"], logits, labels)["mcc"]
    assert mcc == pytest.approx((1 * 2 - 1 * 0) / np.sqrt(2 * 1 * 3 * 2))
    # STS-B: predictions 1 2 3 4 vs 2 4 6 9: Pearson by hand, Spearman 1 (same order)
    x, y = np.array([1.0, 2, 3, 4]), np.array([2.0, 4, 6, 9])
    r = ((x - x.mean()) * (y - y.mean())).sum() / np.sqrt(((x - x.mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum())
    m = compute_metrics(TASKS["sts-b"], x[:, None], y)
    assert m == {"pearson": pytest.approx(r), "spearman": pytest.approx(1.0),
                 "corr": pytest.approx((r + 1.0) / 2)}  # the mean, what the original selected on
    m = compute_metrics(TASKS["mnli"], np.eye(3), np.array([0, 1, 1]), "_mm")
    assert m == {"accuracy_mm": pytest.approx(2 / 3)}


@pytest.mark.parametrize("folder", list(HEADERS))
def test_read_every_task_tsv(tmp_path, folder):
    task = next(t for t in TASKS.values() if t.folder == folder)
    write_glue(tmp_path, folder, n_train=10, n_dev=6, n_test=4)
    d = task_dir(tmp_path, task)  # the GLUE root is accepted too
    assert d == tmp_path / folder
    data = GlueData(task, str(tmp_path))
    for split in ("train", *task.dev):
        ex = data.split(split)
        labels = labels_of(ex)
        assert len(ex) == (10 if split == "train" else 6) and labels is not None
        assert ("text_b" in ex.column_names) == (task.text_b is not None)
        if task.is_regression:
            assert labels.dtype == "float64" and ((0 <= labels) & (labels <= 5)).all()
        else:
            assert set(labels.tolist()) <= set(range(task.num_labels))
    for split in task.test:
        ex = data.split(split)
        assert labels_of(ex) is None and ids_of(ex) == [str(i) for i in range(4)]


def test_tsv_quotes_kept_and_bad_rows(tmp_path):
    task = TASKS["qqp"]
    rows = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
            '0\t1\t2\tis "this\tor "that" so?\t1', "1\t1\t2\tbroken line", "2\t1\t2\ta\tb\t0"]
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    data = GlueData(task, str(tmp_path))
    ex = data.split("train")
    assert ex["text_a"] == ['is "this', "a"] and ex["text_b"] == ['or "that" so?', "b"]
    assert labels_of(ex).tolist() == [1, 0]
    (tmp_path / "dev.tsv").write_text("id\tquestion1\tquestion2\tlabel\n0\ta\tb\t1\n")
    with pytest.raises(UsageError, match="no column 'is_duplicate'.*download_glue_data"):
        data.split("dev")
    (tmp_path / "dev.tsv").write_text(rows[0] + "\n0\t1\t2\ta\tb\tmaybe\n")
    with pytest.raises(UsageError, match="line 2: label 'maybe'"):
        data.split("dev")
    with pytest.raises(UsageError, match="does not exist"):
        data.split("test")
    (tmp_path / "other.tsv").write_text("\ufeffa\tb\n1\t\"x\n")  # a BOM, a stray quote
    assert read_tsv(tmp_path / "other.tsv")[:] == {"a": ["1"], "b": ['"x']}
    (tmp_path / "latin1.tsv").write_bytes("a\tb\ncaf\xe9\t1\n".encode("latin-1"))
    with pytest.raises(UsageError, match="not UTF-8 text \\(byte offset 7 is 0xe9\\)"):
        read_tsv(tmp_path / "latin1.tsv")


def test_original_readme_command_parses():
    from annealing_kd.NLP_glue_tasks.cli import build_parser, check_args

    cmd = ("--model_type roberta --teacher_model_name_or_path /t --student_model_name_or_path "
           "distilroberta-base --task_name RTE --do_train --do_eval --evaluate_during_training "
           "--data_dir /glue/RTE --max_seq_length 128 --per_gpu_train_batch_size 32 "
           "--learning_rate 2e-5 --num_train_epochs_phase_1 14 --num_train_epochs_phase_2 4.0 "
           "--max_temperature 7 --output_dir /out --overwrite_output_dir --fp16 --seed 42 "
           "--local_rank -1 --gradient_accumulation_steps 1 --weight_decay 0.0 --adam_epsilon 1e-8 "
           "--max_grad_norm 1.0 --warmup_steps 0 --logging_steps 50 --save_steps 50 "
           "--per_gpu_eval_batch_size 8 --overwrite_cache --do_lower_case")
    args = build_parser().parse_args(cmd.split())
    assert (args.method, args.student_epochs_p1, args.student_epochs_p2) == ("annealing", 14, 4)
    check_args(args)
    with pytest.raises(UsageError, match="2.5 is not a whole number of epochs; see --help"):
        build_parser().parse_args([*cmd.split(), "--num_train_epochs_phase_2", "2.5"])
    args.method = "takd"
    with pytest.raises(UsageError, match="assistant"):
        check_args(args)


def test_better_label_order():
    task = TASKS["mnli"]
    labels = np.array([0, 1, 2] * 10)
    teacher_ids = np.array([1, 2, 0])[labels]  # a teacher that says 1 for entailment, ...
    found = better_label_order(task, np.eye(3)[teacher_ids], labels)
    assert found == (["contradiction", "entailment", "neutral"], 0.0, 1.0)
    # with it, the remapped logits are right
    cols = label_columns(task, "contradiction,entailment,neutral")
    assert (np.eye(3)[teacher_ids][:, cols].argmax(1) == labels).all()
    assert better_label_order(task, np.eye(3)[labels], labels) is None
    assert better_label_order(TASKS["sts-b"], labels[:, None].astype(float), labels) is None
    # far better but on too few examples to be sure: no verdict
    assert better_label_order(task, np.eye(3)[teacher_ids[:3]], labels[:3]) is None


def test_label_columns_and_metric_names():
    assert label_columns(TASKS["sst-2"], "Positive, negative") == [1, 0]
    assert label_columns(TASKS["rte"], "entailment,not_entailment") == [0, 1]
    for bad in ("positive", "positive,positive", "positive,negative,neutral"):
        with pytest.raises(UsageError, match="is not an order of the sst-2 labels"):
            label_columns(TASKS["sst-2"], bad)
    with pytest.raises(UsageError, match="regression"):
        label_columns(TASKS["sts-b"], "a")
    assert metric_names(TASKS["mnli"]) == ["accuracy", "accuracy_mm"]
    assert metric_names(TASKS["sts-b"]) == ["pearson", "spearman", "corr"]


@pytest.mark.parametrize("flags,precision", [([], "fp32"), (["--bf16"], "bf16"),
                                             (["--fp16"], "fp16")])
def test_teacher_logits_precision_follows_the_flags(flags, precision):
    """Teacher logits are computed in the student's precision: fp32 unless --bf16/--fp16 (on a
    GPU as on the CPU)."""
    from types import SimpleNamespace

    from annealing_kd.common.logit_cache.store import precision_of
    from annealing_kd.NLP_glue_tasks.cli import build_parser
    from annealing_kd.NLP_glue_tasks.pipeline import amp_of

    amp = amp_of(build_parser().parse_args(["--output_dir", "x", *flags]))
    mixed = {"none": "no"}.get(amp, amp)  # what make_accelerator asks accelerate for
    assert precision_of(SimpleNamespace(mixed_precision=mixed)) == precision


def test_cache_key_and_file_say_the_precision(tmp_path):
    """An fp32 run computes and caches fp32 logits; a --bf16 run (CPU autocast here) computes
    bf16 ones under another key and stores them as bf16: neither reads the other's file."""
    import json

    import datasets
    import torch
    from accelerate.state import AcceleratorState, GradientState
    from glue_fixtures import tiny_bert
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from annealing_kd.common.logit_cache.store import HEADER, precision_of
    from annealing_kd.common.training.trainer import make_accelerator
    from annealing_kd.NLP_glue_tasks import logit_cache
    from annealing_kd.NLP_glue_tasks.data import Collator, encode

    torch.set_num_threads(1)
    path = tiny_bert(tmp_path / "t", num_labels=2, seed=3)
    tok = AutoTokenizer.from_pretrained(path)
    ex = datasets.Dataset.from_dict({"text_a": ["good movie", "bad plot is awful"], "label": [1, 0]})
    feats = encode(tok, ex, 32)
    keys = {p: logit_cache.cache_key("id", "sst-2", p, feats) for p in ("fp32", "bf16", "fp16")}
    assert len(set(keys.values())) == 3
    computed, got = [], {}

    def load():
        computed.append(1)
        return AutoModelForSequenceClassification.from_pretrained(path)

    for amp in ("none", "bf16"):
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        acc = make_accelerator("cpu", amp)
        for _ in range(2):  # the second call reads the file the first wrote
            got[precision_of(acc)] = logit_cache.cached_logits(
                acc, load_model=load, identity="id", task="sst-2", feats=feats,
                collator=Collator(tok), batch_size=2, cache_dir=tmp_path / "cache", tag="t")
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    assert len(computed) == 2  # once per precision
    for p in ("fp32", "bf16"):
        with open(tmp_path / "cache" / f"{keys[p]}.logits", "rb") as f:
            assert json.loads(f.read(HEADER))["precision"] == p
    bf16, fp32 = got["bf16"], got["fp32"]
    assert torch.equal(bf16, bf16.to(torch.bfloat16).float())  # bf16 values
    assert not torch.equal(fp32, fp32.to(torch.bfloat16).float())  # fp32 ones are finer
    assert torch.allclose(fp32, bf16, atol=0.05)
