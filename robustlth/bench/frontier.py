"""The cost-robustness frontier: every arm's total wall-clock (search included, evaluation excluded) against
its final test-set robustness, averaged over runs (seeds), with the Pareto-optimal arms marked and the arm to
pick for a given time budget.

Robustness is the per-sample worst case over the final attacks; when AutoAttack ran only on the first K
images, the worst case over those K (where every attack ran) is used, since it is the strongest estimate.
"""
from __future__ import annotations

import statistics
import textwrap
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from .metrics import final_metrics


def robust_key(results: dict) -> Optional[str]:
    """The final-metric name used as the frontier's robustness (None: no final evaluation)."""
    finals = [a["final"] for a in results["arms"].values() if a.get("final")]
    if not finals:
        return None
    limited = sorted(k for k in finals[0] if k.startswith("worst_case_first_"))
    return limited[0] if limited else "worst_case"


def _mean_sd(values: list) -> tuple[Optional[float], Optional[float]]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def frontier_rows(runs: list[dict]) -> list[dict]:
    """One row per arm: means (and standard deviations across runs) of total time and accuracies."""
    key = robust_key(runs[0])
    names = list(dict.fromkeys(name for r in runs for name in r["arms"]))
    rows = []
    for name in names:
        arms = [r["arms"][name] for r in runs if name in r["arms"]]
        finals = [final_metrics(a.get("final")) for a in arms]
        dense_macs = [r["arms"]["dense"].get("macs") for r in runs if name in r["arms"]]
        row = {"arm": name, "runs": len(arms)}
        row["total_s"], row["total_sd_s"] = _mean_sd([a["total_time"] for a in arms])
        row["search_s"], _ = _mean_sd([a["search_time"] for a in arms])
        macs = arms[0].get("macs")
        row["macs_vs_dense"] = (macs / dense_macs[0]) if (macs and dense_macs[0]) else None
        for metric, col in (("clean", "clean"), ("pgd20", "pgd20"), ("autoattack", "autoattack"),
                            (key, "robust")):
            row[col], row[f"{col}_sd"] = _mean_sd([f.get(metric) for f in finals]) if metric else (None, None)
        ttt = [r["headline"]["time_to_target"].get(name) for r in runs if name in r["arms"]]
        row["time_to_target_s"], _ = _mean_sd(ttt)
        row["reached_target"] = f"{sum(t is not None for t in ttt)}/{len(ttt)}"
        rows.append(row)
    mark_pareto(rows)
    return rows


def mark_pareto(rows: list[dict], acc: str = "robust") -> None:
    """An arm is Pareto-optimal when no other arm is at least as fast and at least as robust, and strictly
    better in one of the two."""
    for r in rows:
        if r[acc] is None:
            r["pareto"] = False
            continue
        r["pareto"] = not any(o is not r and o[acc] is not None and o["total_s"] <= r["total_s"]
                              and o[acc] >= r[acc] and (o["total_s"] < r["total_s"] or o[acc] > r[acc])
                              for o in rows)


def budget_advice(rows: list[dict], acc: str = "robust") -> list[str]:
    """For each range of time budgets, the most robust arm that finishes within it (a Pareto arm)."""
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["total_s"])
    lines = []
    for i, r in enumerate(front):
        upto = f"to under {front[i + 1]['total_s']:.1f} s" if i + 1 < len(front) else "or more"
        lines.append(f"- {r['total_s']:.1f} s {upto}: **{r['arm']}** ({acc} {r[acc]:.4f}"
                     + (f" ± {r[f'{acc}_sd']:.4f}" if r.get(f"{acc}_sd") is not None else "") + ")")
    if front:
        lines.insert(0, f"- under {front[0]['total_s']:.1f} s: no arm finishes")
    return lines


def plot_frontier(rows: list[dict], path: Path, label: str) -> str:
    from ..plotting import pyplot, save_figure
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    pts = [r for r in rows if r["robust"] is not None]
    for r in pts:
        ax.errorbar(r["total_s"], r["robust"], xerr=r["total_sd_s"], yerr=r["robust_sd"],
                    marker="*" if r["pareto"] else "o", ms=11 if r["pareto"] else 6, capsize=2, ls="none",
                    label=r["arm"] + (" (Pareto)" if r["pareto"] else ""))
    front = sorted((r for r in pts if r["pareto"]), key=lambda r: r["total_s"])
    ax.step([r["total_s"] for r in front], [r["robust"] for r in front], where="post", color="grey", lw=0.8)
    ax.set_xlabel("total wall-clock seconds (search + training)")
    ax.set_ylabel("\n".join(textwrap.wrap(label + "; bars: sd across runs", 48)), fontsize=9)
    return save_figure(fig, path, [ax])


def frontier_section(runs: list[dict], out_dir: Path, render_table: Callable[[pd.DataFrame], str],
                     name: str = "frontier") -> list[str]:
    """Markdown lines of the frontier (table via `render_table`, plot, budget advice); writes NAME.csv and
    NAME.png into `out_dir`."""
    from ..runs import atomic_write_text
    key = robust_key(runs[0])
    rows = frontier_rows(runs)
    if key is None:
        return ["## Cost-robustness frontier", "", "No final evaluation: no frontier.", ""]
    label = {"worst_case": "worst case over the final attacks"}.get(
        key, f"worst case over the final attacks, first {key.rsplit('_', 1)[-1]} test images (AutoAttack's)")
    df = pd.DataFrame(rows)
    atomic_write_text(Path(out_dir) / f"{name}.csv", df.to_csv(index=False))
    png = plot_frontier(rows, Path(out_dir) / f"{name}.png", f"robust accuracy ({label})")
    cols = ["arm", "runs", "total_s", "total_sd_s", "search_s", "macs_vs_dense", "clean", "pgd20", "autoattack",
            "robust", "robust_sd", "time_to_target_s", "reached_target", "pareto"]
    return ["## Cost-robustness frontier", "",
            f"Total wall-clock (search included, evaluation excluded) against final test-set robustness; "
            f"`robust` = {label}; means over {len(runs)} run(s) (`sd`: standard deviation across runs); "
            "`macs_vs_dense`: multiply-accumulates per image (an unstructured ticket still computes its zeros).",
            "", render_table(df[cols].assign(pareto=df["pareto"].map({True: "**yes**", False: ""}))), "",
            *target_lines(rows), "",
            "Which arm to pick for a time budget (the most robust arm that finishes within it):", "",
            *budget_advice(rows), "", f"![{png}]({png})", ""]


def target_lines(rows: list[dict]) -> list[str]:
    """Which arms reach the dense run's final validation PGD-20 (minus the tolerance) sooner than the dense run."""
    dense = next((r for r in rows if r["arm"] == "dense"), None)
    if dense is None or dense["time_to_target_s"] is None:
        return ["Time to target: the dense run never reached its own target."]
    faster = [f"{r['arm']} ({r['time_to_target_s']:.1f} s, {r['reached_target']} runs)" for r in rows
              if r["arm"] != "dense" and r["time_to_target_s"] is not None
              and r["time_to_target_s"] < dense["time_to_target_s"]]
    return [f"Time to target (dense final validation PGD-20 minus the tolerance, search included): the dense run "
            f"took {dense['time_to_target_s']:.1f} s ({dense['reached_target']} runs); "
            + (f"sooner: {', '.join(faster)}." if faster else "no other arm got there sooner.")
            + " (Averaged over the runs that reached it; `reached_target`: how many did.)"]
