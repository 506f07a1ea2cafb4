"""CIFAR benchmark: phase 1 of Annealing-KD, ours against the original's way (images/s).

- ours:      the teacher (``annealing_kd.common.training.trainer.frozen_logits``: eval mode, ``torch.inference_mode``)
             gives the targets; a student step with the shared ``annealing_kd.common.methods.annealing.annealing_loss``;
             optionally channels_last, bf16 autocast, ``torch.compile`` and the GPU-resident
             loader (``annealing_kd.computer_vision_tasks.tensor_loader.TensorLoader``).
- original:  as the original script: teacher in eval mode but with autograd on and its
             parameters wanting gradients, ``F.mse_loss(student(x), teacher(x) * T / T_max)``
             and ``loss.backward()``, so the backward runs through the whole teacher (its
             gradients pile up unused); fp32, NCHW, torchvision transforms on the CPU.

``--mode teacher`` / ``--mode student`` time plain cross-entropy training of one model instead
(teacher training and phase 2), for estimating a whole table row.

Data: ``tensors`` (pre-made batches on the device: the training step alone), ``torchvision``
(the CPU path: uint8 arrays -> PIL -> RandomCrop/Flip/ToTensor/Normalize in a DataLoader) or
``gpu`` (TensorLoader). The original's way reads ``tensors`` when ours does, else ``torchvision``.

    python benchmarks/bench_cifar.py --batches 4 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CIFAR_TRAIN = 50_000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", default="phase1", choices=["phase1", "teacher", "student"])
    p.add_argument("--teacher", default="resnet110")
    p.add_argument("--student", default="resnet8")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=4, help="batches in one timed round")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds of each loop")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--amp", default="none", choices=["none", "bf16"], help="autocast for ours")
    p.add_argument("--layout", default="both", choices=["nchw", "channels_last", "both"],
                   help="memory format(s) of ours; 'both' times each")
    p.add_argument("--data", default="tensors", choices=["tensors", "torchvision", "gpu"],
                   help="where ours reads its batches")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (torchvision)")
    p.add_argument("--compile", action="store_true", help="torch.compile ours' models")
    p.add_argument("--skip-original", action="store_true")
    p.add_argument("--max-temperature", type=int, default=10)
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default); 1 is steadier on a busy machine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return p.parse_args(argv)


def ours_step(student, targets, opt, x, phi: float, amp):
    """One phase-1 step of ours: frozen targets (no autograd), student forward/backward/update."""
    from annealing_kd.common.methods.annealing import annealing_loss

    with amp:
        t = targets(x)
        s = student(x)
    loss = annealing_loss(s.float(), t, phi)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def original_step(student, teacher, opt, x, T: int, max_temperature: int):
    """One phase-1 step exactly as the original script: the teacher (eval mode, parameters
    wanting gradients) runs with autograd on and the backward goes through it."""
    import torch.nn.functional as F

    opt.zero_grad()
    output = student(x)
    teacher_outputs = teacher(x)
    loss = F.mse_loss(output, teacher_outputs * T / max_temperature)
    loss.backward()
    opt.step()
    return loss


def calibrate_bn(model, x) -> None:
    """Set every BatchNorm's running statistics from one batch (an untrained deep ResNet in eval
    mode has exploding logits, which would make the losses overflow)."""
    from torch.optim.swa_utils import update_bn

    update_bn([x], model)  # cumulative average over the one batch, momenta restored after
    model.eval()


class Bench:
    """The loops of one benchmark: data sources on the device, models, and a timed ``run`` per
    loop (each returns the images it trained on)."""

    def __init__(self, args: argparse.Namespace) -> None:
        import numpy as np
        import torch

        from annealing_kd.computer_vision_tasks.data import get_spec
        from annealing_kd.computer_vision_tasks.models import create_model
        from benchmarks._util import resolve_device

        self.args, self.torch = args, torch
        self.device = device = resolve_device(args.device)
        self.spec = get_spec("cifar10")
        rng = np.random.default_rng(args.seed)
        n = args.batch_size * args.batches
        self.hwc = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        self.labels = rng.integers(0, args.num_classes, n)
        gen = torch.Generator().manual_seed(args.seed)
        self.pool = [(torch.randn(args.batch_size, 3, 32, 32, generator=gen).to(device),
                      torch.randint(0, args.num_classes, (args.batch_size,), generator=gen).to(device))
                     for _ in range(args.batches)]
        self.amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp == "bf16")
        self.teacher0 = create_model(args.teacher, args.num_classes)
        self.student0 = create_model(args.student, args.num_classes)
        calibrate_bn(self.teacher0, self.pool[0][0].cpu())  # sane eval-mode logits, as a trained teacher's
        self.losses: dict[str, float] = {}
        self.gpu_epoch = 0
        self.tv_loader = self.gpu_loaders = None

    # ---- data sources: each is a callable returning an iterable of (x, y) on the device ----
    def source(self, kind: str, cl: bool):
        if kind == "tensors":
            return lambda: self.pool
        if kind == "torchvision":
            return self.torchvision_batches
        return lambda: self.gpu_batches(cl)

    def torchvision_batches(self):
        from torch.utils.data import DataLoader

        from annealing_kd.computer_vision_tasks.data import ArrayImages, transforms_for

        args, device = self.args, self.device
        if self.tv_loader is None:
            self.tv_loader = DataLoader(ArrayImages(self.hwc, self.labels, transforms_for(self.spec, train=True)),
                                        batch_size=args.batch_size, shuffle=True,
                                        num_workers=args.num_workers,
                                        persistent_workers=args.num_workers > 0,
                                        pin_memory=device.type == "cuda")
        for x, y in self.tv_loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def gpu_batches(self, cl: bool):
        from annealing_kd.computer_vision_tasks.tensor_loader import TensorLoader, from_hwc

        if self.gpu_loaders is None:
            self.gpu_loaders = {c: TensorLoader(from_hwc(self.hwc), self.labels, self.args.batch_size,
                                                self.spec.mean, self.spec.std, train=True,
                                                seed=self.args.seed, device=self.device,
                                                channels_last=c)
                                for c in (False, True)}
        self.gpu_epoch += 1
        self.gpu_loaders[cl].set_epoch(self.gpu_epoch)
        return ((x, y) for x, y, _ in self.gpu_loaders[cl])

    # ---- models and loops -----------------------------------------------------------------------
    def sgd(self, model):
        return self.torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def prepare(self, model, cl: bool):
        import copy

        model = copy.deepcopy(model).to(self.device)
        if cl:
            model = model.to(memory_format=self.torch.channels_last)
        return self.torch.compile(model) if self.args.compile else model

    def loop(self, name: str, batches, cl: bool, step) -> Callable[[int | None], int]:
        """A timed loop: ``step(x, y)`` on each batch (at most ``limit``); the last loss kept."""
        def run(limit: int | None = None) -> int:
            seen, loss = 0, None
            for b, (x, y) in enumerate(batches()):
                if limit is not None and b >= limit:
                    break
                if cl:
                    x = x.contiguous(memory_format=self.torch.channels_last)
                loss = step(x, y)
                seen += len(x)
            self.losses[name] = loss.item()
            return seen

        return run

    def ours_phase1(self, cl: bool) -> tuple[str, Callable]:
        from annealing_kd.common.training.trainer import frozen_logits

        student, teacher = self.prepare(self.student0, cl), self.prepare(self.teacher0, cl)
        student.train()
        opt, targets = self.sgd(student), frozen_logits(teacher, lambda m, x: m(x))
        name = f"ours ({'channels_last' if cl else 'NCHW'})"
        phi = 0.5  # any fixed multiplier: the cost does not depend on it
        return name, self.loop(name, self.source(self.args.data, cl), cl,
                               lambda x, y: ours_step(student, targets, opt, x, phi, self.amp))

    def plain_training(self, which: str, cl: bool) -> tuple[str, Callable]:
        from annealing_kd.common.methods.losses import task_loss

        model = self.prepare(self.teacher0 if which == "teacher" else self.student0, cl).train()
        opt = self.sgd(model)
        name = f"{which} training ({'channels_last' if cl else 'NCHW'})"

        def step(x, y):
            with self.amp:
                out = model(x)
            loss = task_loss(out.float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

        return name, self.loop(name, self.source(self.args.data, cl), cl, step)

    def original(self) -> Callable:
        """The original: eval mode, autograd on, parameters wanting gradients (never zeroed)."""
        import copy

        args = self.args
        student = copy.deepcopy(self.student0).to(self.device).train()
        teacher = copy.deepcopy(self.teacher0).to(self.device).eval().requires_grad_(True)
        opt = self.sgd(student)
        batches = self.source("tensors" if args.data == "tensors" else "torchvision", False)
        T = args.max_temperature // 2
        return self.loop("original", batches, False,
                         lambda x, y: original_step(student, teacher, opt, x, T, args.max_temperature))

    def runs(self) -> tuple[dict[str, Callable], dict[str, str]]:
        """The loops to time (by name) and what they train."""
        args = self.args
        layouts = {"nchw": [False], "channels_last": [True], "both": [False, True]}[args.layout]
        if args.mode != "phase1":
            runs = dict(self.plain_training(args.mode, cl) for cl in layouts)
            return runs, {args.mode: args.teacher if args.mode == "teacher" else args.student}
        runs = dict(self.ours_phase1(cl) for cl in layouts)
        if not args.skip_original:
            runs["original"] = self.original()
        return runs, {"teacher": args.teacher, "student": args.student}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from benchmarks._util import alternate

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = Bench(args)
    if args.data == "gpu" and bench.device.type != "cuda":
        print("note: --data gpu on the CPU: TensorLoader runs on CPU tensors")
    if bench.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    runs, describe = bench.runs()
    print(f"CIFAR {args.mode} benchmark: {describe}, batch {args.batch_size}, {args.batches} "
          f"batches per round, {args.repeats} repeats, {bench.device}, amp {args.amp}, data "
          f"{args.data}{', compiled' if args.compile else ''}", flush=True)
    warm = {k: (lambda fn=fn: fn(1)) for k, fn in runs.items()}
    rates, cpu_rates = alternate(runs, args.repeats, bench.device, warmup=warm)
    report(args, bench, describe, rates, cpu_rates)
    return 0


def report(args: argparse.Namespace, bench: Bench, describe: dict[str, str],
           rates: dict[str, list[float]], cpu_rates: dict[str, list[float]]) -> None:
    """The table of medians (images/s, and per CPU-second on the CPU), ratios to the original."""
    import json
    import math

    from benchmarks._util import machine, table, verdict
    from reproduce.stats import median

    device = bench.device
    med = {k: median(v) for k, v in rates.items()}
    cpu = {k: median(v) for k, v in cpu_rates.items()} if device.type == "cpu" else None
    ref = med.get("original")
    headers = ["loop", "images/s", "epoch s (50k)"] + (["vs original"] if ref else [])
    rows = [[k, v, CIFAR_TRAIN / v] + ([v / ref] if ref else []) for k, v in med.items()]
    if cpu:
        headers += ["images/CPU-s"] + (["vs original (CPU time)"] if ref else [])
        for row, k in zip(rows, med, strict=True):
            row += [cpu[k]] + ([cpu[k] / cpu["original"]] if ref else [])
    print(f"\nmachine: {machine()} (a load average above the core count means other processes "
          "competed for the cores: compare the CPU-time columns)")
    print(table(headers, rows))
    result = {"mode": args.mode, "machine": machine(), "device": str(device), "amp": args.amp,
              "data": args.data, "compile": args.compile, "batch_size": args.batch_size,
              "batches": args.batches, "repeats": args.repeats, **describe,
              "images_per_s": med, "all_rates": rates, "images_per_cpu_s": cpu,
              "last_loss": bench.losses}
    if ref:
        best = max((k for k in med if k != "original"), key=med.get)
        print(f"\nbest of ours ({best}) vs original: {med[best] / ref:.2f}x images/s "
              f"(target >= 3: {verdict(med[best] / ref, 3)})"
              + (f"; by CPU time {cpu[best] / cpu['original']:.2f}x" if cpu else ""))
        result["ours_vs_original"] = {k: v / ref for k, v in med.items() if k != "original"}
        if cpu:
            result["ours_vs_original_cpu_time"] = {k: v / cpu["original"] for k, v in cpu.items()
                                                   if k != "original"}
    bad = {k: v for k, v in bench.losses.items() if not math.isfinite(v)}
    if bad:
        print(f"warning: non-finite final loss in {bad}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
