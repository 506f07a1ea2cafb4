"""A run's curves.png: Phi(T) and the eval metric per epoch, phase boundaries marked."""

from __future__ import annotations

from typing import Any

from ..run_folder import RunDir

CURVES = "curves.png"


def plot_curves(run: RunDir, records: list[dict[str, Any]], metric: str, title: str = "") -> None:
    """curves.png: Phi and the eval metric per epoch, phase boundaries marked."""
    if not run.is_main or not records:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = list(range(1, len(records) + 1))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(x, [r.get("eval", {}).get(metric) for r in records], "o-", color="tab:blue",
            ms=3, label=f"eval {metric}")
    ax.set(xlabel="epoch (all phases)", ylabel=metric, title=title)
    ax2 = ax.twinx()
    ax2.step(x, [r["phi"] if r.get("phi") is not None else float("nan") for r in records],
             where="mid", color="tab:orange", label="Phi(T)")
    ax2.set(ylabel="Phi(T)", ylim=(0, 1.05))
    for i, r in enumerate(records):
        if i > 0 and r["phase"] != records[i - 1]["phase"]:
            ax.axvline(i + 0.5, color="grey", ls="--", lw=1)
        if i == 0 or r["phase"] != records[i - 1]["phase"]:
            ax.annotate(r["phase"], (i + 1, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(2, -12), textcoords="offset points", fontsize=8)
    (h1, l1), (h2, l2) = ax.get_legend_handles_labels(), ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower right")
    fig.tight_layout()
    run.write(CURVES, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
