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
