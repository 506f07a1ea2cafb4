"""Annealing-KD on CIFAR-10/100 (and MNIST-like data) with CIFAR ResNets.

One command trains (or loads) the teacher and trains the student by ``--method``:

    scratch    student with cross-entropy                          phase "student"
    kd         Hinton KD from the teacher                           phase "student"
    takd       teacher -> assistant by KD, assistant -> student by KD  phases "assistant", "student"
    annealing  phase 1: MSE(z_s, Phi(T) z_t); phase 2 from the best  phases "phase1", "phase2"
               phase-1 checkpoint with cross-entropy (no teacher)

The final student is the best epoch over its phases on the selection split (held-out training
images, or the test set with ``--val-size 0``), saved as ``<out>/student/best.safetensors``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python computer_vision_tasks/annealing_kd_train.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.errors import UsageError, run_cli  # noqa: E402


def load_teacher_checkpoint(model, path: str, arch: str, num_classes: int) -> None:
    """Load our safetensors or the original's ``{'model_state_dict': ...}`` (weights_only)."""
    import torch

    from common.checkpoint import load_weights

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"teacher checkpoint {p} does not exist; check --teacher-checkpoint")
    if p.suffix == ".safetensors":
        state = load_weights(p)
    else:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UsageError(f"cannot read teacher checkpoint {p} ({type(exc).__name__}); give our "
                             ".safetensors file or a torch.save'd {'model_state_dict': ...}") from None
        state = obj.get("model_state_dict", obj) if isinstance(obj, dict) else None
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise UsageError(f"teacher checkpoint {p} holds no state dict; give our .safetensors "
                             "file or a torch.save'd {'model_state_dict': ...}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        detail = "; ".join(s for s in (
            f"{len(missing)} tensors missing (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
            f"shape mismatch {wrong[0]}" if wrong else "") if s)
        raise UsageError(f"teacher checkpoint {p} does not fit --teacher {arch} with {num_classes} "
                         f"classes ({detail}); pass the architecture and --dataset it was trained on")
    model.load_state_dict(state)


RESUME_KEYS = ["dataset", "method", "teacher", "student", "assistant", "teacher_checkpoint",
               "teacher_epochs", "student_epochs_p1", "student_epochs_p2", "student_epochs",
               "assistant_epochs", "max_temperature", "anneal_per_step", "batch_size",
               "learning_rate", "momentum", "weight_decay", "kd_alpha", "kd_temperature", "seed",
               "val_size", "train_subset"]


def _main(argv: Sequence[str] | None) -> int:
    from computer_vision_tasks.cli import parse_args

    return train(parse_args(argv))


