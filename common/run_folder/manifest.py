"""Ownership as recorded facts: ``<folder>/.annealing-kd-manifest.json`` lists every file our
tools wrote there::

    {"format": "annealing-kd-manifest/1", "run_id": "...", "program": "annealing_kd_train",
     "created": "...", "config": {...},                  # config: training runs only
     "files": {"student/best.safetensors": {"size": n, "mtime_ns": t, "sha256": "..."}, ...},
     "children": ["images/teacher", ...]}                # folders with their own manifest

A file is recorded (with its previous version's facts) before it appears under its name; the
manifest is written atomically under a short folder lock, merged with other processes' records.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import lock as run_lock
from .checkpoint import atomic_write, is_temporary, remove_entry
from .fingerprint import file_sha256

MANIFEST = ".annealing-kd-manifest.json"
FORMAT = "annealing-kd-manifest/1"
OWN_FILES = {MANIFEST, run_lock.LOCK}  # the folder's bookkeeping, not part of its content
# The teacher-logit cache (common/logit_cache) keeps no manifest: each file it writes carries
# this header (HEADER bytes, MAGIC within), and its lock files are empty.
HEADER = 4096
MAGIC = "annealing-kd teacher logits"
SUFFIX = ".logits"


class NotOurs(UsageError):
    """A file in a folder to be replaced that no run of ours wrote (or that changed since)."""

    def __init__(self, path: Path, why: str) -> None:
        self.path, self.why = path, why
        super().__init__(f"{path} {why}")


@contextlib.contextmanager
def _folder_lock(root: Path) -> Iterator[None]:
    """A short exclusive lock on the folder itself, around a read-modify-write of the manifest
    (none needed in a folder this process holds; one another run holds is refused)."""
    if run_lock.holds(root):
        yield
        return
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if who := run_lock.holder(root):
                raise UsageError(f"{root} is in use by another run ({who}); wait for it to "
                                 "finish, or choose another folder") from None
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # no folder locks on this file system (NFS): unlocked
            if exc.errno not in run_lock.NO_FOLDER_LOCK:
                raise
        yield
    finally:
        os.close(fd)


def _read(root: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((root / MANIFEST).read_text())
        if isinstance(data, dict) and data.get("format") == FORMAT and data.get("run_id") \
                and isinstance(data.get("files"), dict):
            return data
    return None


def _set(files: dict[str, Any], rel: str, facts: dict[str, Any]) -> None:
    """Record ``rel``'s facts, keeping the version before (a stop before the rename leaves it)."""
    old = files.get(rel)
    if old is not None and old.get("sha256") != facts.get("sha256") and "previous" not in facts:
        facts = {**facts, "previous": {k: old[k] for k in ("size", "mtime_ns", "sha256")}}
    files[rel] = facts


