"""Your own text data in NLP_glue_tasks/annealing_kd_glue.py: files of every format, labels of
every kind, the tokenization cache, the errors, and every method end to end (tiny BERTs)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from glue_fixtures import BAD, GOOD, OTHER, tiny_bert

import annealing_kd.NLP_glue_tasks.custom_data as cd
import annealing_kd.NLP_glue_tasks.data as text_data
from annealing_kd.NLP_glue_tasks.annealing_kd_glue import main


def _sentence(rng: random.Random, y: int) -> str:
    words = [rng.choice(OTHER[:-4]) for _ in range(rng.randint(3, 9))]
    words.insert(rng.randrange(len(words)), rng.choice(GOOD if y else BAD))
    return " ".join(words)


def rows(n: int, seed: int, labels=("neg", "pos"), pair: bool = False) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        y = i % len(labels)
        row = {"text": _sentence(rng, y % 2), "label": labels[y]}
        if pair:
            row = {"q": row["text"], "p": _sentence(rng, 0), "y": labels[y]}
        out.append(row)
    return out


def write(path: Path, data: list[dict]) -> str:
    """``data`` as .csv / .tsv / .json (a list) / .jsonl, by suffix."""
    if path.suffix in (".csv", ".tsv"):
        with open(path, "w", newline="", encoding="utf-8") as f:
            if path.suffix == ".tsv":  # TSV: raw fields, no quoting (like GLUE)
                f.write("\t".join(data[0]) + "\n")
                f.writelines("\t".join(str(v) for v in r.values()) + "\n" for r in data)
            else:
                w = csv.DictWriter(f, fieldnames=list(data[0]))
                w.writeheader()
                w.writerows(data)
    elif path.suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in data))
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    m = {f"teacher{n}": tiny_bert(root / f"teacher{n}", num_labels=n, seed=n) for n in (1, 2, 3)}
    m["student"] = tiny_bert(root / "student", num_labels=None, seed=10)
    m["assistant"] = tiny_bert(root / "assistant", num_labels=None, seed=11)
    return m


def argv(models, tmp_path: Path, train: str, dev: str, *extra: str, teacher: str | None = "teacher2",
         out: str = "run") -> list[str]:
    args = ["--train_file", train, "--validation_file", dev, "--output_dir", str(tmp_path / out),
            "--logits_cache_dir", str(tmp_path / "logits"), "--cache_dir", str(tmp_path / "hf"),
            "--student_model_name_or_path", models["student"], "--per_gpu_train_batch_size", "8",
            "--per_gpu_eval_batch_size", "16", "--learning_rate", "1e-3", "--no_cuda",
            "--num_train_epochs_phase_1", "2", "--num_train_epochs_phase_2", "1",
            "--max_temperature", "2", "--do_train"]
    if teacher:
        args += ["--teacher_model_name_or_path", models[teacher]]
    return args + list(extra)


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def id2label(out: Path) -> dict:
    return json.loads((out / "student" / "config.json").read_text())["id2label"]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl"])
def test_every_file_format(models, tmp_path, suffix):
    train = rows(24, 0)
    if suffix == ".tsv":
        train[0]["text"] += ' "'  # an unbalanced quote: TSV is read without quote handling
    tr = write(tmp_path / f"train{suffix}", train)
    dv = write(tmp_path / f"dev{suffix}", rows(12, 1))
    assert main(argv(models, tmp_path, tr, dv, "--method", "finetune", "--num_train_epochs", "1",
                     teacher=None)) == 0
    res = results(tmp_path / "run")
    assert res["task"] == "custom" and res["labels"] == ["neg", "pos"]
    assert res["data"]["sizes"] == {"train": 24, "dev": 12} and res["data"]["text_columns"] == ["text"]
    assert set(res["final"]["metrics"]) == {"accuracy", "f1"} and res["final"]["selected_by"] == "accuracy"
    assert id2label(tmp_path / "run") == {"0": "neg", "1": "pos"}


def _data(args: list[str]) -> cd.CustomData:
    from annealing_kd.NLP_glue_tasks.cli import build_parser

    return cd.CustomData(build_parser().parse_args(["--output_dir", "x", *args]))


def test_integer_labels_sorted_numerically(tmp_path):
    train = rows(9, 0, labels=(10, 2, 0))
    tr, dv = write(tmp_path / "t.csv", train), write(tmp_path / "d.csv", rows(3, 1, labels=(0, 10, 2)))
    data = _data(["--train_file", tr, "--validation_file", dv, "--cache_dir", str(tmp_path / "hf")])
    task = data.task()
    assert task.labels == ("0", "2", "10") and task.metrics == ("accuracy", "macro_f1")
    assert text_data.labels_of(data.split("train")).tolist() == [2, 1, 0] * 3  # 10 -> 2, 2 -> 1
    assert text_data.labels_of(data.split("dev")).tolist() == [0, 2, 1]


def test_string_labels_multiclass_end_to_end(models, tmp_path):
    labels = ("b", "c", "a")
    tr = write(tmp_path / "t.jsonl", rows(24, 0, labels=labels))
    dv = write(tmp_path / "d.jsonl", rows(12, 1, labels=labels))
    assert main(argv(models, tmp_path, tr, dv, "--method", "kd", "--num_train_epochs", "1",
                     "--metric", "macro_f1", teacher="teacher3")) == 0
    res = results(tmp_path / "run")
    assert res["labels"] == ["a", "b", "c"] and res["final"]["selected_by"] == "macro_f1"
    assert set(res["final"]["metrics"]) == {"accuracy", "macro_f1"}
    assert id2label(tmp_path / "run") == {"0": "a", "1": "b", "2": "c"}


def test_regression_on_float_labels(models, tmp_path):
    def scored(n, seed):
        return [{"sentence1": r["text"], "sentence2": r["text"][::-1], "label": 0.5 + i % 4}
                for i, r in enumerate(rows(n, seed))]

    tr, dv = write(tmp_path / "t.csv", scored(24, 0)), write(tmp_path / "d.csv", scored(12, 1))
    assert main(argv(models, tmp_path, tr, dv, "--method", "annealing", teacher="teacher1")) == 0
    res = results(tmp_path / "run")
    assert res["labels"] == [] and res["data"]["regression"] is True
    assert res["data"]["text_columns"] == ["sentence1", "sentence2"]
    assert set(res["final"]["metrics"]) == {"pearson", "spearman"}


def test_metrics_by_hand():
    from annealing_kd.NLP_glue_tasks.metrics import compute_metrics

    task = _task(("a", "b", "c"), ("accuracy", "macro_f1"))
    logits = np.eye(3)[[0, 1, 1, 2]]  # predictions 0 1 1 2
    got = compute_metrics(task, logits, np.array([0, 1, 2, 2]))
    # F1 per class: a 1, b 2*0.5*1/1.5 = 2/3, c 2*1*0.5/1.5 = 2/3
    assert got == pytest.approx({"accuracy": 0.75, "macro_f1": (1 + 2 / 3 + 2 / 3) / 3})


def _task(labels, metrics):
    return cd.CustomTask("custom", "test", "text", None, "label", labels, labels, metrics, metrics[0])


def test_two_text_columns_named(models, tmp_path):
    tr = write(tmp_path / "t.csv", rows(24, 0, pair=True))
    dv = write(tmp_path / "d.csv", rows(12, 1, pair=True))
    assert main(argv(models, tmp_path, tr, dv, "--text_column_names", "q,p", "--label_column_name",
                     "y", "--method", "finetune", "--num_train_epochs", "1", teacher=None)) == 0
    assert results(tmp_path / "run")["data"]["text_columns"] == ["q", "p"]


def test_second_run_reads_the_tokenization_cache(models, tmp_path, monkeypatch):
    tr, dv = write(tmp_path / "t.csv", rows(24, 0)), write(tmp_path / "d.csv", rows(12, 1))
    args = ("--method", "kd", "--num_train_epochs", "1")
    assert main(argv(models, tmp_path, tr, dv, *args)) == 0
    first = results(tmp_path / "run")

    def no_tokenizing(*a, **k):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(text_data, "_tokenize", no_tokenizing)
    assert main(argv(models, tmp_path, tr, dv, *args, out="again")) == 0
    assert results(tmp_path / "again")["final"]["metrics"] == first["final"]["metrics"]
    # another max_seq_length is another tokenization: the cache is not reused blindly
    with pytest.raises(AssertionError, match="tokenized again"):
        main(argv(models, tmp_path, tr, dv, *args, "--max_seq_length", "16", out="third"))


def test_annealing_kd_finetune_takd_end_to_end(models, tmp_path, capsys):
    tr, dv = write(tmp_path / "t.csv", rows(24, 0)), write(tmp_path / "d.csv", rows(12, 1))
    te = write(tmp_path / "test.csv", [{"text": r["text"]} for r in rows(5, 2)])
    assert main(argv(models, tmp_path, tr, dv, "--test_file", te, "--do_eval", "--do_predict",
                     out="annealing")) == 0
    res = results(tmp_path / "annealing")
    assert [r["phase"] for r in res["epochs"]] == ["phase1", "phase1", "phase2"]
    assert [r["phi"] for r in res["epochs"]] == [0.5, 1.0, None]
    ev = json.loads((tmp_path / "annealing" / "eval_results.json").read_text())["metrics"]
    assert ev == pytest.approx(res["final"]["metrics"], abs=1e-6)
    preds = (tmp_path / "annealing" / "predictions" / "test.tsv").read_text().splitlines()
    assert preds[0] == "index\tprediction" and len(preds) == 6
    assert {p.split("\t")[1] for p in preds[1:]} <= {"neg", "pos"}
    capsys.readouterr()
    assert main(argv(models, tmp_path, tr, dv, "--method", "kd", "--num_train_epochs", "1",
                     out="kd")) == 0
    assert capsys.readouterr().out.count("reusing cached logits") == 2  # train and dev
    assert main(argv(models, tmp_path, tr, dv, "--method", "takd", "--num_train_epochs", "1",
                     "--assistant_model_name_or_path", models["assistant"], "--train_teacher",
                     "--teacher_epochs", "1", out="takd")) == 0
    res = results(tmp_path / "takd")
    assert [r["phase"] for r in res["epochs"]] == ["teacher", "assistant", "student"]
    assert json.loads((tmp_path / "takd" / "teacher" / "config.json").read_text())["id2label"] == \
        {"0": "neg", "1": "pos"}


def test_online_teacher_matches_the_cache(models, tmp_path):
    tr, dv = write(tmp_path / "t.csv", rows(24, 0)), write(tmp_path / "d.csv", rows(12, 1))
    args = ("--method", "kd", "--num_train_epochs", "1")
    assert main(argv(models, tmp_path, tr, dv, *args, out="cached")) == 0
    assert main(argv(models, tmp_path, tr, dv, *args, "--online_teacher", out="online")) == 0
    a, b = results(tmp_path / "cached"), results(tmp_path / "online")
    assert a["epochs"][0]["train_loss"] == pytest.approx(b["epochs"][0]["train_loss"], rel=1e-4)


def test_resume(models, tmp_path, monkeypatch):
    import annealing_kd.common.training.trainer as core

    tr, dv = write(tmp_path / "t.csv", rows(24, 0)), write(tmp_path / "d.csv", rows(12, 1))
    assert main(argv(models, tmp_path, tr, dv, out="full")) == 0
    summary, calls = core._summary, []

    def killed(*a):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return summary(*a)

    monkeypatch.setattr(core, "_summary", killed)
    assert main(argv(models, tmp_path, tr, dv, out="cut")) == 130
    monkeypatch.setattr(core, "_summary", summary)
    assert main(argv(models, tmp_path, tr, dv, "--resume", out="cut")) == 0
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "student" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "student" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _error(capsys, args) -> str:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_errors(models, tmp_path, capsys):
    tr, dv = write(tmp_path / "t.csv", rows(24, 0)), write(tmp_path / "d.csv", rows(12, 1))
    assert "no column 'body'" in _error(capsys, argv(models, tmp_path, tr, dv, "--text_column_names", "body"))
    assert "no label column 'y'" in _error(capsys, argv(models, tmp_path, tr, dv, "--label_column_name", "y"))
    odd = write(tmp_path / "odd.csv", rows(12, 1, labels=("neg", "pos", "meh")))
    msg = _error(capsys, argv(models, tmp_path, tr, odd))
    assert "label 'meh'" in msg and "training data does not have" in msg
    msg = _error(capsys, argv(models, tmp_path, tr, dv, teacher="teacher3"))
    assert "3 output labels" in msg and "has 2" in msg
    none = write(tmp_path / "none.csv", [{"body": "a", "label": "x"}, {"body": "b", "label": "y"}])
    assert "pass --text_column_names" in _error(capsys, argv(models, tmp_path, none, dv))
    assert "unknown format" in _error(capsys, argv(models, tmp_path, tr, str(tmp_path / "d.xlsx")))
    assert "does not exist" in _error(capsys, argv(models, tmp_path, tr, str(tmp_path / "no.csv")))
    assert "--task_name picks a GLUE task" in _error(capsys, [*argv(models, tmp_path, tr, dv),
                                                              "--task_name", "sst-2"])
    assert "--metric mcc" in _error(capsys, argv(models, tmp_path, tr, dv, "--metric", "mcc"))
    no_dev = argv(models, tmp_path, tr, dv)
    assert "no dev data" in _error(capsys, no_dev[:2] + no_dev[4:])
    assert "needs a training split" in _error(capsys, no_dev[2:])
    assert "no data" in _error(capsys, ["--output_dir", str(tmp_path / "x"), "--do_train",
                                        "--student_model_name_or_path", models["student"],
                                        "--method", "finetune"])


def test_dataset_name_offline_error(tmp_path):
    """--dataset_name without the network: one error line, exit 2 (a subprocess, so that the
    offline switches are read when datasets is imported)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}
    cmd = [sys.executable, "NLP_glue_tasks/annealing_kd_glue.py", "--dataset_name",
           "someone/not-cached-anywhere", "--output_dir", str(tmp_path / "run"), "--do_train",
           "--student_model_name_or_path", "x", "--method", "finetune"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("error: could not load dataset 'someone/not-cached-anywhere'")
    assert "Traceback" not in out.stderr


def test_ddp_two_processes(models, tmp_path):
    """torchrun, 2 CPU processes on a custom CSV: the main process tokenizes first, the teacher
    logits equal a single process's."""
    import os
    import subprocess
    import sys

    from annealing_kd.common.logit_cache.store import LogitCache

    tr, dv = write(tmp_path / "t.csv", rows(24, 0)), write(tmp_path / "d.csv", rows(12, 1))
    args = ("--method", "kd", "--num_train_epochs", "1")
    assert main(argv(models, tmp_path, tr, dv, *args, out="single")) == 0
    ddp = tmp_path / "ddp"
    ddp.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "NLP_glue_tasks/annealing_kd_glue.py", *argv(models, ddp, tr, dv, *args,
                                                       "--per_gpu_eval_batch_size", "5")]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert results(ddp / "run")["labels"] == ["neg", "pos"]
    def cached(folder: Path) -> dict[str, torch.Tensor]:
        cache = LogitCache(folder)
        return {f.name: cache.read(f, f.stem, "fp32") for f in folder.glob("*.logits")}

    single, two = cached(tmp_path / "logits"), cached(ddp / "logits")
    assert single.keys() == two.keys() and len(two) == 2
    assert all(torch.allclose(single[k], two[k], atol=1e-6) for k in two)


