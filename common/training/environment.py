"""What results.json records about where a run ran."""

from __future__ import annotations

import contextlib
import platform
import subprocess
import time
from pathlib import Path
from typing import Any


def environment_info() -> dict[str, Any]:
    """Library versions, device and git commit, for results.json."""
    import importlib.metadata as md

    import torch

    versions = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "transformers", "accelerate", "datasets", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[pkg] = md.version(pkg)
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu"
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, cwd=Path(__file__).resolve().parent).stdout.strip()
    return {"versions": versions, "device": device, "git_commit": commit or None,
            "host": platform.node(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
