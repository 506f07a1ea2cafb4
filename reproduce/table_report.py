"""What run_table reports from a finished run's results.json: two figures per run, the per-epoch
curves, and the tests between rows (paired over the seeds both rows have, Welch beside them).

Figures (percent):

* ``selected``: the figure of the run's protocol. Image runs selected on held-out images: the test
  accuracy of the selected epoch. Image runs with ``--val-size 0`` (the paper's protocol, every
  epoch evaluated on test): the best test epoch of the student's last phase, as the original
  reports it (Annealing-KD: the best phase-2 epoch; its phase-1-only variant: phase 1). GLUE: the
  dev metric of the best dev epoch.
* ``last``: the unselected last epoch (test for image runs, dev for GLUE).

Runs written by older versions (no ``selected_on``, no manifest) are read the same way.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reproduce.stats import ALPHA, mean_std, paired, welch

FIGURES = ("selected", "last")


@dataclass(frozen=True)
class Protocol:
    """How a table's runs select their epoch, and the header labels of its two figures."""

    name: str
    labels: dict[str, str]
    legend: str


PROTOCOLS = {
    "paper": Protocol("paper", {"selected": "best test epoch", "last": "last epoch"},
                      "the paper's protocol: every row trains on the whole training set "
                      "(`--val-size 0`, nothing held out) and is evaluated on test every epoch. "
                      "**best test epoch**: the paper's figure, the best test accuracy over the "
                      "epochs of the student's last phase, as the original code reports it "
                      "(Annealing-KD: the best phase-2 epoch; selected on test, so optimistic). "
                      "**last epoch**: the test accuracy of the last epoch, unselected."),
    "heldout": Protocol("heldout", {"selected": "selected epoch", "last": "last epoch"},
                        "held-out protocol: every run selects its epoch on images held out of its "
                        "training set (`--val-size`). **selected epoch**: the test accuracy of "
                        "that epoch. **last epoch**: the test accuracy of the last epoch, "
                        "unselected."),
    "dev": Protocol("dev", {"selected": "best dev epoch", "last": "last epoch"},
                    "GLUE protocol (as the paper): dev selects the epoch and is reported. "
                    "**best dev epoch**: the dev metric of the epoch the CLI selects. "
                    "**last epoch**: the dev metric of the last epoch, unselected."),
}


# ---- one run -------------------------------------------------------------------------------------
def _student_records(records: list[dict]) -> list[dict]:
    """The epoch records of the student's last phase (the assistant of TAKD, the teacher of a
    combined run and Annealing-KD's phase 1 when a phase 2 ran are left out)."""
    last = records[-1]["phase"] if records else None
    return [r for r in records if r["phase"] == last]


def figures(results: dict, cli: str) -> dict[str, float]:
    """The run's figures in percent (see the module docstring); a figure the run does not
    record is absent."""
    final = results["final"]
    metrics, records = final["metrics"], results.get("epochs") or []
    out: dict[str, float] = {}
    if cli == "glue":
        key = "pearson" if "pearson" in metrics else final["selected_by"]
        out["selected"] = metrics[key]
        if records and key in records[-1]["eval"]:
            out["last"] = records[-1]["eval"][key]
        return {k: 100.0 * float(v) for k, v in out.items()}
    key = next(k for k in ("test_accuracy", "val_accuracy", "accuracy", final["selected_by"])
               if k in metrics)
    out["selected"] = metrics[key]
    student = [r["eval"][key] for r in _student_records(records) if key in r["eval"]]
    if final.get("selected_on") == key.split("_")[0] and student:  # evaluated on test every epoch
        out["selected"] = max(student)
    if f"last_epoch_{key}" in metrics:
        out["last"] = metrics[f"last_epoch_{key}"]
    elif records and key in records[-1]["eval"]:
        out["last"] = records[-1]["eval"][key]
    return {k: 100.0 * float(v) for k, v in out.items()}


def curve(results: dict) -> list[dict]:
    """Per epoch, in order over the phases: {phase, value (percent), lr} of the selection metric
    (the teacher's own phase of a combined run included, as recorded)."""
    final = results.get("final") or {}
    key = final.get("selected_by")
    out = []
    for r in results.get("epochs") or []:
        value = r["eval"].get(key, next(iter(r["eval"].values()), None)) if r.get("eval") else None
        out.append({"phase": r["phase"], "value": None if value is None else 100.0 * float(value),
                    "lr": r.get("lr")})
    return out


def mean_curve(curves: Sequence[list[dict]]) -> dict:
    """Mean over seeds, epoch by epoch (over the epochs every run has): {value, lr, boundaries}
    with boundaries the epoch indices where a new phase starts (from the first run)."""
    n = min((len(c) for c in curves), default=0)
    values = [statistics.fmean(v) if (v := [c[i]["value"] for c in curves
                                            if c[i]["value"] is not None]) else None
              for i in range(n)]
    lrs = [curves[0][i]["lr"] for i in range(n)]
    phases = [curves[0][i]["phase"] for i in range(n)]
    bounds = [i for i in range(1, n) if phases[i] != phases[i - 1]]
    return {"value": values, "lr": lrs, "phases": phases, "boundaries": bounds,
            "seeds": len(curves)}


