"""Entry points, fast --help, environment.yml, error convention."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["NLP_glue_tasks/annealing_kd_glue.py", "computer_vision_tasks/annealing_kd_train.py",
           "reproduce/run_table.py"]
MODULES = ["annealing_kd.NLP_glue_tasks.annealing_kd_glue", "annealing_kd.computer_vision_tasks.annealing_kd_train"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help_from_repo_root_without_heavy_imports(script):
    code = (
        f"import runpy, sys; sys.argv = [{script!r}, '--help']\n"
        f"try:\n    runpy.run_path({script!r}, run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'accelerate') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


@pytest.mark.parametrize("module", MODULES)
def test_python_dash_m_help(module):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr


@pytest.mark.parametrize("name", ["annealing-kd-glue", "annealing-kd-cifar"])
def test_console_scripts(name):
    exe = Path(sys.executable).parent / name
    assert exe.exists(), f"{name} not installed: run make setup"
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_bad_flag_is_one_line_exit_2(script):
    proc = subprocess.run([sys.executable, script, "--no-such-flag"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_usage_error_convention(capsys):
    from annealing_kd.common.cli.entry import run_cli
    from annealing_kd.common.errors import UsageError

    def main(argv):
        raise UsageError("the thing is wrong;\n  fix it like this")

    assert run_cli(main, []) == 2
    err = capsys.readouterr().err
    assert err == "error: the thing is wrong; fix it like this\n"


def test_environment_yml_parses_and_installs_the_project():
    yaml = pytest.importorskip("yaml")
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert any(str(d).startswith("python=3.11") for d in deps)
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert any(p.startswith("-e") and "." in p for p in pip)


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_import_of_common_is_light():
    proc = subprocess.run([sys.executable, "-c", "import annealing_kd.common.errors, annealing_kd.common.methods.annealing, sys; "
                           "assert 'torch' not in sys.modules"], cwd=ROOT)
    assert proc.returncode == 0
