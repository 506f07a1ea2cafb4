"""Property-based fuzzing of every command line (issue 17): whatever the arguments, a CLI ends in
success or in exactly one ``error: ...`` line with exit status 2, never a traceback.

Each example is a small valid command (tiny data, tiny models) changed by one to three mutations:
a flag given a value of another kind (numbers past int64, inf, nan, non-ASCII digits, text), a
flag without its value, a flag repeated, a required flag left out, an unknown flag, and paths
that are missing, files, folders (empty or not), symlinks (to a folder, dangling), below a file,
or not creatable. Every flag of each parser is also tried once with a bad value (the explicit
examples). The CLIs run in-process (``main(argv)``, stderr captured at the file descriptor); a
run that gets past its checks is stopped after a few training batches, and the demo's and
run_table's subprocesses are not started (the CLIs are fuzzed directly). Config files (nested,
YAML aliases, repeated keys, wrong types) and file-system states (links in a run folder and in a
dataset, a folder that cannot be emptied, a lock file that is a link or is removed or replaced
while another process holds it) are generated too: there the promises are checked as well
(nothing outside the run folder changes, a refusal deletes nothing).

    python -m pytest tests/test_fuzz_cli.py                                # the fixed profile
    python -m pytest tests/test_fuzz_cli.py --hypothesis-profile fuzz-long -s  # 20x the examples

The fixed profile is derandomized (the same examples on every run). ``-s`` prints, per CLI, the
examples run, how they ended and the distinct (flag, kind of value) inputs covered.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
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
                assets: Path, prepare=None, check=None) -> None:
    """Run ``main(argv)`` in a fresh folder (``prepare(folder)`` before); assert the property
    (and ``check(exit status)``); count the outcome."""
    argv = fill(argv, {**workspace(tmp), "assets": str(assets)})
    if prepare is not None:
        prepare(tmp)
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
    if check is not None:
        check(code)
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


# ---- config files and file-system states (issue 33) -------------------------------------------
SETTINGS = ["seed", "learning-rate", "student_epochs_p1", "method", "deterministic", "momentum",
            "lr_milestones", "output-dir", "dataset"]
CONFIG_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6)


@st.composite
def config_file(draw) -> tuple[str, str]:
    """A config file (name, text): JSON or YAML, nested, with aliases, repeated keys, values of
    the wrong type, unknown keys."""
    items = [(draw(st.sampled_from(SETTINGS) | TEXT), draw(CONFIG_VALUE))
             for _ in range(draw(st.integers(0, 4)))]
    if draw(st.booleans()):  # a key given twice
        items += items[:1] or [("seed", 1)]
    if draw(st.booleans()):
        return "args.json", "{" + ", ".join(
            f"{json.dumps(k)}: {json.dumps(v)}" for k, v in items) + "}"
    lines = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in items]
    if draw(st.booleans()):  # YAML aliases, at the top or nested
        lines += ["anchor: &a {seed: 1, x: [1, 2]}", f"{draw(st.sampled_from(SETTINGS))}: *a"]
    return "args.yaml", "\n".join(lines) + "\n"


@settings(max_examples=25 * settings.default.max_examples // 100)
@given(case=config_file())
@example(case=("args.yaml", "seed: 1\nseed: 2\n"))
@example(case=("args.yaml", "a: &a {seed: 1}\nseed: *a\n"))
@example(case=("args.json", '{"seed": {"nested": [1, {"x": 2}]}}'))
def test_fuzz_config_files(case, assets, tmp_path, capfd, monkeypatch):
    """Any config file: success or one ``error:`` line naming it, the file itself untouched."""
    name, text = case
    tmp = tmp_path / f"ex{next(_numbers)}"

    def prepare(folder: Path) -> None:
        (folder / name).write_text(text)

    def check(code: int) -> None:
        assert (tmp / name).read_text() == text

    run_example("config", cifar.main, [str(tmp / name), *CIFAR_BASE], [("config", name)], tmp,
                capfd, monkeypatch, assets, prepare, check)


STATES = ["link_file_in_run", "link_folder_in_run", "child_link_to_other_run", "epoch_link",
          "unremovable_subfolder", "lock_is_a_link", "lock_removed_under_holder",
          "lock_replaced_under_holder", "link_in_dataset"]


def _fake_run(root: Path, finished: bool = True) -> None:
    """A run folder of ours (its manifest records its files), finished or not."""
    from annealing_kd.common.run_folder import Manifest, atomic_write

    m = Manifest.create(root, "annealing_kd_train", {"method": "scratch"})
    for rel, text in (("student/deep/notes.json", "{}"),
                      ("results.json", json.dumps({"final": {"acc": 1} if finished else None}))):
        atomic_write(root / rel, lambda tmp, t=text: Path(tmp).write_text(t), m)


def _tree(root: Path) -> dict[str, str]:
    """Every file below ``root`` (links not followed) and what it holds."""
    return {str(p.relative_to(root)): os.readlink(p) if p.is_symlink() else p.read_bytes().hex()
            for p in sorted(root.rglob("*")) if p.is_symlink() or p.is_file()}


@settings(max_examples=20 * settings.default.max_examples // 100)
@given(states=st.lists(st.sampled_from(STATES), min_size=1, max_size=2, unique=True),
       flag=st.sampled_from([[], ["--resume"], ["--overwrite-output-dir"]]),
       finished=st.booleans())
@example(states=["unremovable_subfolder"], flag=["--overwrite-output-dir"], finished=True)
@example(states=["child_link_to_other_run"], flag=["--overwrite-output-dir"], finished=True)
@example(states=["lock_removed_under_holder"], flag=["--resume"], finished=False)
@example(states=["lock_is_a_link"], flag=[], finished=False)
def test_fuzz_file_system_states(states, flag, finished, assets, tmp_path, capfd, monkeypatch):
    """Links in the run folder and the dataset, a folder that cannot be emptied, a lock file that
    is a link or is removed or replaced while another process holds it: success or one
    ``error:`` line; nothing outside the run folder changes; a refusal deletes nothing."""
    from annealing_kd.common.run_folder import LOCK, Manifest

    tmp = tmp_path / f"ex{next(_numbers)}"
    out, theirs, other, data = tmp / "out", tmp / "theirs", tmp / "other", tmp / "data"
    holders, frozen, before = [], [], {}

    def prepare(folder: Path) -> None:
        (theirs / "sub").mkdir(parents=True)
        (theirs / "thesis.tex").write_text("mine\n")
        (theirs / "sub" / "last.safetensors").write_text("my weights")
        _fake_run(other)
        _fake_run(out, finished)
        shutil.copytree(assets / "images", data)
        for state in states:
            if state == "link_file_in_run":
                (out / "student" / "thesis.tex").symlink_to(theirs / "thesis.tex")
            elif state == "link_folder_in_run":
                (out / "student" / "deep" / "mine").symlink_to(theirs)
            elif state == "child_link_to_other_run":
                (out / "runs").mkdir()
                (out / "runs" / "a").symlink_to(other)
                Manifest.read(out).add_child(out / "runs" / "a")
            elif state == "epoch_link":
                (out / "student" / "epoch-0001").symlink_to(theirs / "sub")
            elif state == "unremovable_subfolder":
                deep = out / "student" / "deep"
                if os.geteuid() == 0 and not subprocess.run(
                        ["chattr", "+i", str(deep)], capture_output=True).returncode:
                    frozen.append(deep)
                elif os.geteuid() != 0:
                    deep.chmod(0o555)
            elif state == "lock_is_a_link":
                (out / LOCK).unlink(missing_ok=True)
                (out / LOCK).symlink_to(theirs / "thesis.tex")
            elif state.startswith("lock_") and "lock_is_a_link" not in states:
                holders.append(subprocess.Popen(
                    [sys.executable, "-c", HOLD.format(root=ROOT, folder=str(out))],
                    stdout=subprocess.PIPE, text=True))
                assert holders[-1].stdout.readline().strip() == "locked"
                (out / LOCK).unlink()
                if state == "lock_replaced_under_holder":
                    (out / LOCK).write_text("")
            elif state == "link_in_dataset":
                (data / "train" / "a" / "outside.png").symlink_to(theirs / "thesis.tex")
        before.update(out=_tree(out), theirs=_tree(theirs), other=_tree(other), data=_tree(data))

    def check(code: int) -> None:
        try:
            for p in frozen:
                subprocess.run(["chattr", "-i", str(p)], check=True)
            if os.geteuid() != 0 and (out / "student" / "deep").is_dir():
                (out / "student" / "deep").chmod(0o755)
            assert code == 2 or not holders, "a run started on a folder another process holds"
            for name, root in (("theirs", theirs), ("other", other), ("data", data)):
                assert _tree(root) == before[name], f"{name} changed: {states} {flag}"
            if code == 2:  # a refusal deletes nothing (the lock file names its last holder)
                now = {k: v for k, v in _tree(out).items() if k != LOCK}
                assert {k: v for k, v in before["out"].items() if k != LOCK}.items() <= \
                    now.items(), f"a refusal deleted files: {states} {flag}"
        finally:
            for proc in holders:
                proc.kill()
                proc.wait()

    argv = ["--dataset", "imagefolder", "--dataset-dir", str(data), "--val-size", "2",
            *CIFAR_BASE[6:-2], "--output-dir", str(out), *flag]
    run_example("states", cifar.main, argv, [(s, " ".join(flag)) for s in states], tmp, capfd,
                monkeypatch, assets, prepare, check)


ROOT = str(Path(__file__).resolve().parents[1])
HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from annealing_kd.common.run_folder import lock as run_lock
run_lock.acquire({folder!r})
print("locked", flush=True)
time.sleep(600)
"""
