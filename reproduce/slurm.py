"""run_table on a SLURM cluster (``--launcher slurm``): every CLI call of a table is one ``sbatch``
job, the table's order (teacher -> assistant -> rows) is job dependencies (``afterok``), and
``--status`` reads the run folders and the scheduler. Plain ``sbatch``/``squeue``/``scontrol``:
no accounting database (submitit needs ``sacct``), nothing to install on the cluster.

A job runs ``python reproduce/slurm.py job SPEC``: the run's command, with ``--resume`` when its
folder holds something (decided when the job starts, so a requeued job continues). Asked to stop
before its time limit (``--signal=B:USR1``), it stops the run and requeues itself; a requeue or
preemption by SLURM kills the run, which resumes from its last committed epoch. Either way the
run folder's promise holds: at most the current epoch is lost, and the weights are those an
uninterrupted run reaches.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # run by a job: python reproduce/slurm.py job SPEC
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annealing_kd.common.cli.args import integer  # noqa: E402
from annealing_kd.common.errors import UsageError  # noqa: E402
from annealing_kd.common.run_folder import content  # noqa: E402

STATES = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED",
          "RESV_DEL_HOLD", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT")
JOBS = "slurm/jobs.json"  # run folder (relative to --out) -> job id, written by the submitter


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster (--launcher slurm; docs/cluster.md)")
    g.add_argument("--launcher", choices=["local", "slurm"], default="local",
                   help="local: run here, --jobs at a time; slurm: submit one sbatch job per run "
                        "with the table's order as dependencies, and return")
    g.add_argument("--status", action="store_true",
                   help="print each run's state (finished, running, pending, failed with its "
                        "log's last error line) from the run folders and the scheduler")
    g.add_argument("--partition", default=None, help="sbatch --partition")
    g.add_argument("--account", default=None, help="sbatch --account")
    g.add_argument("--gpus-per-run", default=None, help="sbatch --gpus of each run, e.g. 1")
    g.add_argument("--cpus-per-run", type=integer, default=1,
                   help="sbatch --cpus-per-task of each run")
    g.add_argument("--mem-per-run", default=None, help="sbatch --mem of each run, e.g. 16G")
    g.add_argument("--time-limit", default=None, help="sbatch --time of each run, e.g. 4:00:00")
    g.add_argument("--stop-grace-s", type=integer, default=120,
                   help="a job is asked to stop this long before its time limit (SLURM may send "
                        "it up to 60 s earlier) and requeues itself")
    g.add_argument("--sbatch-extra", default="", help="more sbatch options (one string)")


def sbatch_options(args: argparse.Namespace) -> list[str]:
    """The resources of every job, from run_table's options (checked: one line, exit 2)."""
    for flag, value, least in (("--cpus-per-run", args.cpus_per_run, 1),
                               ("--stop-grace-s", args.stop_grace_s, 0)):
        if value < least:
            raise UsageError(f"{flag} must be at least {least}, got {value}")
    try:
        extra = shlex.split(args.sbatch_extra)
    except ValueError as exc:
        raise UsageError(f"--sbatch-extra is not a valid shell string ({exc})") from None
    opts = [f"--cpus-per-task={args.cpus_per_run}", "--requeue", "--open-mode=append",
            f"--signal=B:USR1@{args.stop_grace_s}"]
    for flag, value in (("partition", args.partition), ("account", args.account),
                        ("gpus", args.gpus_per_run), ("mem", args.mem_per_run),
                        ("time", args.time_limit)):
        if value:
            opts.append(f"--{flag}={value}")
    return opts + extra


def queue() -> dict[str, str]:
    """Job id -> state of every job the scheduler still holds (pending, running, requeued...)."""
    proc = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True)
    if proc.returncode != 0:
        why = " ".join(proc.stderr.split())[:300] or proc.returncode
        raise RuntimeError(f"squeue failed ({why})")
    return dict(line.split(maxsplit=1) for line in proc.stdout.splitlines() if line.strip())


def read_jobs(out: Path) -> dict[str, str]:
    try:
        return json.loads((out / JOBS).read_text())
    except (OSError, ValueError):
        return {}


