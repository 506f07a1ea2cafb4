"""Property-based fuzzing of every command line (issue 17): whatever the arguments, a CLI ends in
success or in exactly one ``error: ...`` line with exit status 2, never a traceback.

Each example is a small valid command (tiny data, tiny models) changed by one to three mutations:
a flag given a value of another kind (numbers past int64, inf, nan, non-ASCII digits, text), a
flag without its value, a flag repeated, a required flag left out, an unknown flag, and paths
that are missing, files, folders (empty or not), symlinks (to a folder, dangling), below a file,
or not creatable. Every flag of each parser is also tried once with a bad value (the explicit
examples). The CLIs run in-process (``main(argv)``, stderr captured at the file descriptor); a
run that gets past its checks is stopped after a few training batches, and the demo's and
run_table's subprocesses are not started (the CLIs are fuzzed directly).

    python -m pytest tests/test_fuzz_cli.py                                # the fixed profile
    python -m pytest tests/test_fuzz_cli.py --hypothesis-profile fuzz-long -s  # 20x the examples

The fixed profile is derandomized (the same examples on every run). ``-s`` prints, per CLI, the
examples run, how they ended and the distinct (flag, kind of value) inputs covered.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from glue_fixtures import tiny_bert, write_glue
from hypothesis import example, given, settings
from hypothesis import strategies as st

import annealing_kd.common.training.trainer
from annealing_kd.computer_vision_tasks import annealing_kd_train as cifar
from annealing_kd.computer_vision_tasks.cli import build_parser as cifar_parser
from annealing_kd.NLP_glue_tasks import annealing_kd_glue as glue
from annealing_kd.NLP_glue_tasks.cli import build_parser as glue_parser
from demo import run_demo
from reproduce import run_table

# examples generated per CLI, in hundredths of the profile's max_examples (conftest.py: "fuzz",
# the default, 100, derandomized; "fuzz-long" 2000, random)
EXAMPLES = {"cifar": 30, "glue": 20, "run_table": 50, "demo": 30}
STATS: dict[str, Counter] = {}
_numbers = itertools.count()
COVERED: dict[str, set] = {}


class Stop(BaseException):
    """Raised by the harness to end a run that got past its checks (not a CLI outcome)."""


# ---- values of each kind ---------------------------------------------------------------------
HUGE = [str(2**63), str(2**64), str(10**30), str(-(2**63) - 1), "9" * 40]
UNICODE_DIGITS = ["٣", "３", "²", "໓", "1_0", "0x10", " 2", "+1", "1e3", "1.0", "-0", "٣.٥"]
FLOATS = ["inf", "-inf", "nan", "1e309", "-1e309", "1e-320", "0", "-0.0", "1e300", "NaN"]
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
               max_size=6)
PATH_KINDS = ["missing", "file", "empty_dir", "full_dir", "link_to_dir", "dangling_link",
              "below_a_file", "proc", "unicode", "dash"]


def kinds_of(action) -> list[str]:
    """The kinds of bad (or odd) values a flag is tried with."""
    name = action.option_strings[0]
    if action.nargs == 0:
        return ["flag", "flag_with_value"]
    if action.choices:
        return ["choice", "text", "missing_value"]
    t = getattr(action.type, "__name__", None)
    if t in ("int", "whole_number"):
        return ["small_int", "huge_int", "unicode_digits", "float", "text", "missing_value"]
    if t == "float":
        return ["small_float", "special_float", "unicode_digits", "text", "missing_value"]
    if any(w in name for w in ("dir", "path", "file", "checkpoint", "out", "python", "cache",
                               "config_name", "tokenizer")):
        return ["path", "text", "missing_value"]
    return ["text", "missing_value"]


def value(draw, kind: str, action) -> list[str]:
    flag = draw(st.sampled_from(action.option_strings))
    if kind == "flag":
        return [flag]
    if kind == "flag_with_value":
        return [f"{flag}={draw(TEXT)}"]
    if kind == "missing_value":
        return [flag]  # at the end of the line, or followed by the next flag
    pick = {
        "choice": lambda: draw(st.sampled_from(list(action.choices))),
        "text": lambda: draw(TEXT),
        "small_int": lambda: str(draw(st.integers(-3, 3))),
        "huge_int": lambda: draw(st.sampled_from(HUGE)),
        "unicode_digits": lambda: draw(st.sampled_from(UNICODE_DIGITS)),
        "float": lambda: draw(st.sampled_from(["1.5", "2.0", "1e2"])),
        "small_float": lambda: repr(draw(st.floats(-2, 2))),
        "special_float": lambda: draw(st.sampled_from(FLOATS)),
        "path": lambda: "{" + draw(st.sampled_from(PATH_KINDS)) + "}",
    }[kind]
    return [flag, pick()]


@st.composite
def mutated(draw, cli: str, base: list[str], parser) -> tuple[list[str], list[tuple[str, str]]]:
    """``base`` changed by 1-3 mutations; returns argv and the (flag, kind) pairs it tried."""
    actions = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    argv, tried = list(base), []
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["set", "set", "set", "drop", "repeat", "unknown"]))
        if what == "drop":
            flags = [i for i, a in enumerate(argv) if a.startswith("--")]
            i = draw(st.sampled_from(flags))
            takes = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            tried.append((argv[i], "left_out"))
            del argv[i:i + 1 + takes]
        elif what == "repeat":
            flags = [i for i, a in enumerate(argv) if a.startswith("--")]
            i = draw(st.sampled_from(flags))
            takes = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            argv += argv[i:i + 1 + takes]
            tried.append((argv[i], "repeated"))
        elif what == "unknown":
            argv.append(draw(st.sampled_from(["--bogus", "-x", "--", "--help=1", "---"])))
            tried.append(("<unknown>", "unknown_flag"))
        else:
            action = draw(st.sampled_from(actions))
            kind = draw(st.sampled_from(kinds_of(action)))
            argv += value(draw, kind, action)
            tried.append((action.option_strings[0], kind))
    return argv, tried


def bad_value_of_each_flag(parser) -> list[tuple[list[str], list[tuple[str, str]]]]:
    """One explicit mutation per flag: its most hostile kind of value."""
    out = []
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        kinds = kinds_of(action)
        kind = next((k for k in ("huge_int", "special_float", "path", "flag_with_value", "text")
                     if k in kinds), kinds[0])
        flag = action.option_strings[0]
        val = {"huge_int": HUGE[1], "special_float": "nan", "path": "{below_a_file}",
               "flag_with_value": f"{flag}=x", "text": "٣"}[kind]
        argv = [val] if kind == "flag_with_value" else [flag, val]
        out.append((argv, [(flag, kind)]))
    return out


# ---- the workspace and the harness -------------------------------------------------------------
@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Read-only inputs shared by the examples: GLUE data, tiny BERTs, an image folder."""
    root = tmp_path_factory.mktemp("fuzz_assets")
    write_glue(root / "glue", "RTE", 16, 8, 4)
    tiny_bert(root / "teacher", num_labels=2, seed=1)
    tiny_bert(root / "student", num_labels=None, seed=2)
    from PIL import Image

    for split, n in (("train", 4), ("test", 2)):
        for c in ("a", "b"):
            (root / "images" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (60 * i, 100 if c == "a" else 0, 30)).save(
                    root / "images" / split / c / f"{i}.png")
    return root


