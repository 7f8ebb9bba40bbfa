"""The cost-robustness frontier: every arm's total wall-clock (search included, evaluation excluded) against its
robustness, averaged over runs (seeds), which arms are on the front, and the arm to pick for a given time budget.

Choices are made on validation data only: the front and the advice use each arm's last-epoch robustness on the
per-epoch evaluation split (the per-image worst case of PGD-20 and CW-20; PGD-20 for runs that measured no CW).
The final test-set numbers (the worst case over the final attacks, on the images every attack ran on) are
reported beside them and never choose anything. A run without a validation split makes no choice.

Noise decides the marks: walking the arms from the fastest, an arm joins the front only if it is more robust than
the front so far by more than one standard error of the paired difference (per image for one run, over seeds for
several); one within a standard error is "within noise of the front", one below it by more is dominated, and an
arm whose robustness is within one standard error of zero is never on the front.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from ..stats import binomial_se
from .metrics import arm_values, curve_metric, curve_metric_words, difference_entry, final_metrics

PARETO, NOISE, DOMINATED, NONE = "Pareto", "within noise of the front", "dominated", "no robustness"


def robust_key(results: dict) -> Optional[str]:
    """The final-metric name reported as the frontier's test robustness (None: no final evaluation)."""
    finals = [a["final"] for a in results["arms"].values() if a.get("final")]
    if not finals:
        return None
    limited = sorted(k for k in finals[0] if k.startswith("worst_case_first_"))
    return limited[0] if limited else "worst_case"


