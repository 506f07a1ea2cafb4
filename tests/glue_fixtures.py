"""Test fixtures for the GLUE pipeline: tiny BERTs with test-written vocabularies and GLUE-format
TSV folders (the download_glue_data.py layout) for all nine tasks."""

from __future__ import annotations

import random
from pathlib import Path

GOOD = ["good", "great", "fine", "nice", "happy"]
BAD = ["bad", "awful", "poor", "sad", "ugly"]
OTHER = ["the", "a", "movie", "film", "plot", "actor", "is", "was", "very", "quite", "not",
         "cat", "dog", "man", "woman", "runs", "sees", "park", "house", "\"", "?", ".", ","]
WORDS = GOOD + BAD + OTHER
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_vocab(path: Path, words: list[str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(SPECIAL + words) + "\n")
    return path / "vocab.txt"


def tiny_bert(path: Path, *, num_labels: int | None, words: list[str] | None = None, seed: int = 0,
              id2label: dict[int, str] | None = None) -> str:
    """Save a tiny BERT (hidden 32, 2 layers, 2 heads) with its tokenizer to ``path``.
    ``num_labels=None``: a base model without a classification head."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    words = words or WORDS
    write_vocab(path, words)
    tok = BertTokenizerFast.from_pretrained(str(path), do_lower_case=True)  # v4 and v5 alike
    assert tok.unk_token_id not in tok(words[0])["input_ids"]
    torch.manual_seed(seed)
    kw = {"num_labels": num_labels} if num_labels else {}
    if id2label:
        kw.update(id2label=id2label, label2id={v: k for k, v in id2label.items()})
    config = BertConfig(vocab_size=len(SPECIAL) + len(words), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128, **kw)
    model = BertForSequenceClassification(config) if num_labels else BertModel(config)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return str(path)


def _sentence(rng: random.Random, label: int | None = None) -> str:
    words = [rng.choice(OTHER[:-4]) for _ in range(rng.randint(3, 12))]
    if label is not None:
        words.insert(rng.randrange(len(words)), rng.choice(GOOD if label else BAD))
    if rng.random() < 0.2:
        words.append('"')  # an unbalanced quote: GLUE files must be read without quote handling
    return " ".join(words)


# header (or None), row function (i, rng, split) -> list of fields, for train/dev and for test
def _rows(task: str, i: int, rng: random.Random, test: bool) -> list[str]:
    y = rng.randint(0, 1)
    s1, s2 = _sentence(rng, y), _sentence(rng)
    if task == "CoLA":
        return [str(i), s1] if test else ["src", str(y), "", s1]
    if task == "SST-2":
        return [str(i), s1] if test else [s1, str(y)]
    if task == "MRPC":
        return [str(i), "1", "2", s1, s2] if test else [str(y), "1", "2", s1, s2]
    if task == "STS-B":
        row = [str(i), "main", "f", "2012", "0", "s", "s", s1, s2]
        return row if test else row + [f"{5 * y * rng.uniform(0.6, 1.0):.3f}"]
    if task == "QQP":
        return [str(i), s1, s2] if test else [str(i), "1", "2", s1, s2, str(y)]
    if task == "MNLI":
        lab = ["contradiction", "entailment", "neutral"][rng.randint(0, 2) if not y else 1]
        row = [str(i), "1", "2", "fiction", "(", "(", "(", "(", s1, s2]
        return row if test else row + [lab] * (6 if not test else 0)
    lab = ["entailment", "not_entailment"][y] if task in ("QNLI", "RTE") else str(y)
    return [str(i), s1, s2] if test else [str(i), s1, s2, lab]


HEADERS = {
    "CoLA": (None, ["index", "sentence"]),
    "SST-2": (["sentence", "label"], ["index", "sentence"]),
    "MRPC": (["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
             ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"]),
    "STS-B": (["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1",
               "sentence2", "score"], None),
    "QQP": (["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
            ["id", "question1", "question2"]),
    "MNLI": (["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
              "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
              "sentence2", "label1", "label2", "label3", "label4", "label5", "gold_label"], None),
    "QNLI": (["index", "question", "sentence", "label"], ["index", "question", "sentence"]),
    "RTE": (["index", "sentence1", "sentence2", "label"], ["index", "sentence1", "sentence2"]),
    "WNLI": (["index", "sentence1", "sentence2", "label"], ["index", "sentence1", "sentence2"]),
}


def write_glue(root: Path, folder: str, n_train: int = 32, n_dev: int = 16, n_test: int = 8,
               seed: int = 0) -> Path:
    """A GLUE task folder ``root/folder`` with train/dev/test TSVs."""
    rng = random.Random(seed)
    path = root / folder
    path.mkdir(parents=True, exist_ok=True)
    head, test_head = HEADERS[folder]
    if folder == "STS-B":
        test_head = head[:-1]
    splits = {"train": n_train, "dev": n_dev, "test": n_test}
    if folder == "MNLI":
        splits = {"train": n_train, "dev_matched": n_dev, "dev_mismatched": n_dev,
                  "test_matched": n_test, "test_mismatched": n_test}
    for split, n in splits.items():
        test = split.startswith("test")
        h = test_head if test else head
        if folder == "MNLI":
            h = head[:10] if test else head[:11] + ["gold_label"] if split == "train" else head
        rows = [_rows(folder, i, rng, test) for i in range(n)]
        if folder == "MNLI" and not test:
            width = len(h)
            rows = [r[:10] + [r[-1]] * (width - 10) for r in rows]
        lines = (["\t".join(h)] if h else []) + ["\t".join(r) for r in rows]
        (path / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return path
