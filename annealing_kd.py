"""The import name of this checkout's packages: ``annealing_kd.common``, ``annealing_kd.computer_vision_tasks``
and ``annealing_kd.NLP_glue_tasks`` are the folders beside this file. An installed project maps them the
same way (pyproject.toml's package-dir); this file does it for a checkout that is not installed."""

__path__ = [__import__("os").path.dirname(__file__)]