class Manifest:
    """The files our tools wrote in ``root`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike, data: dict[str, Any]) -> None:
        self.root, self.data = Path(root), data
        self._changed: set[str] = set()  # files and children changed since the last save

    @classmethod
    def read(cls, root: str | os.PathLike) -> Manifest | None:
        """The manifest of ``root``, or None (missing, unreadable, or not ours)."""
        data = _read(Path(root))
        return cls(root, data) if data is not None else None

    @classmethod
    def create(cls, root: str | os.PathLike, program: str,
               config: dict[str, Any] | None = None) -> Manifest:
        """A new manifest (a new run id, no files), written now."""
        m = cls(root, {"format": FORMAT, "run_id": uuid.uuid4().hex, "program": program,
                       "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": {},
                       "children": [], **({} if config is None else {"config": config})})
        m._write()
        return m

    @classmethod
    def open(cls, root: str | os.PathLike, program: str) -> Manifest:
        """The manifest of ``root``, created when there is none (a folder that tools share)."""
        Path(root).mkdir(parents=True, exist_ok=True)
        with _folder_lock(Path(root)):
            return cls.read(root) or cls.create(root, program)

    @property
    def config(self) -> dict[str, Any] | None:
        return self.data.get("config")

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.data["files"]

    def rel(self, path: str | os.PathLike) -> str:
        return os.path.relpath(path, self.root).replace(os.sep, "/")

    def record(self, final: str | os.PathLike, actual: str | os.PathLike | None = None,
               growing: bool = False) -> None:
        """Record ``final`` as the file ``actual`` (default ``final``) holds; ``growing``: a log
        being appended to."""
        rel, st = self.rel(final), Path(actual or final).stat()
        if rel.startswith(".."):
            raise ValueError(f"{final} is not inside {self.root}")
        facts = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                 "sha256": file_sha256(actual or final)}
        _set(self.files, rel, {**facts, "growing": True} if growing else facts)
        self._changed.add(rel)

    def forget(self, path: str | os.PathLike) -> None:
        """Drop a removed file (saved with the next :meth:`save`)."""
        if self.files.pop(self.rel(path), None) is not None:
            self._changed.add(self.rel(path))

    def add_child(self, folder: str | os.PathLike, save: bool = True) -> None:
        """Record a folder that gets its own manifest (a run this tool starts)."""
        rel = self.rel(folder)
        if rel.startswith("..") or rel == ".":
            raise ValueError(f"{folder} is not inside {self.root}")
        if rel not in self.data.setdefault("children", []):
            self.data["children"].append(rel)
            self._changed.add(rel)  # not a file's name: saving it changes no file record
        if save:
            self.save()

    def save(self) -> None:
        """Write the manifest atomically, merged with the changes other processes saved."""
        if not self._changed and (self.root / MANIFEST).is_file():
            return
        with _folder_lock(self.root):
            disk = _read(self.root)
            if disk is not None and disk["run_id"] == self.data["run_id"]:
                for rel in self._changed:
                    if rel in self.files:
                        _set(disk["files"], rel, self.files[rel])
                    else:
                        disk["files"].pop(rel, None)
                children = disk.setdefault("children", [])
                children += [c for c in self.data.get("children", []) if c not in children]
                self.data = disk
            self._write()
        self._changed = set()

    def _write(self) -> None:
        text = json.dumps(self.data, indent=1, default=str) + "\n"
        atomic_write(self.root / MANIFEST, lambda tmp: Path(tmp).write_text(text))

    def records(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` is a file name this manifest records (whatever it holds now)."""
        return self.rel(path) in self.files

    def unchanged(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` is recorded and holds what was recorded (or the version before)."""
        entry, p = self.files.get(self.rel(path)), Path(path)
        if entry is None or p.is_symlink() or not p.is_file():
            return False
        st = p.stat()
        if entry.get("growing") and st.st_size >= entry["size"]:
            return True
        return any(facts and facts["size"] == st.st_size and (
            facts["mtime_ns"] == st.st_mtime_ns or facts["sha256"] == file_sha256(p))
            for facts in (entry, entry.get("previous")))

    def check_removable(self) -> list[Path]:
        """What removing the tree takes (our files, temporaries and children); :class:`NotOurs`
        for the first thing that is not ours or would stop the removal half-way (a link, a
        folder that cannot be emptied, a child in use), found before anything is deleted."""
        children = {self.root / c for c in self.data.get("children", [])}
        found: list[Path] = []
        for sub, dirs, files in os.walk(self.root):
            here, mark = Path(sub), len(found)
            for d in list(dirs):
                p = here / d
                if p.is_symlink():
                    raise NotOurs(p, LINK)
                if p in children:
                    _check_child(p)
                elif is_temporary(d):
                    list(_walk(p))  # a link or a folder that cannot be emptied refuses
                else:
                    if (p / MANIFEST).is_file():
                        raise NotOurs(p, "holds another run (not started by this one)")
                    continue
                dirs.remove(d)
                found.append(p)
            for p in (here / name for name in files):
                if here == self.root and p.name in OWN_FILES:
                    continue
                if p.is_symlink():
                    raise NotOurs(p, LINK)
                if not is_temporary(p.name) and not self.records(p):
                    raise NotOurs(p, "was not written by annealing-kd (it is not in the "
                                     "folder's manifest)")
                if not is_temporary(p.name) and not self.unchanged(p):
                    raise NotOurs(p, "was changed after annealing-kd wrote it")
                found.append(p)
            if len(found) > mark or here == self.root:
                _check_emptiable(here)
        return found

    def runs(self) -> list[Manifest]:
        """The manifests of the runs this one started, and of theirs (depth first)."""
        found = [Manifest.read(self.root / c) for c in self.data.get("children", [])]
        return [r for m in found if m is not None for r in (m, *m.runs())]

    def remove(self) -> None:
        """Remove the tree once all of it is found removable and its children are locked (no
        run may start there meanwhile), then the folders this left empty and the manifest (not
        the lock)."""
        found = self.check_removable()
        locked: list[Path] = []
        try:
            for child in self.runs():
                if not run_lock.holds(child.root):
                    run_lock.acquire(child.root)
                    locked.append(child.root)
            self._delete(found)
        finally:
            for folder in locked:
                run_lock.release(folder)

    def _delete(self, found: list[Path]) -> None:
        children = {self.root / c for c in self.data.get("children", [])}
        for p in found:
            if p in children and (child := Manifest.read(p)) is not None:
                child._delete(child.check_removable())
                (p / run_lock.LOCK).unlink(missing_ok=True)
            else:
                remove_entry(p)
                self.forget(p)
        for d in sorted({d for p in found for d in (p, *p.parents) if self.root in d.parents},
                        key=lambda d: len(d.parts), reverse=True):  # deepest first
            with contextlib.suppress(OSError):
                if d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
                    d.rmdir()
        (self.root / MANIFEST).unlink(missing_ok=True)


LINK = "is a link that no run of annealing-kd wrote (it never follows one)"


def _check_emptiable(folder: Path) -> None:
    """Refuse a folder whose entries cannot be deleted (no permission, read-only, immutable)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise NotOurs(folder, "cannot be emptied (no permission, a read-only file system or an "
                              "immutable folder)")


def _walk(folder: Path) -> Iterator[Path]:
    """The files of a tree to be removed whole; :class:`NotOurs` for a link or a folder that
    cannot be emptied."""
    for sub, dirs, files in os.walk(folder):
        _check_emptiable(Path(sub))
        for p in (Path(sub) / n for n in (*dirs, *files)):
            if p.is_symlink():
                raise NotOurs(p, LINK)
        yield from (Path(sub) / n for n in files)


def written_by_this_cache(path: Path) -> bool:
    """Whether the teacher-logit cache wrote ``path``: a file with its header (a damaged one
    included), or an empty lock file."""
    if path.name.startswith(".") and path.name.endswith(SUFFIX + ".lock"):
        return path.is_file() and path.stat().st_size == 0
    with contextlib.suppress(OSError), open(path, "rb") as f:
        return path.name.endswith(SUFFIX) and MAGIC.encode() in f.read(HEADER)
    return False


def _check_child(folder: Path) -> None:
    """Refuse a child in use, or one without a manifest holding a file the logit cache did not
    write (a run stopped early, a cache)."""
    who = run_lock.holder(folder)
    if who:
        raise NotOurs(folder, f"is in use by a run ({who})")
    child = Manifest.read(folder)
    if child is not None:
        child.check_removable()
        return
    for p in _walk(folder):
        if p.name not in OWN_FILES and not is_temporary(p.name) and not written_by_this_cache(p):
            raise NotOurs(p, "was not written by annealing-kd (its folder has no manifest)")