def submit(plan, folder, args: argparse.Namespace, names: dict[int, str], depends_on,
           held: dict[str, str]) -> dict:
    """Submit every run that is neither finished nor queued (``held``: the scheduler's jobs),
    in plan order; a run depends on the jobs of the runs it reads that are not finished.
    Returns run folder -> job id."""
    out = folder.path
    jobs = read_jobs(out)
    ids: dict[int, str] = {}
    for i, run in enumerate(plan.runs):
        rel = run.out.relative_to(out).as_posix()
        if run.finished():
            print(f"{names[i]}: finished earlier, skipped", flush=True)
            continue
        if jobs.get(rel) in held:
            ids[i] = jobs[rel]
            print(f"{names[i]}: queued earlier as job {ids[i]} ({held[ids[i]].lower()})",
                  flush=True)
            continue
        parents = [ids[j] for j in depends_on(run, plan.runs) if j in ids]
        log = folder.log(f"logs/{rel.replace('/', '__')}.log")
        spec = out / f"slurm/{rel.replace('/', '__')}.json"
        folder.write_json(spec.relative_to(out), {
            "out": str(run.out), "log": str(log),
            "command": run.command(args.python, run.extra)})
        cmd = ["sbatch", "--parsable", f"--job-name=akd-{plan.table}-{rel.replace('/', '-')}",
               f"--output={log}", *sbatch_options(args)]
        if parents:
            cmd.append("--dependency=afterok:" + ":".join(parents))
        cmd += ["--wrap", "exec " + shlex.join([args.python, str(Path(__file__).resolve()), "job",
                                      str(spec)])]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"sbatch failed for {rel}: {proc.stderr.strip()}")
        ids[i] = jobs[rel] = proc.stdout.strip().split(";")[0]
        folder.write_json(JOBS, jobs)
        after = f" after {', '.join(parents)}" if parents else ""
        print(f"{names[i]}: submitted as job {ids[i]}{after}", flush=True)
    return jobs


def last_error(log: Path) -> str:
    """The last line of a log that says what went wrong (``error: ...``, a traceback's last line),
    else its last line."""
    try:
        lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if line.startswith("error:") or line.split(":")[0].endswith(("Error", "Exception")) or \
                line.startswith(("slurmstepd: error:", "CANCELLED")):
            return line
    return lines[-1] if lines else "empty log"


def status(plan, out: Path, names: dict[int, str]) -> list[str]:
    """One line per run: finished, the scheduler's state, failed (its log's error), or not
    submitted."""
    jobs = read_jobs(out)
    held = queue() if jobs else {}  # nothing submitted: no scheduler needed
    lines = []
    for i, run in enumerate(plan.runs):
        rel = run.out.relative_to(out).as_posix()
        job = jobs.get(rel)
        if run.finished():
            state = "finished"
        elif job in held:
            state = f"{held[job].lower()} (job {job})"
        elif job:
            log = out / "logs" / f"{rel.replace('/', '__')}.log"
            started = log.is_file() and "\n$ " in "\n" + log.read_text(errors="replace")
            state = f"failed (job {job}): {last_error(log)}" if started else \
                f"not run (job {job} cancelled, or a run it reads failed)"
        else:
            state = "not submitted"
        lines.append(f"{names[i]}: {state}")
    return lines


# ---- inside the job --------------------------------------------------------------------------------
def job(spec_path: str) -> int:
    """Run one table run inside its SLURM job: ``--resume`` when its folder holds something; on
    USR1 (the time limit is near) stop the run, requeue this job and exit 0."""
    spec = json.loads(Path(spec_path).read_text())
    cmd = spec["command"] + (["--resume"] if content(Path(spec["out"])) else [])
    started = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    print(f"# job {os.environ.get('SLURM_JOB_ID')} on {socket.gethostname()}, started {started}")
    print(f"$ {shlex.join(cmd)}", flush=True)
    child = subprocess.Popen(cmd)
    asked: list[int] = []

    def stop(signum, _frame) -> None:
        asked.append(signum)
        child.terminate()

    signal.signal(signal.SIGUSR1, stop)
    signal.signal(signal.SIGTERM, stop)
    rc = child.wait()
    if asked and asked[0] == signal.SIGUSR1 and os.environ.get("SLURM_JOB_ID"):
        print("time limit near: the run stopped at its last committed epoch; requeued", flush=True)
        subprocess.run(["scontrol", "requeue", os.environ["SLURM_JOB_ID"]])
        return 0
    return rc


if __name__ == "__main__":
    if sys.argv[1:2] != ["job"] or len(sys.argv) != 3:
        sys.exit("usage: python reproduce/slurm.py job SPEC (run by the SLURM jobs of run_table)")
    sys.exit(job(sys.argv[2]))