def _mean_se(values: list) -> tuple[Optional[float], Optional[float]]:
    """Mean and one standard error of the mean over runs (None with one run)."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None)


def _mean_sd(values: list) -> tuple[Optional[float], Optional[float]]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _choice_values(runs: list[dict]) -> tuple[Optional[str], dict[str, dict[int, dict]]]:
    """(the validation metric's name, arm -> run index -> its value entry with per-image flags)."""
    if any(r["arms"]["dense"]["eval_split"] != "val" for r in runs if "dense" in r["arms"]):
        return None, {}
    dense = next((r["arms"]["dense"] for r in runs if "dense" in r["arms"]), None)
    if dense is None or not dense.get("curve"):
        return None, {}
    key = curve_metric(dense["curve"])
    metric = f"last_val_{key}"
    out: dict[str, dict[int, dict]] = {}
    for i, r in enumerate(runs):
        eval_n = r["config"]["train"]["eval_n"]
        for name, arm in r["arms"].items():
            v = arm_values(arm, eval_n).get(metric)
            if v is not None:
                out.setdefault(name, {})[i] = v
    return key, out


def frontier_rows(runs: list[dict]) -> list[dict]:
    """One row per arm: mean total time and its standard error over runs, the validation robustness that chooses
    (with its standard error) and the test accuracies that are reported (with theirs), and the arm's mark."""
    key = robust_key(runs[0])
    val_key, val = _choice_values(runs)
    names = list(dict.fromkeys(name for r in runs for name in r["arms"]))
    rows = []
    for name in names:
        arms = [r["arms"][name] for r in runs if name in r["arms"]]
        finals = [final_metrics(a.get("final")) for a in arms]
        dense_macs = [r["arms"]["dense"].get("macs") for r in runs if name in r["arms"] and "dense" in r["arms"]]
        row = {"arm": name, "runs": len(arms)}
        row["total_s"], row["total_se_s"] = _mean_se([a["total_time"] for a in arms])
        row["total_sd_s"] = _mean_sd([a["total_time"] for a in arms])[1]
        row["total_cpu_s"], _ = _mean_se([a.get("total_cpu_time") for a in arms])
        row["search_s"], _ = _mean_se([a["search_time"] for a in arms])
        macs = arms[0].get("macs")
        row["macs_vs_dense"] = (macs / dense_macs[0]) if (macs and dense_macs and dense_macs[0]) else None
        entries = val.get(name, {})
        row["val_metric"] = val_key
        row["val_robust"], row["val_robust_se"] = _mean_se([v["value"] for v in entries.values()])
        row["val_n"] = next(iter(entries.values()))["n_images"] if entries else None
        if row["val_robust"] is not None and len(entries) == 1:
            row["val_robust_se"] = binomial_se(row["val_robust"], row["val_n"])
        for metric, col in (("clean", "clean"), ("pgd20", "pgd20"), ("autoattack", "autoattack"),
                            (key, "robust")):
            row[col], row[f"{col}_se"] = _mean_se([f.get(metric) for f in finals]) if metric else (None, None)
        row["robust_sd"] = _mean_sd([f.get(key) for f in finals])[1] if key else None
        row["robust_n"] = (int(key.rsplit("_", 1)[-1]) if key and key.startswith("worst_case_first_") else
                           (arms[0]["final"]["n"] if key and arms[0].get("final") else None))
        if row["robust"] is not None and len(arms) == 1:
            row["robust_se"] = binomial_se(row["robust"], row["robust_n"])
        ttt = [r["headline"]["time_to_target"].get(name) for r in runs if name in r["arms"]]
        row["time_to_target_s"], _ = _mean_se(ttt)
        row["reached_target"] = f"{sum(t is not None for t in ttt)}/{len(ttt)}"
        rows.append(row)
    mark_front(rows, val)
    return rows


def mark_front(rows: list[dict], val: Optional[dict] = None, acc: str = "val_robust") -> None:
    """Each row's `front` (Pareto, within noise of the front, dominated, no robustness; None: no choice made) and
    `pareto` (on the front), from `acc` and the total time only, walking from the fastest arm. `val` (arm -> run
    -> value entry) gives the paired differences' standard errors; without it the arms' own standard errors
    (`acc`_se) combine as independent ones."""
    val = val or {}
    chosen = sorted((r for r in rows if r.get(acc) is not None), key=lambda r: (r["total_s"], -r[acc]))
    for r in rows:
        r["front"], r["pareto"], r["vs_front_se"] = None, False, None
    front: list[dict] = []
    for r in chosen:
        own = r.get(f"{acc}_se") or 0.0
        if r[acc] - own <= 0:
            r["front"] = NONE
            continue
        if not front:
            r["front"], r["pareto"] = PARETO, True
            front.append(r)
            continue
        best = max(front, key=lambda f: f[acc])
        se = _difference_se(r, best, val, acc)
        diff = r[acc] - best[acc]
        r["vs_front_se"] = se
        if diff > se:
            r["front"], r["pareto"] = PARETO, True
            front.append(r)
        elif diff >= -se:
            r["front"] = NOISE
        else:
            r["front"] = DOMINATED


def _difference_se(r: dict, best: dict, val: dict, acc: str) -> float:
    a, b = val.get(r["arm"]), val.get(best["arm"])
    if a and b:
        se = difference_entry(a, b).se
        if not math.isnan(se):
            return se
    return math.sqrt((r.get(f"{acc}_se") or 0.0) ** 2 + (best.get(f"{acc}_se") or 0.0) ** 2)


def budget_advice(rows: list[dict], acc: str = "val_robust") -> list[str]:
    """For each range of time budgets, the arm to pick: the most robust on validation of the front arms that
    finish within it, with the arms within noise of it named (they are as good as far as the data can tell)."""
    front = sorted((r for r in rows if r.get("pareto")), key=lambda r: r["total_s"])
    if not front:
        return ["- No choice: no arm has a validation robustness above its noise (or there is no validation split)."]
    lines = [f"- under {front[0]['total_s']:.1f} s: no arm finishes"]
    noise = [r for r in rows if r.get("front") == NOISE]
    for i, r in enumerate(front):
        upto = front[i + 1]["total_s"] if i + 1 < len(front) else None
        close = [o["arm"] for o in noise if o["total_s"] >= r["total_s"] and (upto is None or o["total_s"] < upto)]
        se = r.get(f"{acc}_se")
        lines.append(f"- {r['total_s']:.1f} s " + (f"to under {upto:.1f} s" if upto is not None else "or more")
                     + f": **{r['arm']}** (validation {r[acc]:.4f}" + (f" ± {se:.4f} s.e." if se else "") + ")"
                     + (f"; within noise of it, not distinguishably more robust for their extra time: "
                        f"{', '.join(close)}" if close else ""))
    return lines


def plot_frontier(rows: list[dict], path: Path, label: str, val_label: str, n_runs: int) -> str:
    """Two panels, each arm in its colour and marker of every figure: validation robustness (which chooses, with
    the front drawn) and test robustness (reported), both against total time, y from 0, bars ± one standard error
    (over runs, or binomial of the evaluation set for one run). Marker fill says the arm's mark: filled and large on
    the front, open and large within noise of it, small when dominated, a cross with no robustness."""
    from ..plotting import arm_label, arm_style, error_bars, from_zero, pyplot, save_figure
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharex=True)
    bars = "± one s.e. over runs" if n_runs > 1 else "± one binomial s.e. of the evaluation set"
    for i, r in enumerate(rows):
        st = arm_style(r["arm"], i)
        mark = r.get("front")
        kw = {"color": st["color"], "marker": st["marker"], "ls": "none", "capsize": 2,
              "ms": 11 if mark in (PARETO, NOISE) else 6,
              "markerfacecolor": "none" if mark in (NOISE, NONE) else st["color"],
              "markeredgewidth": 1.5 if mark == PARETO else 1.0,
              "markeredgecolor": "black" if mark == PARETO else st["color"]}
        name = arm_label(r["arm"]) + (f": {mark}" if mark else "")
        for ax, col in zip(axes, ("val_robust", "robust")):
            if r.get(col) is None:
                continue
            error_bars(ax, [r["total_s"]], [r[col]], [r.get(f"{col}_se") or float("nan")], label=name, **kw)
            if r.get("total_se_s"):
                ax.errorbar([r["total_s"]], [r[col]], xerr=[r["total_se_s"]], color=st["color"], ls="none", lw=0.8)
    front = sorted((r for r in rows if r.get("pareto")), key=lambda r: r["total_s"])
    if front:
        axes[0].step([r["total_s"] for r in front], [r["val_robust"] for r in front], where="post", color="grey",
                     lw=0.8)
    import textwrap
    axes[0].set_title("\n".join(["Validation: chooses the front"] + textwrap.wrap(val_label, 52)), fontsize=9)
    axes[1].set_title("\n".join(["Test: reported, never chooses"] + textwrap.wrap(label, 52)), fontsize=9)
    right = 1.08 * max((r["total_s"] + (r.get("total_se_s") or 0) for r in rows), default=1.0)
    for ax in axes:
        ax.set_xlabel("total wall-clock seconds (search + training)")
        ax.set_ylabel("robust accuracy")
        ax.set_xlim(0, right)
    fig.suptitle(f"Cost-robustness frontier; bars {bars}", fontsize=9)
    from_zero(*axes)
    top = max(ax.get_ylim()[1] for ax in axes)
    for ax in axes:
        ax.set_ylim(0, top)
    return save_figure(fig, path, list(axes), legend="outside")


