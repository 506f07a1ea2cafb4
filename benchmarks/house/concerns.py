"""Product lines per concern, the same rules for the old flat layout and this one.

    python benchmarks/house/concerns.py .     # or an old checkout's folder
"""
import sys
from pathlib import Path

root = Path(sys.argv[1])
def concern(rel: str) -> str:
    name = rel.split("/")[-1]
    if rel.startswith("common/methods/") or name in ("schedule.py", "losses.py", "objectives.py"):
        return "algorithm (methods/)"
    if name in ("api.py", "hf_trainer.py") or rel == "common/__init__.py":
        return "public API (api, hf_trainer)"
    if rel.startswith("common/run_folder/") or name in ("checkpoint.py", "run_dir.py", "manifest.py",
            "run_lock.py", "fingerprint.py", "outputs.py", "errors.py"):
        return "run ownership (run_folder/, errors)"
    if rel.startswith("common/logit_cache/") or name in ("logit_cache.py", "epoch_logits.py",
            "teacher_cache.py", "frozen_teacher.py", "teacher.py"):
        return "teacher logits and caches"
    if rel.startswith("common/cli/") or name in ("cli.py", "own_args.py", "inputs.py", "settings.py",
            "cli_args.py", "quiet.py", "annealing_kd_train.py", "annealing_kd_glue.py"):
        return "CLI plumbing (cli/, settings)"
    if rel.startswith("common/integrations/") or name in ("tracking.py", "model_card.py", "stats.py"):
        return "reporting (integrations/)"
    if rel.startswith("common/"):
        return "training loop (training/)"
    return "data, models, pipelines (CLI folders)"
tot = {}
for p in root.glob("*/**/*.py"):
    rel = p.relative_to(root).as_posix()
    if rel.split("/")[0] in ("common", "computer_vision_tasks", "NLP_glue_tasks"):
        c = concern(rel)
        tot[c] = tot.get(c, 0) + len(p.read_text().splitlines())
for k, v in sorted(tot.items()):
    print(f"{v:6d}  {k}")
print(f"{sum(tot.values()):6d}  total")