def workspace(root: Path) -> dict[str, str]:
    """Fresh paths of each kind for one example."""
    root.mkdir(parents=True)
    (root / "a_file").write_text("not a folder\n")
    (root / "empty_dir").mkdir()
    (root / "full_dir").mkdir()
    (root / "full_dir" / "notes.txt").write_text("mine\n")
    (root / "link_to_dir").symlink_to(root / "full_dir")
    (root / "dangling_link").symlink_to(root / "nowhere")
    (root / "ünïcødé dir").mkdir()
    return {"missing": str(root / "missing"), "file": str(root / "a_file"),
            "empty_dir": str(root / "empty_dir"), "full_dir": str(root / "full_dir"),
            "link_to_dir": str(root / "link_to_dir"), "dangling_link": str(root / "dangling_link"),
            "below_a_file": str(root / "a_file" / "sub"), "proc": "/proc/annealing-kd-fuzz/x",
            "unicode": str(root / "ünïcødé dir"), "dash": "-"}


class _Budget:
    """annealing_kd.common.training.trainer's progress bar, stopping the run after ``limit`` batches in all."""

    def __init__(self, limit: int) -> None:
        self.real, self.limit, self.seen = annealing_kd.common.training.trainer.progress_bar, limit, 0

    def __call__(self, iterable, desc, enabled=True):
        self.bar = self.real(iterable, desc, enabled)
        return self

    def __iter__(self):
        for item in self.bar:
            self.seen += 1
            if self.seen > self.limit:
                raise Stop("batch budget")
            yield item

    def set_postfix(self, *args, **kwargs):
        self.bar.set_postfix(*args, **kwargs)


def _refuse_subprocess(*args, **kwargs):
    raise Stop("a subprocess would start")


def _alarm(signum, frame):
    raise Stop("time limit")


def fill(argv: list[str], names: dict[str, str]) -> list[str]:
    out = []
    for a in argv:
        for key, path in names.items():
            a = a.replace("{" + key + "}", path)
        out.append(a)
    return out