def frontier_section(runs: list[dict], out_dir: Path, render_table: Callable[[pd.DataFrame], str],
                     name: str = "frontier") -> list[str]:
    """Markdown lines of the frontier (table via `render_table`, plot, budget advice); writes NAME.csv and
    NAME.png into `out_dir`."""
    from ..runs import atomic_write_text
    key = robust_key(runs[0])
    rows = frontier_rows(runs)
    if key is None:
        return ["## Cost-robustness frontier", "", "No final evaluation: no frontier.", ""]
    k = key.rsplit("_", 1)[-1]
    label = {"worst_case": "worst case over the final attacks"}.get(
        key, f"worst case over the final attacks, first {k} test images (where every attack ran)")
    val_key = rows[0].get("val_metric")
    n_val = next((r["val_n"] for r in rows if r.get("val_n")), None)
    val_label = (f"last-epoch {curve_metric_words(val_key)}, validation set ({n_val} images)" if val_key
                 else "no validation split: no choice made")
    df = pd.DataFrame(rows)
    atomic_write_text(Path(out_dir) / f"{name}.csv", df.to_csv(index=False))
    png = plot_frontier(rows, Path(out_dir) / f"{name}.png", f"test {label}", val_label, len(runs))
    cols = ["arm", "runs", "total_s", "total_se_s", "total_cpu_s", "search_s", "macs_vs_dense", "val_robust",
            "val_robust_se", "clean", "pgd20", "autoattack", "robust", "robust_se", "robust_n", "time_to_target_s",
            "reached_target", "front"]
    spread = "standard error over the runs" if len(runs) > 1 else "one binomial standard error of the evaluation set"
    return ["## Cost-robustness frontier", "",
            f"Total wall-clock (search included, evaluation excluded) against robustness; means over {len(runs)} "
            f"run(s), `_se`: {spread}. **Chosen on validation data only**: `val_robust` = {val_label}; the front "
            "walks the arms from the fastest, and an arm joins it only when it is more robust than the front so far "
            "by more than one standard error of the paired difference (`within noise of the front`: not more robust "
            "by more than that, nor less; `no robustness`: within one standard error of 0). **Reported, never "
            f"used to choose**: `robust` = test {label} (n = `robust_n`); `clean`, `pgd20`, `autoattack`: test. "
            "`macs_vs_dense`: multiply-accumulates per image (an unstructured ticket still computes its zeros).",
            "", render_table(df[[c for c in cols if c in df]].assign(
                front=df["front"].map(lambda v: f"**{v}**" if v == PARETO else (v or "—")))), "",
            *target_lines(rows), "",
            "Which arm to pick for a time budget (the front arm most robust on validation that finishes within it):",
            "", *budget_advice(rows), "", f"![{png}]({png})", ""]


def target_lines(rows: list[dict]) -> list[str]:
    """Which arms reach the dense run's final validation robustness (minus the tolerance) sooner than the dense
    run."""
    dense = next((r for r in rows if r["arm"] == "dense"), None)
    if dense is None or dense["time_to_target_s"] is None:
        return ["Time to target: the dense run never reached its own target."]
    faster = [f"{r['arm']} ({r['time_to_target_s']:.1f} s, {r['reached_target']} runs)" for r in rows
              if r["arm"] != "dense" and r["time_to_target_s"] is not None
              and r["time_to_target_s"] < dense["time_to_target_s"]]
    return [f"Time to target (dense final validation robustness minus the tolerance, search included): the dense run "
            f"took {dense['time_to_target_s']:.1f} s ({dense['reached_target']} runs); "
            + (f"sooner: {', '.join(faster)}." if faster else "no other arm got there sooner.")
            + " (Averaged over the runs that reached it; `reached_target`: how many did. On a validation set of a "
              "few hundred images one epoch's robustness moves by a few points, so a single crossing is noisy.)"]
