"""What both CLIs' pipelines share: accelerator, run folder and inputs, ``Trainer``, phases, the
end of the run; each CLI's subclass gives the hooks of ``annealing_kd.common.methods.run.Pipeline``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cli import settings
from ..cli.inputs import Inputs
from ..integrations import model_card
from ..integrations.tracking import FOLDER, trackers
from ..methods import PhasePlan, get_method
from ..methods.objectives import options_of
from ..run_folder import RunDir
from .environment import environment_info
from .lr_schedules import LrSchedule
from .trainer import Phase, Trainer, make_accelerator


def run_accelerator(args, device: str, amp: str, grad_accum: int = 1):
    """The run's ``accelerate.Accelerator``, its --report_to trackers writing in the run folder."""
    return make_accelerator(device, amp, grad_accum, log_with=trackers(args.report_to),
                            project_dir=str(Path(args.output_dir) / FOLDER))


class BasePipeline:
    """One run of a CLI (``cli``: its settings' spelling; ``program``: its script, for the
    manifest)."""

    cli: str
    program: str

    def __init__(self, args, acc) -> None:
        self.args, self.acc, self.method = args, acc, get_method(args.method)

    def start_run(self, inputs: Inputs, evaluate: Callable | None, metric: str, selected_on: str,
                  log_every: int, **facts: Any) -> None:
        """The run folder and its ``Trainer``; the config holds the settings, ``facts`` (derived
        from the data) and the inputs' fingerprints, which --resume compares with the run's;
        config.yaml holds the settings as a config file that reproduces the run."""
        args, acc = self.args, self.acc
        with acc.main_process_first():
            self.run = RunDir(args.output_dir, overwrite=args.overwrite_output_dir,
                              resume=args.resume, is_main=acc.is_main_process,
                              check=acc.is_main_process, inputs=inputs.apart, program=self.program)
        self.config = {**vars(args), **facts, "inputs": inputs.fingerprints()}
        if args.resume:
            self.run.check_same(self.config, settings.resume_keys(self.cli))
        self.trainer = Trainer(acc, self.run, config=self.config, env=environment_info(),
                               evaluate=evaluate, selection_metric=metric, selected_on=selected_on,
                               seed=args.seed, resume=args.resume, deterministic=args.deterministic,
                               log_every=log_every, trackers=trackers(args.report_to),
                               files={"config.yaml": settings.config_yaml(args, self.cli)})

    def make_phase(self, step: PhasePlan, make_optimizer, lr_schedule: LrSchedule,
                   **extra: Any) -> Phase:
        """A step's ``Phase``: the epochs of its budget, the annealing and the objectives' options
        (``extra``: the CLI's own fields)."""
        args = self.args
        return Phase(step.phase, step.objective, settings.epochs(args, step.budget),
                     make_optimizer, lr_schedule, max_temperature=args.max_temperature,
                     anneal_per_step=args.anneal_per_step, options=options_of(args), **extra)

    def finish(self, final: dict[str, Any], card: str, teacher: str | None, summary: str) -> None:
        """The model card (``teacher``: the teacher's weights, if the method has one), then
        results.json, whose final entry marks the run complete, then the end-of-run table."""
        if self.acc.is_main_process:
            model_card.write(self.run, card, self.trainer.results(final), self.cli,
                             teacher if self.method.uses("teacher") else None)
        self.trainer.write_results(final)
        self.acc.print(summary)
