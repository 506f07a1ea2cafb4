"""Distillation methods, one small module each; importing this package registers them all.

A new method is one file: ``register(Method(name, (Step(...), ...), summary))`` (see base.py);
both CLIs offer it as ``--method name`` once the module is imported.
"""

from common import objectives  # noqa: F401  (the objectives the methods name)
from common.methods import annealing, kd, scratch, takd  # noqa: F401  (each registers itself)
from common.methods.base import (  # noqa: F401
    METHODS,
    ROLES,
    TEACHER_STEP,
    Method,
    Step,
    get_method,
    method_names,
    register,
)
from common.methods.run import plan, run_method, steps_of, table  # noqa: F401
