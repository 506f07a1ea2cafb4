"""Command-line helpers of both CLIs: a parser whose errors are one line, config files of flags,
flag spellings, number types and range checks."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from ..errors import UsageError, setting


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default after its help, unless the help says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default:" in text or action.default in (None, False):
            return text
        return super()._get_help_string(action)


INT64 = 2**63 - 1
_WHOLE = re.compile(r"[+-]?[0-9]+")
_REAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|infinity|nan)",
                   re.IGNORECASE)


def integer(text: str) -> int:
    """``type=`` of integer flags: ASCII digits only (``int()`` takes other scripts' digits),
    within int64."""
    if not _WHOLE.fullmatch(text.strip()):
        raise ValueError(text)  # argparse: "invalid int value: ..."
    value = int(text)
    if abs(value) > INT64:
        raise argparse.ArgumentTypeError(f"{text.strip()} is out of range (at most {INT64})")
    return value


integer.__name__ = "int"


def real(text: str) -> float:
    """``type=`` of real-valued flags: an ASCII decimal number, finite (no inf, nan, 1e999)."""
    if not _REAL.fullmatch(text.strip()):
        raise ValueError(text)  # argparse: "invalid float value: ..."
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text.strip()} is not a finite number")
    return value


real.__name__ = "float"


CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


class Parser(argparse.ArgumentParser):
    """Bad arguments become a one-line :class:`UsageError` (exit 2), not usage + SystemExit;
    ``--help`` shows the defaults (:class:`HelpFormatter`). A JSON or YAML file as the first
    argument gives flags (as ``HfArgumentParser`` reads a JSON file); flags after it override
    it; of a run's results.json, the settings of its ``config`` (``from_results(config)``). The
    parsed namespace records ``command`` (as given) and ``config_file`` (path, the settings read)."""

    from_results: Any = None

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("epilog", "Flags may also come from a JSON or YAML file given as the "
                          "first argument (e.g. %(prog)s args.json --seed 1, or a run's config.yaml "
                          "or results.json): its keys are flag names without the dashes; flags "
                          "after it override the file.")
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        config, flags = None, argv
        if argv and not argv[0].startswith("-") and argv[0].lower().endswith(CONFIG_SUFFIXES):
            config = {"path": str(Path(argv[0]).resolve()), "contents": read_config(argv[0])}
            saved = config["contents"].get("config")
            if isinstance(saved, dict) and self.from_results:  # a results.json: its settings
                config["contents"] = self.from_results(saved)
            flags = self.flags_of(config["contents"], argv[0]) + argv[1:]
        parsed = super().parse_args(flags, namespace)
        parsed.command = shlex.join([sys.argv[0] if args is None else self.prog, *argv])
        parsed.config_file = config
        return parsed

    def flags_of(self, contents: dict, path: str) -> list[str]:
        """A config file's settings as flags: ``key: value`` -> ``--key value``; a switch
        ``true`` -> ``--key`` (``false``, null or the default: left out); a list -> comma-separated
        (a flag of several values: those values)."""
        argv: list[str] = []
        for key, value in contents.items():
            action = self._action_of(str(key))
            if action is None:
                raise UsageError(f"config file {path}: unknown setting {key!r}; use the flag "
                                 "names of --help without the dashes (e.g. learning_rate)")
            if action.nargs == 0:  # a switch
                if value not in (True, False, None):
                    raise UsageError(f"config file {path}: {key} is a switch; give true or false, "
                                     f"not {value!r}")
                argv += [action.option_strings[0]] if value else []
            elif isinstance(value, dict) or value is True or value is False:
                raise UsageError(f"config file {path}: {key} takes one value, not {value!r}")
            elif value is not None and value != action.default:  # a default stays as it is
                if isinstance(value, list) and action.nargs in ("+", "*"):
                    argv += [action.option_strings[0], *map(str, value)]
                    continue
                text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
                argv += [action.option_strings[0], text]
        return argv

    def _action_of(self, key: str) -> argparse.Action | None:
        """The flag a config key names: ``--key`` as spelled, else the setting's name (dest)."""
        action = self._option_string_actions.get("--" + key.lstrip("-"))
        if action is not None and not isinstance(action, argparse._HelpAction):
            return action
        dest = key.lstrip("-").replace("-", "_")
        return next((a for a in self._actions if a.dest == dest and a.option_strings), None)

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message}; see --help")


MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH = 1 << 20, 16  # a file of flags needs neither more


def read_config(path: str) -> dict:
    """The mapping of a JSON or YAML file, or a one-line :class:`UsageError`; parsing is bounded
    (size, nesting, no YAML aliases: their expansion is unbounded)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"config file {path} does not exist; pass a .json or .yaml file of "
                         "flags, or the flags themselves")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise UsageError(f"config file {path} is {p.stat().st_size:,} bytes, more than a file of "
                         f"flags needs (at most {MAX_CONFIG_BYTES:,}); pass a smaller file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {path} ({getattr(exc, 'strerror', None) or exc}); "
                         "pass a readable UTF-8 .json or .yaml file") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"config file {path} is not valid JSON (line {exc.lineno}: "
                             f"{exc.msg}); fix it") from None
        except RecursionError:
            raise _too_deep(path) from None
    else:
        import yaml

        try:
            _check_yaml_events(path, yaml.parse(text, Loader=yaml.SafeLoader))
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark is not None else ""
            raise UsageError(f"config file {path} is not valid YAML ({where}"
                             f"{getattr(exc, 'problem', None) or 'parse error'}); fix it") from None
    if _depth(data) > MAX_CONFIG_DEPTH:
        raise _too_deep(path)
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping of flag names to values (e.g. "
                         f'{{"learning_rate": 0.1}}), not {type(data).__name__}')
    return data


def _check_yaml_events(path: str, events) -> None:
    """Refuse YAML aliases and deep nesting while reading the events, before anything expands."""
    import yaml

    depth = 0
    for event in events:
        if isinstance(event, yaml.AliasEvent):
            raise UsageError(f"config file {path} uses a YAML alias (*{event.anchor}, line "
                             f"{event.start_mark.line + 1}); write the value out instead")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_CONFIG_DEPTH:
                raise _too_deep(path)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _too_deep(path: str) -> UsageError:
    return UsageError(f"config file {path} is nested more than {MAX_CONFIG_DEPTH} levels deep; a "
                      "file of flags maps names to values")


def _depth(value: Any, limit: int = MAX_CONFIG_DEPTH + 1) -> int:
    """How deep lists and mappings nest in ``value`` (counting stops past ``limit``)."""
    if limit <= 0 or not isinstance(value, dict | list):
        return 0
    items = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(v, limit - 1) for v in items), default=0)


def twins(*names: str) -> list[str]:
    """Each flag name and its ``-``/``_`` twin (the image CLI takes both spellings)."""
    return list(dict.fromkeys(f for n in names for f in (n, "--" + n[2:].replace("_", "-"),
                                                         "--" + n[2:].replace("-", "_"))))


def whole_number(text: str) -> int:
    """An epoch count; '3.0' (the original GLUE script's float flags) is accepted, '3.5' is not."""
    value = real(text)
    if value != int(value):
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of epochs")
    return integer(str(int(value)))


def check_number(name: str, value: float | None, *, low: float | None = None,
                 high: float | None = None, strict: bool = False) -> None:
    """Refuse a value of setting ``name`` (written as the CLI's flag) that is not finite or lies
    outside [low, high] ((low, high] if ``strict``); None (not given) passes."""
    if value is None:
        return
    too_low = low is not None and (value <= low if strict else value < low)
    if not math.isfinite(value) or too_low or (high is not None and value > high):
        lo = "" if low is None else "positive" if strict and low == 0 else \
            f"{'>' if strict else '>='} {_num(low)}"
        hi = "" if high is None else f"<= {_num(high)}"
        bounds = " and ".join(b for b in (lo, hi) if b) or "finite"
        raise UsageError(f"{setting(name)} must be {bounds}, got {_num(value)}")


def _num(value: float) -> str:
    """A number as a user wrote it: whole numbers in full, others in %g."""
    return str(int(value)) if math.isfinite(value) and value == int(value) and abs(value) < 1e16 \
        else f"{value:g}"


def check_folder(flag: str, value: str | None) -> None:
    """Refuse a folder the run will write into that is not writable or cannot be created (nothing
    is created here)."""
    if not value:
        return
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {value} is a file; pass a folder")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{flag} {value} cannot be created ({probe} is a file); pass a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {value} is not writable ({probe}: no permission); pass a "
                         "writable folder")
