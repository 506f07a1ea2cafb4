"""A distillation method: a few phases, each training the model of one role (``teacher``,
``assistant``, ``student``; each CLI builds, feeds, evaluates and saves them) with one objective."""

from __future__ import annotations

from dataclasses import dataclass

from ..cli import settings
from ..errors import UsageError

ROLES = ("teacher", "assistant", "student")  # the order of the end-of-run table


@dataclass(frozen=True)
class PhasePlan:
    """Train the ``model`` role with ``objective`` (``objectives.OBJECTIVES``) against the frozen
    ``teacher`` role (None: no targets) for the epoch budget ``epochs`` (default: the phase name;
    ``cli.settings.BUDGETS``), from the best weights of phase ``start`` (None: as it is). A
    ``skippable`` step may get 0 epochs: it is then left out."""

    phase: str
    model: str
    objective: str
    teacher: str | None = None
    epochs: str | None = None
    start: str | None = None
    skippable: bool = False

    @property
    def budget(self) -> str:
        return self.epochs or self.phase


@dataclass(frozen=True)
class Method:
    """A named sequence of steps. The final student is the best epoch of its ``student`` steps."""

    name: str
    steps: tuple[PhasePlan, ...]
    summary: str
    aliases: tuple[str, ...] = ()

    def uses(self, role: str) -> bool:
        return any(role in (s.model, s.teacher) for s in self.steps)

    @property
    def student_phases(self) -> list[str]:
        return [s.phase for s in self.steps if s.model == "student"]


# a teacher that is trained here (not given as a checkpoint) gets this phase first
TEACHER_PHASE = PhasePlan("teacher", "teacher", "task")

METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Make ``method`` (and its aliases) a ``--method`` choice of both CLIs."""
    for name in (method.name, *method.aliases):
        METHODS[name] = method
    return method


def method_names() -> list[str]:
    return sorted(METHODS)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}; choose one of {', '.join(method_names())}")
    return METHODS[name]


settings.register(settings.Setting(  # placed by each CLI in its own groups (settings.declare)
    "method", {"image": lambda: f"one of {', '.join(method_names())}",
               "text": "the distillation method (common/methods; scratch = finetune)"},
    "annealing", choices={"text": method_names}))