@pytest.mark.parametrize("bad", [["a", "list"], 7, None])
def test_a_text_value_that_is_not_text_is_refused_naming_its_row(models, tmp_path, bad, capsys):
    train = rows(24, 0)
    train[4]["text"] = bad  # a list, a number, null: once trained on as "['a', 'list']", "7", ""
    tr = write(tmp_path / "train.jsonl", train)
    dv = write(tmp_path / "dev.jsonl", rows(12, 1))
    assert main(argv(models, tmp_path, tr, dv, "--method", "finetune", "--num_train_epochs", "1",
                     teacher=None)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "row 5 of the data" in err and "text column 'text'" in err
    assert not (tmp_path / "run" / "results.json").exists()


def test_max_seq_length_below_the_special_tokens_is_refused(models, tmp_path, capsys):
    """Once --max_seq_length 1 did not truncate at all (a long row then failed in the model),
    while results.json recorded 1."""
    train = rows(24, 0)
    train[0]["text"] = " ".join(["word"] * 200)
    tr = write(tmp_path / "train.csv", train)
    dv = write(tmp_path / "dev.csv", rows(12, 1))
    assert main(argv(models, tmp_path, tr, dv, "--method", "finetune", "--num_train_epochs", "1",
                     "--max_seq_length", "2", teacher=None)) == 2
    err = capsys.readouterr().err
    assert err == ("error: --max_seq_length 2 leaves no room for text: the tokenizer adds 2 special "
                   "tokens to each input; pass --max_seq_length 3 or more\n")
    assert main(argv(models, tmp_path, tr, dv, "--method", "finetune", "--num_train_epochs", "1",
                     "--max_seq_length", "3", teacher=None)) == 0


def test_a_student_head_of_another_size_needs_ignore_mismatched_sizes(models, tmp_path, capsys):
    labels = ("a", "b", "c")
    tr = write(tmp_path / "t.csv", rows(24, 0, labels=labels))
    dv = write(tmp_path / "d.csv", rows(12, 1, labels=labels))
    args = argv(models, tmp_path, tr, dv, "--num_train_epochs_phase_2", "1", teacher="teacher3")
    args[args.index("--student_model_name_or_path") + 1] = models["teacher2"]  # a 2-label head
    msg = _error(capsys, args)
    assert "student" in msg and "has 2 output labels but custom has 3" in msg
    assert "--ignore_mismatched_sizes" in msg
    assert main([*args, "--ignore_mismatched_sizes"]) == 0
    res = results(tmp_path / "run")
    assert res["labels"] == ["a", "b", "c"] and res["config"]["ignore_mismatched_sizes"] is True
    assert id2label(tmp_path / "run") == {"0": "a", "1": "b", "2": "c"}
    # a given fine-tuned teacher with another head is still refused
    msg = _error(capsys, argv(models, tmp_path, tr, dv, "--ignore_mismatched_sizes", out="t2"))
    assert "teacher" in msg and "has 2 output labels but custom has 3" in msg


def test_text_run_reproduced_from_its_config_yaml(models, tmp_path):
    import yaml

    tr, dv = write(tmp_path / "t.csv", rows(24, 0)), write(tmp_path / "d.csv", rows(12, 1))
    assert main(argv(models, tmp_path, tr, dv, "--method", "kd", "--num_train_epochs", "1",
                     out="first")) == 0
    written = yaml.safe_load((tmp_path / "first" / "config.yaml").read_text())
    assert written["per_gpu_train_batch_size"] == 8 and written["no_cuda"] is True
    assert written["train_file"] == tr and written["student_epochs"] == 1
    for source, out in (("config.yaml", "again"), ("results.json", "from_json")):
        assert main([str(tmp_path / "first" / source), "--output_dir", str(tmp_path / out)]) == 0
        a, b = results(tmp_path / "first")["config"], results(tmp_path / out)["config"]
        differ = {"output_dir", "command", "config_file"}
        assert {k: v for k, v in a.items() if k not in differ} == \
            {k: v for k, v in b.items() if k not in differ}
        assert results(tmp_path / out)["final"]["metrics"] == results(tmp_path / "first")["final"]["metrics"]
