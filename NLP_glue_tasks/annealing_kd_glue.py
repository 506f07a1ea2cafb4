"""Annealing-KD on GLUE (and your own text data) with Hugging Face transformers: the phases of
``--method`` (teacher with --train_teacher, assistant, phase1/phase2 or student), each resumable at
every epoch. Flags and checks: ``cli.py``; the run: ``pipeline.py``; evaluation and test
predictions: ``evaluate.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python NLP_glue_tasks/annealing_kd_glue.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annealing_kd.common.cli.entry import run_cli  # noqa: E402
from annealing_kd.common.cli.settings import print_config  # noqa: E402
from annealing_kd.NLP_glue_tasks.cli import CLI, flag_of, parse_args  # noqa: E402


def _main(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    if print_config(args, CLI):
        return 0
    # torch, transformers and datasets: only after --help and the checks
    from annealing_kd.common.cli.quiet import quiet_libraries
    from annealing_kd.common.run_folder import OutputFolder
    from annealing_kd.NLP_glue_tasks.custom_data import task_and_data
    from annealing_kd.NLP_glue_tasks.evaluate import evaluate_saved, predict_test
    from annealing_kd.NLP_glue_tasks.pipeline import TextPipeline, accelerator

    with quiet_libraries("transformers"):  # errors are our lines, no load report above them
        task, data = task_and_data(args)  # your own files are read only now
        if args.do_train:
            pipe = TextPipeline(args, task, data)
            pipe.train()
            acc, out = pipe.acc, pipe.run if pipe.acc.is_main_process else None
        else:
            acc = accelerator(args)
            out = OutputFolder(args.output_dir, "annealing_kd_glue", flag="--output_dir") \
                if acc.is_main_process else None
        if args.do_eval:
            evaluate_saved(args, task, data, acc, out)
        if args.do_predict:
            predict_test(args, task, data, acc, out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, flag_of)


if __name__ == "__main__":
    sys.exit(main())
