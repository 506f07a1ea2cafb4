"""Fingerprints of a run's inputs, so that ``--resume`` continues only with the same inputs:
path, files and bytes, a hash of names, sizes and mtimes (``stat``) and, when cheap (at most
``CHEAP_BYTES``, or ``hash_all``), of names and contents (``content``: a copy still matches)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import UsageError, setting

CHEAP_BYTES = 64 * 2**20
_digests: dict[tuple[int, int, int, int], str] = {}  # (dev, inode, size, mtime_ns) -> sha256


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, remembered per inode, size and mtime (hard links are free)."""
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _digests:
        with open(path, "rb") as f:
            _digests[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _digests[key]


def fingerprint(path: str | os.PathLike, *, hash_all: bool = False,
                only: Iterable[str] | None = None) -> dict[str, Any]:
    """The fingerprint of a file or folder (hidden files and symlinks in a folder left out;
    ``only``: just these files, relative to the folder, those that still are files)."""
    p = Path(path)
    if not p.exists():
        return {"path": str(p.resolve()), "kind": "missing"}
    files = [p] if p.is_file() else [p / f for f in sorted(only or ()) if (p / f).is_file()]
    for folder, dirs, names in os.walk(p) if only is None else ():  # nothing for a file
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(folder) / f for f in sorted(names)
                  if not f.startswith(".") and not os.path.islink(os.path.join(folder, f))]
    stats = [(f, f.stat()) for f in files]
    total = sum(st.st_size for _, st in stats)
    cheap = hash_all or total <= CHEAP_BYTES
    stat_hash, content_hash = hashlib.sha256(), hashlib.sha256()
    for f, st in stats:
        rel = f.relative_to(p if p.is_dir() else p.parent).as_posix()
        stat_hash.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        if cheap:
            content_hash.update(f"{rel}\0{file_sha256(f)}\n".encode())
    return {"path": str(p.resolve()), "kind": "file" if p.is_file() else "folder",
            "files": len(files), "bytes": total, "stat": stat_hash.hexdigest(),
            "content": content_hash.hexdigest() if cheap else None}


def changed(saved: dict[str, Any], now: dict[str, Any]) -> str | None:
    """How ``now`` differs from ``saved`` (None: the same input)."""
    if saved.get("hub") or now.get("hub"):
        return None if saved == now else f"was {saved.get('hub') or saved.get('path')}, now " \
            f"{now.get('hub') or now.get('path')}"
    for key, why in (("path", "was {}, now {}"), ("kind", "was a {}, now {}")):
        if saved.get(key) != now.get(key):
            return why.format(saved.get(key), now.get(key))
    if saved.get("content") and now.get("content"):
        return None if saved["content"] == now["content"] else "its contents changed"
    if (saved.get("files"), saved.get("bytes")) != (now.get("files"), now.get("bytes")):
        return (f"it held {saved.get('files')} files of {saved.get('bytes')} bytes, now "
                f"{now.get('files')} of {now.get('bytes')}")
    if saved.get("stat") != now.get("stat"):
        return "its files' sizes or modification times changed"
    return None


def check_same_inputs(saved: dict[str, dict[str, Any]] | None,
                      now: dict[str, dict[str, Any]]) -> None:
    """``--resume`` reads the same inputs as the run it continues: refuse the first that changed."""
    fix = "resume with the original inputs or start a new output directory"
    for name, fp in (saved or {}).items():
        if name not in now:
            raise UsageError(f"{setting('resume')}: this run read {setting(name)} "
                             f"{fp.get('path') or fp.get('hub')}, now it is not given; {fix}")
        if why := changed(fp, now[name]):
            raise UsageError(f"{setting('resume')}: {setting(name)} changed since this run "
                             f"started ({why}); {fix}")
    for name in now:
        if saved is not None and name not in saved:
            raise UsageError(f"{setting('resume')}: {setting(name)} was not an input of this run; "
                             f"{fix}")
