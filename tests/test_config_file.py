"""Both CLIs take their flags from a JSON or YAML file given as the first argument; flags after
it override the file; a bad file is one `error:` line; results.json records the file."""

from __future__ import annotations

import json

import pytest

from annealing_kd.computer_vision_tasks import annealing_kd_train as cifar
from annealing_kd.computer_vision_tasks.cli import parse_args as image_args
from annealing_kd.NLP_glue_tasks import annealing_kd_glue as glue
from annealing_kd.NLP_glue_tasks.cli import parse_args as text_args


def test_image_flags_from_yaml_and_json_with_overrides(tmp_path):
    y = tmp_path / "args.yaml"
    y.write_text("dataset: fake\nlearning-rate: 0.05\nlr_milestones: [0.25, 0.5]\n"
                 "anneal_per_step: true\nchannels-last: false\nseed: 7\nassistant: null\n")
    args = image_args([str(y), "--seed", "3"])
    assert (args.dataset, args.learning_rate, args.lr_milestones) == ("fake", 0.05, (0.25, 0.5))
    assert args.anneal_per_step and not args.channels_last and args.seed == 3  # the flag wins
    assert args.config_file == {"path": str(y.resolve()), "contents": {
        "dataset": "fake", "learning-rate": 0.05, "lr_milestones": [0.25, 0.5],
        "anneal_per_step": True, "channels-last": False, "seed": 7, "assistant": None}}
    assert args.command.endswith(f"{y} --seed 3")
    j = tmp_path / "args.json"
    j.write_text(json.dumps({"student_epochs_p1": 4, "--max_temperature": 2}))
    args = image_args([str(j)])
    assert (args.student_epochs_p1, args.max_temperature) == (4, 2)
    assert image_args(["--seed", "1"]).config_file is None


def test_text_flags_by_flag_name_or_setting_name(tmp_path):
    j = tmp_path / "args.json"
    j.write_text(json.dumps({"task_name": "rte", "output_dir": "out", "do_train": True,
                             "student_model_name_or_path": "s", "teacher_model_name_or_path": "t",
                             "num_train_epochs_phase_1": 4, "max_temperature": 2,
                             "kd_alpha": 0.3}))
    args = text_args([str(j), "--num_train_epochs_phase_1", "6"])
    assert (args.task_name, args.output_dir, args.do_train) == ("rte", "out", True)
    assert (args.student_epochs_p1, args.kd_alpha) == (6, 0.3)
    j.write_text(json.dumps({"student_epochs_p1": 5, "task_name": "rte", "output_dir": "o",
                             "do_eval": True}))  # the setting's name works too
    assert text_args([str(j)]).student_epochs_p1 == 5


BAD = [("missing.json", None, "config file {f} does not exist"),
       ("bad.json", '{"seed": 1,}', "config file {f} is not valid JSON (line 1:"),
       ("bad.yaml", "seed: [1\n", "config file {f} is not valid YAML (line 2:"),
       ("list.yaml", "- seed\n", "must hold a mapping of flag names to values"),
       ("unknown.json", '{"sead": 1}', "unknown setting 'sead'"),
       ("switch.json", '{"deterministic": "yes"}', "deterministic is a switch; give true or false"),
       ("value.json", '{"seed": "x"}', "argument --seed: invalid int value: 'x'"),
       ("latin1.yaml", b"seed: \xe9\n", "cannot read config file {f}"),
       # bounded parsing: a deep alias list once ran out of memory after 52 s
       ("laughs.yaml", "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
           f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))
        + "seed: *i\n", "uses a YAML alias (*a, line 2)"),
       ("deep.yaml", "seed: " + "[" * 40 + "]" * 40 + "\n", "is nested more than 16 levels deep"),
       ("deep.json", "[" * 100_000 + "]" * 100_000, "is nested more than 16 levels deep"),
       ("big.yaml", "#" * (1 << 20) + "\nseed: 1\n", "bytes, more than a file of flags needs")]