# ---- between rows --------------------------------------------------------------------------------
def compare(a: dict[int, float], b: dict[int, float]) -> dict:
    """Row a against row b (seed -> value): the paired test over the seeds both have, Welch's
    over all of each. Values are rounded to 1e-6 points first (float32 accuracies in percent:
    equal per-seed differences must not differ in their last bits and give a spurious t)."""
    a, b = ({s: round(v, 6) for s, v in x.items()} for x in (a, b))
    common = sorted(set(a) & set(b))
    p = paired([a[s] for s in common], [b[s] for s in common]) if common else None
    w = welch(list(a.values()), list(b.values())) if a and b else None
    return {"pairs": len(common), "paired": p, "welch": w}


def _p(test: dict | None, alpha: float) -> str:
    if test is None or math.isnan(test["p"]):
        return "–"
    return f"{test['p']:.3f}{'*' if test['p'] < alpha else ''}"


def _diff(test: dict | None) -> str:
    return "–" if test is None or math.isnan(test["diff"]) else f"{test['diff']:+.2f}"


def comparison_lines(rows: Sequence[str], refs: Sequence[str], columns: Sequence[str], values: dict,
               label: str, alpha: float = ALPHA) -> tuple[list[str], list[dict]]:
    """A table of every row against each reference row in one figure (values: row -> column ->
    seed -> value), and the same as records for the report's json."""
    lines = [f"**{label}**: differences in percentage points (row minus reference). Paired: "
             "`scipy.stats.ttest_rel` over the seeds both rows have (the mean of the per-seed "
             "differences); Welch: `scipy.stats.ttest_ind(equal_var=False)` over all runs of "
             f"each. Two-sided; * marks p < {alpha}.", "",
             "| row | column | vs | pairs | diff (paired) | p (paired) | diff (Welch) | p (Welch) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    records = []
    for row in rows:
        for c in columns:
            for ref in refs:
                a, b = values.get(row, {}).get(c, {}), values.get(ref, {}).get(c, {})
                mirror = row in refs and refs.index(row) < refs.index(ref)  # listed as ref vs row
                if ref == row or mirror or not a or not b:
                    continue
                t = compare(a, b)
                records.append({"row": row, "column": c, "vs": ref, **t})
                lines.append(f"| {row} | {c} | {ref} | {t['pairs']} | {_diff(t['paired'])} | "
                             f"{_p(t['paired'], alpha)} | {_diff(t['welch'])} | "
                             f"{_p(t['welch'], alpha)} |")
    return ([*lines, ""] if records else []), records


def fmt(values: dict[int, float], seeds: int) -> str:
    """mean ± sample std, with n when fewer runs than seeds finished."""
    if not values:
        return "–"
    mean, std = mean_std(list(values.values()))
    text = f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")
    return text + (f" (n={len(values)})" if len(values) != seeds else "")


# ---- the curves chart ----------------------------------------------------------------------------
def plot_curves(curves: dict[str, dict[str, dict]], columns: Sequence[str], title: str,
                ylabel: str, path: Path | str) -> None:
    """Per column: the selection metric per epoch (mean over seeds, one line per row, a dotted
    line where a row's next phase starts) above the learning rate per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in columns if any(c in by for by in curves.values())]
    fig, axes = plt.subplots(2, max(1, len(cols)), figsize=(max(7.0, 5.5 * len(cols)), 7),
                             squeeze=False, sharex="col", gridspec_kw={"height_ratios": [3, 1]})
    for j, c in enumerate(cols):
        top, bottom = axes[0][j], axes[1][j]
        for i, (row, by) in enumerate(curves.items()):
            if c not in by:
                continue
            m, color = by[c], f"C{i % 10}"
            xs = range(1, len(m["value"]) + 1)
            top.plot(xs, [math.nan if v is None else v for v in m["value"]], color=color,
                     lw=1.4, label=f"{row} (n={m['seeds']})")
            bottom.plot(xs, [math.nan if v is None else v for v in m["lr"]], color=color, lw=1.2)
            for b in m["boundaries"]:
                for ax in (top, bottom):
                    ax.axvline(b + 0.5, color=color, ls=":", lw=1)
        top.set_title(c, fontsize=9)
        top.set_ylabel(ylabel)
        top.grid(alpha=0.3)
        bottom.set_yscale("log")
        bottom.set_ylabel("learning rate")
        bottom.set_xlabel("epoch (all phases in order; dotted: a phase starts)")
        top.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
