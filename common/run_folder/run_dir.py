"""The folders we write, every file recorded before it appears, inputs kept apart: a training
run's (:class:`RunDir`: fresh, finished, unfinished, overwrite, resume; its results.json and
metrics.jsonl) and a tool's (:class:`OutputFolder`: the demo, reports, examples,
GLUE evaluation; never over a file no tool of ours wrote; the runs it starts are children)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import UsageError, setting
from . import lock as run_lock
from .checkpoint import (
    FileTransaction,
    atomic_write,
    is_temporary,
    remove_temporaries,
)
from .fingerprint import check_same_inputs
from .manifest import OWN_FILES, Manifest, NotOurs

RESUME, OVERWRITE = setting("resume"), setting("overwrite_output_dir")  # as each CLI spells them
RESULTS, METRICS = "results.json", "metrics.jsonl"
CACHES = ("cache_dir", "logits_cache_dir")  # folders a run writes: compared even when missing


def make_folder(path: Path, named: str, other: str, inputs: dict[str, str | None] | None,
                make: bool = True) -> None:
    """Refuse ``path`` (called ``named``) if a file or not apart from ``inputs``; if ``make``,
    create it, writable. ``other``: what to choose instead."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{named} {path} is a file; choose another {other}")
    if inputs is not None:
        check_apart(path, inputs)
    if not make:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {named} {path} ({exc.strerror}); choose another "
                         f"{other}") from None
    if not os.access(path, os.W_OK | os.X_OK) or os.statvfs(path).f_flag & os.ST_RDONLY:
        raise UsageError(f"{named} {path} is not writable (read-only file system or no "
                         f"permission); choose another {other}")


@contextlib.contextmanager
def refusing(flag: str, where: str, what: str = "") -> Iterator[None]:
    """A file not ours (or a failure to remove ``what``) in the block is one line: what to do."""
    try:
        yield
    except NotOurs as exc:
        raise UsageError(f"{flag}: {exc.path} {exc.why}; move it away or choose another "
                         f"{where}") from None
    except OSError as exc:
        raise UsageError(f"cannot replace {what} ({exc.strerror}); remove it by hand or choose "
                         f"another {where}") from None