def train(args) -> int:
    import math
    import shutil

    import torch

    from common.checkpoint import save_weights
    from common.lr_schedules import constant, step_decay
    from common.run_dir import RunDir, check_same_run, environment_info
    from common.schedule import check_schedule
    from common.seeding import seed_everything
    from common.trainer import Batches, Phase, Trainer, frozen_logits, make_accelerator, predict
    from computer_vision_tasks import data, models

    spec = data.get_spec(args.dataset)
    roles = {"--student": args.student}
    if args.method != "scratch":
        roles["--teacher"] = args.teacher
    if args.method == "takd":
        roles["--assistant"] = args.assistant
    for flag, name in roles.items():
        models.check_model_name(name, flag)

    acc = make_accelerator(args.device, args.amp)
    seed_everything(args.seed)
    with acc.main_process_first():  # one process downloads / unpacks
        splits = data.make_splits(args.dataset, args.dataset_dir, args.val_size, args.train_subset,
                                  args.seed)
    split = "val" if splits.val is not None else "test"
    if args.method == "annealing" and args.anneal_per_step:
        steps = math.ceil(len(splits.train) / (args.batch_size * acc.num_processes))
        check_schedule(steps * args.student_epochs_p1, args.max_temperature, "optimizer steps")

    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    def make(name: str):
        model = models.create_model(name, spec.num_classes, spec.channels, spec.size)
        return model.to(memory_format=memory_format)

    def forward(model, batch):
        return model(batch[0].contiguous(memory_format=memory_format))

    def frozen_forward(model, batch):  # a model that accelerate did not prepare: autocast here
        with acc.autocast():
            return forward(model, batch)

    def labels(batch):
        return batch[1]

    teacher = None
    if args.method != "scratch":
        teacher = make(args.teacher)  # created (seeded) in the same order in every run
    student = make(args.student)
    assistant = make(args.assistant) if args.method == "takd" else None
    if teacher is not None and args.teacher_checkpoint:
        load_teacher_checkpoint(teacher, args.teacher_checkpoint, args.teacher, spec.num_classes)

    with acc.main_process_first():
        run = RunDir(args.output_dir, overwrite=args.overwrite_output_dir, resume=args.resume,
                     is_main=acc.is_main_process, check=acc.is_main_process,
                     inputs={"--teacher-checkpoint": args.teacher_checkpoint,
                             "--dataset-dir": args.dataset_dir})

    if args.resume:
        check_same_run(run.saved_config(), vars(args), RESUME_KEYS)

    eval_bs = 2 * args.batch_size
    if acc.device.type == "cuda" and acc.num_processes == 1 and not args.no_gpu_loader:
        # the whole dataset on the GPU, augmented there (one process; DDP uses the DataLoader)
        def loader(ds, train: bool):
            return data.gpu_loader(ds, spec, args.batch_size if train else eval_bs, train,
                                   args.seed, acc.device, args.channels_last)
    else:
        def loader(ds, train: bool):
            if train:
                return data.train_loader(ds, args.batch_size, args.seed, args.num_workers)
            return acc.prepare(data.eval_loader(ds, eval_bs, args.num_workers))
    train_loader = loader(splits.train, True)
    test_loader = loader(splits.test, False)
    sel_loader = loader(splits.val, False) if splits.val is not None else test_loader

    def accuracy(model, loader, fwd=forward) -> float:
        logits, y = predict(acc, model, loader, fwd, labels)
        return (logits.argmax(1) == y).float().mean().item()

    config = {**vars(args), "num_classes": spec.num_classes, "train_images": len(splits.train),
              "val_images": len(splits.val) if splits.val is not None else 0,
              "test_images": len(splits.test), "processes": acc.num_processes}
    trainer = Trainer(acc, run, config=config, env=environment_info(),
                      evaluate=lambda m: {f"{split}_accuracy": accuracy(m, sel_loader)},
                      selection_metric=f"{split}_accuracy", selected_on=split, seed=args.seed,
                      resume=args.resume, deterministic=args.deterministic)

    def phase(name: str, objective: str, epochs: int, arch: str, **extra) -> Phase:
        """SGD; ResNets: step decay restarting per phase; plain CNNs: constant lr/10."""
        resnet = models.is_resnet(arch)
        lr = args.learning_rate if resnet else args.learning_rate / 10

        def make_optimizer(model):
            return torch.optim.SGD(model.parameters(), lr=lr, momentum=args.momentum,
                                   weight_decay=args.weight_decay)

        return Phase(name, objective, epochs, make_optimizer,
                     lr_factor=step_decay if resnet else constant, kd_alpha=args.kd_alpha,
                     kd_temperature=args.kd_temperature, **extra)

    def describe(model, arch: str, source: str) -> dict:
        info = {"model": arch, "parameters": models.num_parameters(model), "source": source,
                "test_accuracy": accuracy(model, test_loader, frozen_forward)}
        if split == "val":
            info["val_accuracy"] = accuracy(model, sel_loader, frozen_forward)
        return info

    plain = Batches(forward, labels)
    if teacher is not None:
        if args.teacher_checkpoint:
            teacher = teacher.to(acc.device)
            source = str(args.teacher_checkpoint)
        else:
            teacher = acc.prepare(teacher)
            trainer.fit(teacher, phase("teacher", "task", args.teacher_epochs, args.teacher),
                        train_loader, plain)
            trainer.load_best(teacher, "teacher")
            teacher = acc.unwrap_model(teacher)
            source = str(run / "teacher" / "best.safetensors")
        trainer.extra["teacher"] = describe(teacher, args.teacher, source)
        acc.print(f"teacher {args.teacher}: test accuracy {trainer.extra['teacher']['test_accuracy']:.4f}")

    if assistant is not None:  # TAKD: teacher -> assistant by KD
        assistant = acc.prepare(assistant)
        trainer.fit(assistant, phase("assistant", "kd", args.assistant_epochs, args.assistant),
                    train_loader, Batches(forward, labels, frozen_logits(teacher, frozen_forward)))
        trainer.load_best(assistant, "assistant")
        teacher = acc.unwrap_model(assistant)  # the student's teacher from here on
        trainer.extra["assistant"] = describe(teacher, args.assistant,
                                              str(run / "assistant" / "best.safetensors"))

    student = acc.prepare(student)
    if args.method == "annealing":
        p1 = phase("phase1", "anneal", args.student_epochs_p1, args.student,
                   max_temperature=args.max_temperature, anneal_per_step=args.anneal_per_step)
        trainer.fit(student, p1, train_loader,
                    Batches(forward, labels, frozen_logits(teacher, frozen_forward)))
        del teacher  # phase 2 never calls it
        trainer.load_best(student, "phase1")  # phase 2 starts from the best phase-1 weights
        trainer.fit(student, phase("phase2", "task", args.student_epochs_p2, args.student),
                    train_loader, plain)
        phases = ["phase1", "phase2"]
    else:
        objective = "task" if args.method == "scratch" else "kd"
        batches = plain if teacher is None else Batches(forward, labels,
                                                        frozen_logits(teacher, frozen_forward))
        trainer.fit(student, phase("student", objective, args.student_epochs, args.student),
                    train_loader, batches)
        phases = ["student"]

    last_test = accuracy(student, test_loader)  # the model holds the last epoch's weights
    chosen = trainer.select(phases)
    trainer.load_best(student, chosen["phase"])
    best_test = accuracy(student, test_loader)
    if acc.is_main_process and phases != ["student"]:
        save_weights(acc.unwrap_model(student).state_dict(), run / "student" / "best.safetensors")
        shutil.copyfile(run / phases[-1] / "last.safetensors", run / "student" / "last.safetensors")
    metrics = {f"{split}_accuracy": chosen["metric"], "test_accuracy": best_test,
               "last_epoch_test_accuracy": last_test}
    trainer.extra["student"] = {"model": args.student,
                                "parameters": models.num_parameters(student),
                                "checkpoint": str(run / "student" / "best.safetensors")}
    trainer.write_results(trainer.final_entry(chosen, metrics))
    acc.print(summary_table(trainer.extra, chosen, metrics, split, config["val_images"]))
    acc.wait_for_everyone()
    return 0


def summary_table(extra: dict, chosen: dict, metrics: dict, split: str, val_images: int) -> str:
    """The end-of-run table: teacher (and assistant), student best and last-epoch test accuracy."""
    rows = [f"{'':10} {'model':10} {'params':>10} {'test acc':>9} {'last epoch':>10}"]
    for role in ("teacher", "assistant"):
        if extra.get(role):
            r = extra[role]
            rows.append(f"{role:10} {r['model']:10} {r['parameters']:>10,} "
                        f"{100 * r['test_accuracy']:>8.2f}% {'':>10}")
    s = extra["student"]
    rows.append(f"{'student':10} {s['model']:10} {s['parameters']:>10,} "
                f"{100 * metrics['test_accuracy']:>8.2f}% "
                f"{100 * metrics['last_epoch_test_accuracy']:>9.2f}%")
    where = (f"{val_images} held-out training images" if split == "val"
             else "the test set (as the paper; optimistic)")
    rows.append(f"student selected: {chosen['phase']} epoch {chosen['epoch']}, by accuracy on "
                f"{where}")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