@pytest.mark.parametrize("cli", ["image", "text"])
@pytest.mark.parametrize("name,content,message", BAD, ids=[b[0] for b in BAD])
def test_a_bad_config_file_is_one_error_line(tmp_path, capsys, cli, name, content, message):
    f = tmp_path / name
    if content is not None:
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
    main = cifar.main if cli == "image" else glue.main
    extra = ["--output-dir", str(tmp_path / "o")] if cli == "image" else [
        "--output_dir", str(tmp_path / "o"), "--task_name", "rte", "--do_eval"]
    assert main([str(f), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message.format(f=f) in err[0], err
    assert not (tmp_path / "o").exists()


def test_results_record_the_config_file(tmp_path):
    from test_cifar_pipeline import TINY, results

    f = tmp_path / "run.yaml"
    f.write_text("method: scratch\nstudent-epochs: 1\nseed: 5\n")
    out = tmp_path / "run"
    assert cifar.main([str(f), *TINY, "--output-dir", str(out)]) == 0
    config = results(out)["config"]
    assert config["config_file"] == {"path": str(f.resolve()),
                                     "contents": {"method": "scratch", "student-epochs": 1, "seed": 5}}
    assert config["method"] == "scratch" and config["seed"] == 5
    card = (out / "student" / "README.md").read_text()  # the file's name, not this machine's path
    assert f"config file `{f.name}`" in card and str(f.resolve()) not in card


def _same_but_paths(a: dict, b: dict, cli: str) -> None:
    """Two runs' results.json configs: equal but for the output dir and how they were started."""
    differ = {"output_dir", "command", "config_file"}
    assert {k: v for k, v in a.items() if k not in differ} == \
        {k: v for k, v in b.items() if k not in differ}, cli


def test_image_run_reproduced_from_its_config_yaml_and_results(tmp_path, capsys):
    import yaml
    from test_cifar_pipeline import TINY, results

    first = tmp_path / "first"
    assert cifar.main([*TINY, "--lr-milestones", "0.5", "--recipe",
                       "no-phase1-decay", "--output-dir", str(first)]) == 0
    written = yaml.safe_load((first / "config.yaml").read_text())
    assert written["output_dir"] == str(first) and written["phase1_lr_milestones"] == "none"
    assert written["method"] == "annealing" and "resume" not in written and "command" not in written
    for source, name in ((first / "config.yaml", "again"), (first / "results.json", "from_json")):
        out = tmp_path / name
        assert cifar.main([str(source), "--output-dir", str(out)]) == 0
        _same_but_paths(results(first)["config"], results(out)["config"], "image")
        assert (out / "config.yaml").read_text() == \
            (first / "config.yaml").read_text().replace(str(first), str(out))
    assert results(tmp_path / "from_json")["config"]["config_file"]["contents"] == written
    capsys.readouterr()
    assert cifar.main([str(first / "config.yaml"), "--output-dir", str(tmp_path / "p"),
                       "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == {**written, "output_dir": str(tmp_path / "p")}
    assert not (tmp_path / "p").exists()  # nothing ran


def test_text_print_config_and_shared_spellings(capsys):
    import yaml

    base = ["--task_name", "rte", "--output_dir", "o", "--do_train", "--student_model_name_or_path",
            "s", "--teacher_model_name_or_path", "t"]
    old = text_args([*base, "--per_gpu_train_batch_size", "4", "--per_gpu_eval_batch_size", "5",
                     "--no_cuda", "--fp16"])
    new = text_args([*base, "--per_device_train_batch_size", "4", "--per_device_eval_batch_size",
                     "5", "--use_cpu", "--amp", "fp16"])
    assert {**vars(old), "command": ""} == {**vars(new), "command": ""}
    assert (new.per_gpu_train_batch_size, new.per_gpu_eval_batch_size, new.no_cuda) == (4, 5, True)
    assert text_args([*base, "--bf16"]).bf16 and text_args([*base, "--amp", "bf16"]).bf16
    assert glue.main([*base, "--use_cpu", "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["no_cuda"] is True and printed["per_gpu_train_batch_size"] == 8  # results.json's
    assert printed["student_epochs_p1"] == 14 and printed["task_name"] == "rte"
    assert glue.main([*base, "--per_device_train_batch_size", "0"]) == 2
    assert "--per_gpu_train_batch_size must be >= 1" in capsys.readouterr().err


def test_image_takes_the_text_spellings():
    assert image_args(["--use_cpu"]).device == "cpu" and image_args(["--use-cpu"]).device == "cpu"
    assert image_args(["--bf16"]).amp == "bf16" and image_args(["--fp16"]).amp == "fp16"
    assert image_args([]).amp == "none" and image_args(["--device", "cuda"]).device == "cuda"
