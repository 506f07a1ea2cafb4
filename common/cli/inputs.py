"""What a run reads: the paths kept apart from its output folder, and their fingerprints that
``--resume`` compares (:mod:`annealing_kd.common.run_folder.fingerprint`). No heavy imports."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from annealing_kd.common.run_folder import fingerprint


def given(args: argparse.Namespace, names: Iterable[str]) -> dict[str, str]:
    """Setting -> value of each of ``names`` that is set."""
    return {k: getattr(args, k) for k in names if getattr(args, k, None)}


def fingerprints(read: Mapping[str, Any], hub: Mapping[str, str],
                 models: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The fingerprint of each input: the files ``read``, the ``hub`` datasets by name, the
    ``models`` hashed whole (one that is no local path: a hub id, recorded by name)."""
    out = {k: fingerprint(v) for k, v in read.items()} | {k: {"hub": v} for k, v in hub.items()}
    for k, v in models.items():
        out[k] = fingerprint(v, hash_all=True) if Path(v).exists() else {"hub": v}
    return out
