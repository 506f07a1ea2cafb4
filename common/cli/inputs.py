"""What a run reads: the paths kept apart from its output folder, and their fingerprints that
``--resume`` compares (:mod:`annealing_kd.common.run_folder.fingerprint`); a dataset's files are
those its loader opened (:class:`Opened`). No heavy imports."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..run_folder import fingerprint

_recording: list[Opened] = []


def given(args: argparse.Namespace, names: Iterable[str]) -> dict[str, str]:
    """Setting -> value of each of ``names`` that is set."""
    return {k: getattr(args, k) for k in names if getattr(args, k, None)}


def _on_open(event: str, args: tuple) -> None:
    if event == "open" and _recording and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1], args[2]
        writes = any(c in mode for c in "wax+") if mode else bool(flags & (os.O_WRONLY | os.O_RDWR))
        for rec in _recording:
            rec.saw(os.fsdecode(args[0]), writes)


@functools.cache
def _listen() -> None:
    sys.addaudithook(_on_open)  # for good: an audit hook cannot be removed


def note(paths: Iterable[str | os.PathLike]) -> None:
    """Files a loader reads without an 'open' event while :class:`Opened` records (memory-mapped,
    e.g. Arrow files) or opens only later (one image per batch)."""
    for path in map(os.fsdecode, paths):
        for rec in _recording:
            rec.saw(path, False)


class Opened:
    """While active (``with``): the files under ``root`` that are opened to be read (the 'open'
    audit event, and :func:`note`). A write under ``root`` (a download, an unpacked archive)
    forgets the reads before it: a resumed run, finding the data ready, reads only what follows."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = root
        self.files: set[str] = set()  # relative to root

    def saw(self, path: str, writes: bool) -> None:
        for resolve in (os.path.abspath, os.path.realpath):  # as named, or where it lies
            rel = os.path.relpath(resolve(path), resolve(self.root))
            if rel != os.pardir and not rel.startswith(os.pardir + os.sep):
                if writes:
                    self.files.clear()
                else:
                    self.files.add(rel)
                return

    def __enter__(self) -> Opened:
        _listen()
        _recording.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _recording.remove(self)


@dataclass
class Inputs:
    """What a run reads, by setting: ``apart`` (paths kept apart from the output folder),
    ``data`` (a path: every file under it; :class:`Opened`: the files it recorded, left out when
    none), ``hub`` (datasets by name) and ``models`` (hashed whole; one that is no local path, a
    hub id, by name)."""

    apart: dict[str, str]
    data: dict[str, str | Opened] = field(default_factory=dict)
    hub: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)

    def fingerprints(self) -> dict[str, dict[str, Any]]:
        out = {k: fingerprint(v.root, only=v.files) if isinstance(v, Opened) else fingerprint(v)
               for k, v in self.data.items() if not isinstance(v, Opened) or v.files}
        out |= {k: {"hub": v} for k, v in self.hub.items()}
        for k, v in self.models.items():
            out[k] = fingerprint(v, hash_all=True) if Path(v).exists() else {"hub": v}
        return out