class RunDir:
    """A run's output directory, locked by the main process. A finished run is replaced only with
    ``overwrite``, an unfinished one needs ``resume`` or ``overwrite``. ``inputs``: flag -> path."""

    def __init__(self, path: str | Path, *, overwrite: bool = False, resume: bool = False,
                 is_main: bool = True, check: bool = True, program: str = "annealing-kd",
                 inputs: dict[str, str | None] | None = None) -> None:
        self.path, self.is_main, self.program, self.started = Path(path), is_main, program, False
        self.manifest: Manifest | None = None  # this run's (main process only)
        self._old: Manifest | None = None  # the run that start() replaces
        if check and resume and overwrite:
            raise UsageError(f"{RESUME} and {OVERWRITE} contradict each other; pass one")
        make_folder(self.path, "output directory", "output directory",
                    inputs if check else None, make=is_main)
        with run_lock.claim(self.path, lock=is_main):
            if check:
                self._check(overwrite, resume)

    def _check(self, overwrite: bool, resume: bool) -> None:
        entries = content(self.path)
        if not entries:
            if resume:
                raise UsageError(f"{RESUME}: there is no run to resume in {self.path}; leave out "
                                 f"{RESUME} to start one")
            return
        found = Manifest.read(self.path)
        if found is None:
            raise UsageError(f"{self.path} is not empty and holds no run of annealing-kd (it has "
                             f"{entries[0].name!r} and no manifest); choose a new or empty output "
                             "directory")
        if overwrite:
            here, cwd = self.path.resolve(), Path.cwd().resolve()
            if here in (Path(here.anchor), Path.home().resolve(), cwd, *cwd.parents):
                raise UsageError(f"{OVERWRITE} will not empty {self.path} (the root, home or "
                                 "working directory, or a parent of it); choose another output "
                                 "directory")
            with refusing(OVERWRITE, "output directory"):
                found.check_removable()
            self._old = found
        elif found.config is None:
            raise UsageError(f"{self.path} holds files of annealing-kd but no training run (e.g. "
                             f"{entries[0].name!r}); pass {OVERWRITE} to replace them or "
                             "choose another output directory")
        elif self.read_results().get("final"):
            raise UsageError(f"{self.path} holds a finished run; pass {OVERWRITE} to "
                             "replace it or choose another output directory")
        elif not resume:
            raise UsageError(f"{self.path} holds an unfinished run; pass {RESUME} to continue it, "
                             f"{OVERWRITE} to start again, or choose another directory")
        elif self.is_main:
            self.manifest = found
            remove_temporaries(self.path)  # left by a stop in the middle of a write

    def start(self, config: dict[str, Any] | None = None) -> None:
        """Before the first write: remove the run being overwritten, write the new manifest."""
        started, self.started = self.started, True
        if started or not self.is_main:
            return
        if self._old is not None:
            with refusing(OVERWRITE, "output directory", f"the run in {self.path}"):
                self._old.remove()
            self._old = None
        if self.manifest is None:
            self.manifest = Manifest.create(self.path, self.program, config or {})

    def check_same(self, now: dict[str, Any], keys: list[str]) -> None:
        """--resume: the settings ``keys`` and the inputs (``now["inputs"]``) must match."""
        found = self.manifest or Manifest.read(self.path)
        saved = self.read_results().get("config") or (found and found.config) or {}
        check_same_run(saved, now, keys)
        check_same_inputs(saved.get("inputs"), now.get("inputs") or {})

    def read_results(self) -> dict[str, Any]:
        return read_results(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        self.write(name, json_writer(data))

    def check_free(self, *paths: str | Path) -> None:
        """Refuse a file at one of ``paths`` that this run's manifest does not record."""
        found = self.manifest or Manifest.read(self.path)
        for p in map(Path, paths):
            if self.is_main and p.exists() and (found is None or not found.records(p)):
                raise UsageError(f"{p} exists and was not written by this run; move it away or "
                                 "choose another output directory")

    def transaction(self) -> FileTransaction:
        """A :class:`FileTransaction` whose files this run's manifest records."""
        self.start()
        return FileTransaction(self.manifest)

    def write(self, name: str | Path, write) -> None:
        """Write a file of this run (``write(tmp_path)``), recorded in its manifest."""
        self.start()
        if self.is_main:
            atomic_write(self.path / name, write, self.manifest)

    def write_results(self, config: dict[str, Any], env: dict[str, Any],
                      records: list[dict[str, Any]], final: dict[str, Any] | None = None,
                      **extra: Any) -> None:
        """metrics.jsonl (a line per epoch record), then results.json."""
        transaction = self.transaction()
        if self.is_main:
            text = "".join(json.dumps(r, default=jsonable) + "\n" for r in records)
            transaction.write(self.path / METRICS, lambda tmp: Path(tmp).write_text(text))
            transaction.write(self.path / RESULTS, json_writer(
                {"config": config, **env, "epochs": records, **extra, "final": final}))
            transaction.commit()

class OutputFolder:
    """``path`` as the output of ``program``; ``inputs`` (name -> path) lie apart from it."""

    def __init__(self, path: str | os.PathLike, program: str, *, replace: bool = False,
                 lock: bool = True, inputs: dict[str, str | None] | None = None,
                 flag: str = "--out") -> None:
        self.path, self.program, self.flag = Path(path), program, flag
        make_folder(self.path, flag, "folder", inputs or {})
        with run_lock.claim(self.path, lock):
            found = Manifest.read(self.path)
            old = found.data.get("program", "") if found else None
            entries = content(self.path) if replace else []
            if entries and old != program:
                what = f"a {old} output" if found else "no manifest"
                raise UsageError(f"{flag} {self.path} is not empty and holds no earlier output "
                                 f"of {program} ({what}; it has {entries[0].name!r}); choose a "
                                 "new or empty folder")
            if entries:
                with refusing(f"{flag} {self.path}", "folder", str(self.path)):
                    found.remove()
            self._manifest = Manifest.create(self.path, program) if replace else found

    @property
    def manifest(self) -> Manifest:
        """The folder's manifest, created at the first write (a refusal before leaves none)."""
        if self._manifest is None:
            self._manifest = Manifest.open(self.path, self.program)
        return self._manifest

    def __truediv__(self, rel: str) -> Path:
        return self.path / rel

    def check_free(self, *paths: str | os.PathLike) -> None:
        """Refuse a file at ``paths`` (or below) that no tool of ours wrote, or that changed
        since (as the manifest on disk records it: another process may share the folder);
        before any write."""
        found = Manifest.read(self.path)
        for p in map(Path, paths):
            files = [p] if p.is_file() or p.is_symlink() else sorted(
                f for f in p.rglob("*") if f.is_file() or f.is_symlink()) if p.is_dir() else []
            for f in (f for f in files if f.name not in OWN_FILES and not is_temporary(f.name)):
                if found is None or not found.records(f):
                    raise UsageError(f"{f} exists and was not written by {self.program}; move it "
                                     f"away or choose another {self.flag}")
                if not found.unchanged(f):
                    raise UsageError(f"{f} was changed after {self.program} wrote it; move it "
                                     f"away or choose another {self.flag}")

    def write(self, rel: str | os.PathLike, write: Callable[[str], None]) -> Path:
        """Write a file (``write(tmp_path)``), recorded, never over a file we did not write."""
        path = self.path / rel
        self.check_free(path)
        atomic_write(path, write, self.manifest)
        return path

    def write_text(self, rel: str | os.PathLike, text: str) -> Path:
        return self.write(rel, lambda tmp: Path(tmp).write_text(text))

    def write_json(self, rel: str | os.PathLike, data: dict) -> None:
        self.write(rel, json_writer(data))

    def folder(self, rel: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
        """Write a folder (``rel``; "." for the output folder itself) that ``fill(tmp_folder)``
        fills, never over a file we did not write; in a subfolder, an earlier fill's files go."""
        path = self.path / rel
        transaction = FileTransaction(self.manifest)
        written = set(transaction.folder(path, fill, within=self.path))
        with transaction.guard(path):
            self.check_free(*sorted(written))
        transaction.commit()
        if path != self.path and path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file() and p not in written):
                if self.manifest.records(f):
                    f.unlink()
                    self.manifest.forget(f)
            self.manifest.save()
        return path

    def child(self, rel: str | os.PathLike) -> Path:
        """A subfolder that a run of ours writes, with its own manifest (recorded first)."""
        self.children([rel])
        return self.path / rel

    def children(self, rels) -> None:
        """:meth:`child` for many subfolders (one manifest write)."""
        for rel in rels:
            self.manifest.add_child(self.path / rel, save=False)
        self.manifest.save()

    def log(self, rel: str | os.PathLike) -> Path:
        """A log file that a process appends to: recorded as growing until :meth:`done`."""
        path = self.path / rel
        self.check_free(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        self.manifest.record(path, growing=True)
        self.manifest.save()
        return path

    def done(self, path: str | os.PathLike) -> None:
        """A file written in place (a finished log): record what it holds now."""
        self.manifest.record(path)
        self.manifest.save()


def first_change(saved: dict[str, Any], now: dict[str, Any],
                 keys: list[str]) -> tuple[str, Any, Any] | None:
    """The first of ``keys`` recorded in ``saved`` whose value in ``now`` (as results.json holds
    it) differs: (key, saved value, now value), or None."""
    for key in keys:
        value = json.loads(json.dumps(now.get(key), default=jsonable))
        if key in saved and saved[key] != value:
            return key, saved[key], value
    return None


def check_same_run(saved: dict[str, Any], now: dict[str, Any], keys: list[str]) -> None:
    """--resume must continue the same experiment: refuse any of ``keys`` that changed."""
    if change := first_change(saved, now, keys):
        key, was, value = change
        raise UsageError(f"{RESUME}: {setting(key)} was {was!r} in this run, now {value!r}; "
                         "resume with the original settings or start a new output directory")


def check_apart(out: Path, inputs: dict[str, str | None]) -> None:
    """No input lies inside the output folder, nor the folder inside an input; inputs that do
    not exist (hub ids) are left out, but for the caches."""
    here = out.resolve()
    for key, value in inputs.items():
        if not value or not (Path(value).exists() or key in CACHES):
            continue
        where = Path(value).resolve()
        named = setting(key) if key.isidentifier() else key  # a flag, or a description
        if where == here or here in where.parents:
            raise UsageError(f"{named} {value} is inside the output directory {out}: a run never "
                             "reads from the folder it writes (an overwrite would delete it); "
                             "choose another output directory")
        if where in here.parents:
            raise UsageError(f"the output directory {out} is inside {named} {value}: its files "
                             "would mix with that input; choose an output directory outside it")


def content(folder: Path) -> list[Path]:
    """The entries of ``folder`` (sorted), without its lock file and manifest."""
    return sorted(e for e in folder.iterdir() if e.name not in OWN_FILES) if folder.is_dir() else []


def jsonable(obj: Any) -> Any:
    """``json.dumps``' ``default``: paths and tensors or numpy numbers as JSON values."""
    return obj.item() if hasattr(obj, "item") else str(obj)


def json_writer(data: dict[str, Any]):
    text = json.dumps(data, indent=2, default=jsonable) + "\n"
    return lambda tmp: Path(tmp).write_text(text)


def read_results(run_dir: str | Path) -> dict[str, Any]:
    """The results.json of a run directory ({} when it is missing or unreadable)."""
    with contextlib.suppress(OSError, ValueError):
        return json.loads((Path(run_dir) / RESULTS).read_text())
    return {}
