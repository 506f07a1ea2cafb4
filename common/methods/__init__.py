"""Distillation methods, one small module each; importing this package registers them all.

A new method is one file: ``register(Method(name, (PhasePlan(...), ...), summary))`` (see base.py);
both CLIs offer it as ``--method name`` once the module is imported.
"""

from . import annealing, kd, objectives, scratch, takd  # noqa: F401
from .base import (  # noqa: F401
    METHODS,
    ROLES,
    TEACHER_PHASE,
    Method,
    PhasePlan,
    get_method,
    method_names,
    register,
)
from .run import plan, run_method, steps_of, table  # noqa: F401
