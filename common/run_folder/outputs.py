"""A tool's output folder (:class:`OutputFolder`: the demo, reports, examples, GLUE evaluation):
every file recorded before it appears, never over a file no tool of ours wrote; runs it starts
are children; ``replace=True`` first removes an earlier output of the same program, exactly."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from annealing_kd.common.errors import UsageError
from annealing_kd.common.run_folder import lock as run_lock
from annealing_kd.common.run_folder.checkpoint import FileTransaction, atomic_write, is_temporary
from annealing_kd.common.run_folder.manifest import OWN_FILES, Manifest
from annealing_kd.common.run_folder.run_dir import content, json_writer, make_folder, refusing


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
            self.manifest = Manifest.create(self.path, program) if replace else \
                found or Manifest.open(self.path, program)

    def __truediv__(self, rel: str) -> Path:
        return self.path / rel

    def check_free(self, *paths: str | os.PathLike) -> None:
        """Refuse a file at ``paths`` (or below) that no tool of ours wrote; before any write."""
        for p in map(Path, paths):
            files = [p] if p.is_file() or p.is_symlink() else sorted(
                f for f in p.rglob("*") if f.is_file() or f.is_symlink()) if p.is_dir() else []
            for f in files:
                if f.name not in OWN_FILES and not is_temporary(f.name) and \
                        not self.manifest.records(f):
                    raise UsageError(f"{f} exists and was not written by {self.program}; move it "
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
