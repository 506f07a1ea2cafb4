"""The house keeps its shape: the import contracts of .importlinter, common/ by concern, short
functions, and docs/architecture.md true to the code."""

import ast
import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("common", "computer_vision_tasks", "NLP_glue_tasks")
ARCH = ROOT / "docs" / "architecture.md"


def product_files() -> list[Path]:
    return sorted(f for d in PRODUCT for f in (ROOT / d).rglob("*.py"))


def test_import_contracts_hold(tmp_path):
    """import-linter's layers, independence and no-cycle contracts. grimp cannot follow
    setuptools' package-dir, so the folders are laid out as the installed wheel has them."""
    pytest.importorskip("importlinter")
    pkg = tmp_path / "annealing_kd"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for d in PRODUCT:
        shutil.copytree(ROOT / d, pkg / d, ignore=shutil.ignore_patterns("__pycache__"))
    exe = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(exe), "--no-cache", "--no-logo", str(ROOT / ".importlinter")],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "broken" not in proc.stdout.lower().replace("0 broken", "")


def test_common_holds_at_most_eight_modules_directly():
    direct = sorted(p.name for p in (ROOT / "common").glob("*.py"))
    assert len(direct) <= 8, direct


def test_no_product_function_is_longer_than_60_lines():
    long = []
    for f in product_files():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > 60:
                    long.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long


def test_common_is_not_a_top_level_import_name(tmp_path):
    """Installing the project puts annealing_kd, not common, at the top of the environment."""
    proc = subprocess.run([sys.executable, "-c", "import common"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "No module named 'common'" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", "import annealing_kd.common.methods.annealing"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _defined_names() -> set[str]:
    names: set[str] = set()
    for f in product_files():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_architecture_doc_names_only_what_exists():
    text = ARCH.read_text()
    paths = set(re.findall(r"\b((?:common|computer_vision_tasks|NLP_glue_tasks)/[\w/]*\.py)", text))
    missing = [p for p in paths if not (ROOT / p).is_file()]
    dotted = set(re.findall(r"\bannealing_kd(?:\.(?!py\b)\w+)+", text))
    for name in dotted:
        module, attr = name, None
        while True:
            try:
                mod = importlib.import_module(module)
                break
            except ModuleNotFoundError:
                module, _, attr = module.rpartition(".")
        if attr is not None and not hasattr(mod, attr):
            missing.append(name)
    defined = _defined_names()
    code_names = set(re.findall(r"`([A-Z][A-Za-z]+[a-z][A-Za-z]*)(?:\(\))?`", text))
    code_names |= set(re.findall(r"`([a-z_][a-z0-9_]*)\(\)`", text))
    missing += sorted(n for n in code_names if n not in defined)
    assert paths and code_names, "the document names no module or class"
    assert not missing, missing
