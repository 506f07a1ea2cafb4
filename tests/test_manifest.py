"""The mechanisms of issue 17 on their own: the manifest (common/run_folder/manifest.py), the staged write
(common/run_folder/checkpoint.FileTransaction), the output folder of a tool (common/run_folder/run_dir.py), the lock
(common/run_folder/lock.py), the input fingerprints (common/run_folder/fingerprint.py) and the argument types."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from annealing_kd.common.cli.args import integer, real
from annealing_kd.common.errors import UsageError
from annealing_kd.common.run_folder import (
    MANIFEST,
    Manifest,
    NotOurs,
    OutputFolder,
    atomic_write,
    changed,
    check_same_inputs,
    fingerprint,
    is_temporary,
)
from annealing_kd.common.run_folder import lock as run_lock


def write(path: Path, text: str, m: Manifest | None) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text), m)


def test_a_file_is_recorded_before_it_appears_with_size_time_and_hash(tmp_path, monkeypatch):
    import annealing_kd.common.run_folder.checkpoint as ckpt

    m = Manifest.create(tmp_path, "test")
    seen, real_replace = {}, ckpt.replace

    def replace(src, dst):  # what the manifest on disk says when the file is renamed into place
        if Path(dst).name == "b.txt":
            seen["recorded"] = "a/b.txt" in Manifest.read(tmp_path).files
        real_replace(src, dst)

    monkeypatch.setattr(ckpt, "replace", replace)
    write(tmp_path / "a" / "b.txt", "v1", m)
    assert seen == {"recorded": True}
    entry = Manifest.read(tmp_path).files["a/b.txt"]
    assert entry["size"] == 2 and len(entry["sha256"]) == 64
    assert Manifest.read(tmp_path).unchanged(tmp_path / "a" / "b.txt")


def test_the_version_before_is_still_recognised(tmp_path):
    """A stop between recording v2 and its rename leaves v1 under the name: still ours."""
    m = Manifest.create(tmp_path, "test")
    write(tmp_path / "f", "v1", m)
    v1 = (tmp_path / "f").read_bytes()
    write(tmp_path / "f", "v2-longer", m)
    (tmp_path / "f").write_bytes(v1)  # as if the rename of v2 never happened
    os.utime(tmp_path / "f", ns=(1, 1))  # another mtime: the hash decides
    assert Manifest.read(tmp_path).unchanged(tmp_path / "f")
    (tmp_path / "f").write_text("v3")  # a user's edit
    assert not Manifest.read(tmp_path).unchanged(tmp_path / "f")


def test_removal_is_exact_and_refuses_anything_else_before_deleting(tmp_path):
    root = tmp_path / "out"
    m = Manifest.create(root, "demo")
    write(root / "tables.md", "t", m)
    write(root / "images" / "a.log", "log", m)
    child = root / "images" / "teacher"
    m.add_child(child)
    cm = Manifest.create(child, "annealing_kd_train", {"x": 1})
    write(child / "results.json", "{}", cm)
    (root / ".x.abc.akd.tmp").write_text("left by a stop")  # a temporary of ours
    for name, why in [("images/notes.txt", "was not written by annealing-kd"),
                      ("images/teacher/notes.txt", "was not written by annealing-kd"),
                      (".draft.tmp", "was not written by annealing-kd")]:
        (root / name).write_text("mine")
        with pytest.raises(NotOurs, match=why):
            Manifest.read(root).remove()
        assert (root / "tables.md").is_file() and (child / "results.json").is_file()
        (root / name).unlink()
    other = root / "images" / "other-run"
    Manifest.create(other, "annealing_kd_train", {})
    with pytest.raises(NotOurs, match="holds another run"):
        Manifest.read(root).check_removable()
    (other / MANIFEST).unlink()
    other.rmdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(NotOurs, match="link"):
        Manifest.read(root).check_removable()
    (root / "link").unlink()
    (root / "user-empty").mkdir()
    Manifest.read(root).remove()
    assert sorted(p.name for p in root.iterdir()) == ["user-empty"]


def test_concurrent_writers_of_a_shared_folder_merge_their_records(tmp_path):
    a = Manifest.open(tmp_path, "cache")
    b = Manifest.open(tmp_path, "cache")
    write(tmp_path / "x", "1", a)
    write(tmp_path / "y", "2", b)  # b never saw x
    assert set(Manifest.read(tmp_path).files) == {"x", "y"}


def test_a_growing_log_stays_ours(tmp_path):
    out = OutputFolder(tmp_path / "o", "tool", lock=False)
    log = out.log("logs/run.log")
    with open(log, "a") as f:
        f.write("more output\n")  # a process appends (and may be killed before done())
    assert Manifest.read(out.path).unchanged(log)
    out.done(log)
    assert Manifest.read(out.path).files["logs/run.log"].get("growing") is None


def test_output_folder_never_writes_over_a_users_file_and_replaces_only_its_program(tmp_path):
    root = tmp_path / "o"
    root.mkdir()
    (root / "report.md").write_text("mine")
    out = OutputFolder(root, "tool", lock=False)
    with pytest.raises(UsageError, match="report.md exists and was not written by tool"):
        out.write_text("report.md", "ours")
    assert (root / "report.md").read_text() == "mine"
    out.write_text("other.md", "ours")
    out.folder("data", lambda d: (d / "a.tsv").write_text("a"))
    out.folder("data", lambda d: (d / "b.tsv").write_text("b"))  # a's file of the last fill goes
    assert sorted(p.name for p in (root / "data").iterdir()) == ["b.tsv"]
    with pytest.raises(UsageError, match="no earlier output of other"):
        OutputFolder(root, "other", replace=True, lock=False)
    (root / "report.md").unlink()
    OutputFolder(root, "tool", replace=True, lock=False)
    assert not (root / "other.md").exists() and not (root / "data").exists()


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from annealing_kd.common.run_folder import lock as run_lock
        run_lock.acquire({str(tmp_path)!r})
        print("locked", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(UsageError, match=rf"in use by another run \(pid {proc.pid} on host"):
            run_lock.acquire(tmp_path)
        assert run_lock.holder(tmp_path).startswith(f"pid {proc.pid}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert run_lock.holder(tmp_path) is None
    run_lock.acquire(tmp_path)
    run_lock.acquire(tmp_path)  # again in the same process: the same lock
    run_lock.release(tmp_path)


def test_fingerprints_match_copies_and_catch_changes(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("hello")
    fp = fingerprint(tmp_path / "d")
    os.utime(tmp_path / "d" / "a.txt", ns=(5, 5))  # touched, same content
    assert changed(fp, fingerprint(tmp_path / "d")) is None
    (tmp_path / "d" / "a.txt").write_text("hellO")
    assert changed(fp, fingerprint(tmp_path / "d")) == "its contents changed"
    with pytest.raises(UsageError, match="data_dir changed since this run started"):
        check_same_inputs({"data_dir": fp}, {"data_dir": fingerprint(tmp_path / "d")})
    with pytest.raises(UsageError, match="now it is not given"):
        check_same_inputs({"data_dir": fp}, {})
    big = fingerprint(tmp_path / "d", hash_all=False)
    assert big["content"] is not None  # small: hashed


@pytest.mark.parametrize("text", ["٣", "３", "²", "1.5", "", "0x10", "1_0", str(2**63)])
def test_integer_flags_take_ascii_int64_only(text):
    with pytest.raises((ValueError, argparse.ArgumentTypeError)):
        integer(text)


@pytest.mark.parametrize("text", ["inf", "nan", "1e309", "-inf", "١.٥", "", "1,5"])
def test_real_flags_take_finite_ascii_numbers_only(text):
    with pytest.raises((ValueError, argparse.ArgumentTypeError)):
        real(text)


def test_number_types_accept_ordinary_values():
    assert integer(" -3 ") == -3 and integer(str(2**63 - 1)) == 2**63 - 1
    assert real("1e-3") == 0.001 and real(".5") == 0.5 and real("-2.") == -2.0


def test_temporaries_are_named_apart_from_a_users_files():
    assert is_temporary(".results.json.k3j2h1a9.akd.tmp")
    assert not is_temporary(".draft.tmp") and not is_temporary("notes.akd.tmp")


def test_a_teacher_logit_cache_among_the_outputs_is_replaced_with_them(tmp_path):
    """A tool that gives its runs a cache folder inside its output (the demo's text part) can be
    run again there: the files the cache wrote (its header says so) and their empty lock files
    go with the rest; any other file in that folder, a look-alike name included, refuses."""
    import torch

    from annealing_kd.common.logit_cache.store import LogitCache

    out = OutputFolder(tmp_path / "demo", "demo", lock=False)
    cache_dir = out.child("text/logit-cache")
    cache = LogitCache(cache_dir, say=lambda _: None)
    for name in ("a.logits", "b.logits"):
        cache.get(cache_dir / name, name, "fp32", lambda: torch.ones(3, 2), cache.stream(name, name))
    assert sorted(p.name for p in cache_dir.iterdir()) == [
        ".a.logits.lock", ".b.logits.lock", "a.logits", "b.logits"]
    for name, text in [("notes.logits", "mine"), ("c.logits.txt", "annealing-kd teacher logits"),
                       (".d.logits.lock", "not empty")]:
        (cache_dir / name).write_text(text)
        with pytest.raises(UsageError, match=f"{name} was not written by annealing-kd"):
            OutputFolder(out.path, "demo", replace=True, lock=False)
        assert len(list(cache_dir.glob("*.logits"))) == 2 + (name == "notes.logits")
        (cache_dir / name).unlink()
    OutputFolder(out.path, "demo", replace=True, lock=False)
    assert not cache_dir.exists()


# ---- issue 33: bookkeeping never follows links, removal all or nothing, a lock that stays --------
def _finished_run(root: Path) -> Manifest:
    m = Manifest.create(root, "annealing_kd_train", {"x": 1})
    write(root / "results.json", "{}", m)
    write(root / "student" / "best.safetensors", "w", m)
    return m


def test_a_child_that_is_a_link_never_makes_a_removal_follow_it(tmp_path):
    other = tmp_path / "other"  # another finished run
    _finished_run(other)
    root = tmp_path / "out"
    m = Manifest.create(root, "demo")
    write(root / "tables.md", "t", m)
    (root / "images").mkdir()
    (root / "images" / "teacher").symlink_to(other)
    m.add_child(root / "images" / "teacher")
    with pytest.raises(NotOurs, match="teacher is a link"):
        Manifest.read(root).remove()
    assert (other / "results.json").is_file() and (other / "student" / "best.safetensors").is_file()
    assert (root / "tables.md").is_file()


def test_a_lock_file_that_is_a_link_is_never_written_through(tmp_path):
    mine = tmp_path / "thesis.tex"
    mine.write_text("my thesis\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / run_lock.LOCK).symlink_to(mine)
    with pytest.raises(UsageError, match=rf"{run_lock.LOCK} is a link"):
        run_lock.acquire(out)
    assert mine.read_text() == "my thesis\n" and not run_lock.holds(out)
    assert run_lock.holder(out) is None


def test_a_link_anywhere_in_a_tree_refuses_its_removal(tmp_path):
    from annealing_kd.common.run_folder.checkpoint import TMP_SUFFIX, remove_entry

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("1,2\n")
    root = tmp_path / "out"
    m = _finished_run(root)
    staging = root / "student" / f".best.abc{TMP_SUFFIX}"  # a staging folder of ours
    (staging / "deep").mkdir(parents=True)
    (staging / "deep" / "link").symlink_to(mine)
    (root / "results.link").symlink_to(root / "results.json")  # a link to a file of ours
    for link in (root / "results.link", staging / "deep" / "link"):
        with pytest.raises(NotOurs, match="is a link"):
            m.remove()
        assert (root / "results.json").is_file() and (mine / "data.csv").is_file()
        if link.name == "results.link":
            link.unlink()
    with pytest.raises(OSError):
        remove_entry(staging)  # no-follow removal refuses a tree with a link in it
    from annealing_kd.common.run_folder.checkpoint import remove_temporaries

    with pytest.raises(UsageError, match="a link is inside it"):
        remove_temporaries(root)  # what --resume tidies: refused, one line
    assert (mine / "data.csv").is_file() and (staging / "deep" / "link").is_symlink()


def test_an_epoch_folder_that_is_a_link_is_never_emptied(tmp_path):
    import torch

    from annealing_kd.common.run_folder import commit_epoch, load_committed

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "last.safetensors").write_text("my weights")
    pdir = tmp_path / "run" / "student"
    commit_epoch(pdir, 2, {"last.safetensors": {"w": torch.zeros(2)}}, {"epoch": 2})
    (pdir / "epoch-0001").symlink_to(mine)
    with pytest.raises(UsageError, match="epoch-0001 is a link"):
        load_committed(pdir)
    assert (mine / "last.safetensors").read_text() == "my weights"


def _unremovable(folder: Path) -> None:
    """Make ``folder`` refuse deletions of its entries (immutable as root, read-only otherwise)."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
            pytest.skip("chattr +i is not supported here")
    else:
        folder.chmod(0o555)


def _removable(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o755)


def test_a_removal_that_would_fail_deletes_nothing(tmp_path):
    root = tmp_path / "out"
    m = _finished_run(root)
    child = root / "images" / "teacher"
    m.add_child(child)
    cm = _finished_run(child)
    write(child / "a" / "b" / "c" / "deep.txt", "d", cm)
    before = sorted(p for p in root.rglob("*"))
    _unremovable(child / "a" / "b" / "c")
    try:
        with pytest.raises(NotOurs, match="c cannot be emptied"):
            Manifest.read(root).remove()
    finally:
        _removable(child / "a" / "b" / "c")
    assert sorted(p for p in root.rglob("*")) == before
    Manifest.read(root).remove()
    assert not child.exists()


def test_a_removal_with_a_deep_child_in_use_deletes_nothing(tmp_path):
    root = tmp_path / "out"
    m = _finished_run(root)
    child = root / "images" / "teacher"
    m.add_child(child)
    grandchild = child / "phase" / "run"
    _finished_run(child).add_child(grandchild)
    _finished_run(grandchild)
    before = sorted(p for p in root.rglob("*"))
    proc = _hold_in_another_process(grandchild)
    try:
        with pytest.raises(NotOurs, match="in use by a run"):
            Manifest.read(root).remove()
    finally:
        proc.kill()
        proc.wait()
    assert sorted(p for p in root.rglob("*") if p.name != run_lock.LOCK) == \
        [p for p in before if p.name != run_lock.LOCK]


def _hold_in_another_process(folder: Path) -> subprocess.Popen:
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from annealing_kd.common.run_folder import lock as run_lock
        run_lock.acquire({str(folder)!r})
        print("locked", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_lock_file_deleted_or_replaced_under_its_holder_still_refuses(tmp_path, how):
    proc = _hold_in_another_process(tmp_path)
    try:
        (tmp_path / run_lock.LOCK).unlink()
        if how == "replaced":
            (tmp_path / run_lock.LOCK).write_text("")
        with pytest.raises(UsageError, match="in use by another run"):
            run_lock.acquire(tmp_path)
        assert not run_lock.holds(tmp_path) and run_lock.holder(tmp_path)
    finally:
        proc.kill()
        proc.wait()
    run_lock.acquire(tmp_path)  # free once the holder is gone
    run_lock.release(tmp_path)


def test_a_state_that_fills_the_disk_says_so(tmp_path, monkeypatch):
    import shutil

    import torch

    from annealing_kd.common.run_folder import WriteFailed, save_state

    def full(state, path):
        Path(path).write_bytes(b"x" * 64)
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=0))
    with pytest.raises(WriteFailed, match=r"could not write .*state.pt \(No space left on "
                                          r"device\); free space or choose"):
        save_state({"epoch": 1}, tmp_path / "state.pt")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=10 << 30))
    with pytest.raises(WriteFailed) as info:  # another failure: its own words, not "no space"
        save_state({"epoch": 1}, tmp_path / "state.pt")
    assert "No space" not in str(info.value) and "unexpected pos" in str(info.value)
    assert not list(tmp_path.iterdir())


def test_a_file_system_without_folder_locks_keeps_the_lock_file(tmp_path, monkeypatch):
    """NFS cannot flock a folder (EBADF): the run still locks its lock file, and a second
    process is refused naming the holder; the manifest's short update goes on unlocked."""
    import errno
    import fcntl
    import stat
    import subprocess
    import sys

    from annealing_kd.common.run_folder import lock as run_lock
    from annealing_kd.common.run_folder.manifest import Manifest

    real = fcntl.flock

    def nfs_flock(fd, op):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", nfs_flock)
    folder = tmp_path / "run"
    folder.mkdir()
    Manifest.open(folder, "test").save()  # the unlocked short update
    run_lock.acquire(folder)
    try:
        code = ("import sys; from annealing_kd.common.run_folder import lock\n"
                "from annealing_kd.common.errors import UsageError\n"
                "try:\n    lock.acquire(sys.argv[1])\nexcept UsageError as e:\n    print(e); sys.exit(2)")
        proc = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                              text=True)
        assert proc.returncode == 2 and f"pid {os.getpid()}" in proc.stdout, proc.stderr
    finally:
        run_lock.release(folder)