def run_example(cli: str, main, argv: list[str], tried, tmp: Path, capfd, monkeypatch,
                assets: Path) -> None:
    """Run ``main(argv)`` in a fresh folder; assert the property; count the outcome."""
    argv = fill(argv, {**workspace(tmp), "assets": str(assets)})
    cwd = os.getcwd()
    os.chdir(tmp)
    capfd.readouterr()
    outcome = "ran"
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(180)
    try:
        with monkeypatch.context() as m:
            m.setenv("TQDM_DISABLE", "1")
            m.setattr(annealing_kd.common.training.trainer, "progress_bar", _Budget(6))
            m.setattr(run_demo, "run_cli_process", _refuse_subprocess)
            m.setattr(run_table, "subprocess", SimpleNamespace(
                Popen=_refuse_subprocess, run=_refuse_subprocess, STDOUT=subprocess.STDOUT))
            try:
                code = main(argv)
            except SystemExit as exc:  # --help
                code = exc.code if isinstance(exc.code, int) else 0
            except Stop as exc:
                code, outcome = 0, f"stopped ({exc})"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        os.chdir(cwd)
        torch.use_deterministic_algorithms(False)
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    err = capfd.readouterr().err
    assert outcome != "stopped (time limit)", f"{cli} {argv}: still running after 180 s"
    assert "Traceback" not in err, f"{cli} {argv}:\n{err}"
    lines = [x for x in err.splitlines() if x.strip()]
    if code == 2:
        errors = [x for x in lines if x.startswith("error: ")]
        others = [x for x in lines if not x.startswith(("error: ", "warning: "))]
        assert len(errors) == 1 and not others, f"{cli} {argv}:\n{err}"
        outcome = "error"
    else:
        assert code == 0, f"{cli} {argv}: exit {code}\n{err}"
    STATS.setdefault(cli, Counter())[outcome] += 1
    COVERED.setdefault(cli, set()).update(tried)
    shutil.rmtree(tmp, ignore_errors=True)


CIFAR_BASE = ["--dataset", "fake", "--train-subset", "32", "--val-size", "16", "--batch-size",
              "16", "--num-workers", "0", "--device", "cpu", "--teacher", "resnet8", "--student",
              "plane2", "--method", "scratch", "--teacher_epochs", "1", "--student_epochs_p1", "1",
              "--student_epochs_p2", "1", "--max_temperature", "1", "--student-epochs", "1",
              "--output-dir", "out"]
DEMO_BASE = ["--skip-images", "--skip-text", "--out", "demo_out", "--images", "8",
             "--teacher-images", "8", "--sentences", "8", "--teacher-sentences", "8",
             "--dev-sentences", "8", "--image-epochs", "2", "--text-epochs", "2"]
TABLE_BASE = ["--table", "fmnist-gap", "--seeds", "1", "--scale", "0.05", "--out", "table_out",
              "--dry-run"]


GLUE_BASE = ["--task_name", "rte", "--data_dir", "{assets}/glue/RTE", "--output_dir", "out",
             "--student_model_name_or_path", "{assets}/student", "--teacher_model_name_or_path",
             "{assets}/teacher", "--no_cuda", "--do_train", "--num_train_epochs_phase_1", "1",
             "--num_train_epochs_phase_2", "1", "--max_temperature", "1", "--num_train_epochs",
             "1", "--logits_cache_dir", "cache", "--per_gpu_train_batch_size", "8", "--method",
             "annealing"]


def _fuzz(cli: str, main, parser, base: list[str]):
    """A hypothesis test of ``cli``: explicit bad values of every flag, then the generated ones."""

    @settings(max_examples=EXAMPLES[cli] * settings.default.max_examples // 100)
    @given(case=mutated(cli, base, parser))
    def test(case, assets, tmp_path, capfd, monkeypatch):
        argv, tried = case
        run_example(cli, main, argv, tried, tmp_path / f"ex{next(_numbers)}", capfd, monkeypatch,
                    assets)

    for extra, tried in bad_value_of_each_flag(parser):
        test = example(case=([*base, *extra], tried))(test)
    return test


test_fuzz_cifar = _fuzz("cifar", cifar.main, cifar_parser(), CIFAR_BASE)
test_fuzz_glue = _fuzz("glue", glue.main, glue_parser(), GLUE_BASE)
test_fuzz_run_table = _fuzz("run_table", run_table.main, run_table.build_parser(), TABLE_BASE)
test_fuzz_demo = _fuzz("demo", run_demo.main, run_demo.build_parser(), DEMO_BASE)


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    for cli in sorted(STATS):
        print(f"\nfuzz {cli}: {sum(STATS[cli].values())} examples "
              f"({', '.join(f'{k} {v}' for k, v in sorted(STATS[cli].items()))}); "
              f"{len(COVERED[cli])} distinct (flag, kind) inputs, "
              f"{len({f for f, _ in COVERED[cli]})} flags")
