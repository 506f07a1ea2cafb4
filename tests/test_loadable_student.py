"""The image student loads on its own: ``<out>/student`` holds config.json, the weights and the
card, and ``model_zoo.from_pretrained`` rebuilds it in a process without the CLI's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOAD = """
import json, sys
from pathlib import Path

import torch

from annealing_kd.computer_vision_tasks import data
from annealing_kd.computer_vision_tasks.model_zoo import from_pretrained

folder, seed = Path(sys.argv[1]), 0
model = from_pretrained(folder)
config = json.loads((folder / "config.json").read_text())
spec = data.get_spec("fake")
assert (config["mean"], config["std"]) == (list(spec.mean), list(spec.std))
test = data.make_splits("fake", "./data", 32, 64, seed).test
loader = data.tensor_loader(test, spec, 64, False, seed, "cpu", False)
with torch.no_grad():
    logits, labels = zip(*((model(x), y) for x, y, *_ in loader))
accuracy = (torch.cat(logits).argmax(1) == torch.cat(labels)).float().mean().item()
cli = [m for m in ("cli", "pipeline", "annealing_kd_train")
       if f"annealing_kd.computer_vision_tasks.{m}" in sys.modules]
print(json.dumps({"accuracy": accuracy, "cli": cli, "training": model.training}))
"""


@pytest.mark.parametrize("method", ["annealing", "scratch"])
def test_image_student_loads_without_the_cli(tmp_path, method):
    from test_cifar_pipeline import run

    out = tmp_path / "run"
    assert run(out, "--method", method) == 0
    student = out / "student"
    assert {"README.md", "config.json", "best.safetensors"} <= {p.name for p in student.iterdir()}
    assert json.loads((student / "config.json").read_text())["architecture"] == "plane2"
    assert not (out / "README.md").exists()  # the card sits beside the weights
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", LOAD, str(student)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, check=True)
    got = json.loads(done.stdout.splitlines()[-1])
    res = json.loads((out / "results.json").read_text())
    assert got == {"accuracy": res["final"]["metrics"]["test_accuracy"], "cli": [],
                   "training": False}
