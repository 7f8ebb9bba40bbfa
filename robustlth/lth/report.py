"""Tables, plots and the headline numbers of `robustlth lth`: per network, the early-stopping iteration and the
test accuracy there against the percentage of weights remaining, ticket against controls, mean ± std over
seeds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..plotting import pyplot, save_figure
from ..runs import atomic_write_json, atomic_write_text

ARM_ORDER = ("ticket", "reinit", "random", "transfer", "transfer_reinit")
FOCUS = (10.0, 20.0)  # the paper's claim is about tickets of 10-20 % of the weights


def mean_std(values) -> tuple[float, float]:
    v = np.asarray(list(values), dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def fmt(values, digits: int = 3) -> str:
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if digits else f"{m:.0f} ± {s:.0f}"


def with_dense_start(df: pd.DataFrame) -> pd.DataFrame:
    """Every control's curve starts at the dense network (round 0 of the ticket arm); transfer arms have
    their own dense run."""
    dense = df[(df["round"] == 0) & (df["arm"] == "ticket")]
    extra = [dense.assign(arm=arm) for arm in ("reinit", "random") if arm in set(df["arm"])]
    transfer_dense = df[(df["round"] == 0) & (df["arm"] == "transfer")]
    extra += [transfer_dense.assign(arm="transfer_reinit")] if "transfer_reinit" in set(df["arm"]) else []
    return pd.concat([df, *extra], ignore_index=True)


def focus_round(df: pd.DataFrame) -> int:
    """The pruned round whose ticket has the share of weights nearest 15 % (the paper's 10-20 % range)."""
    t = df[(df["arm"] == "ticket") & (df["round"] > 0)].groupby("round")["remaining_pct"].mean()
    return int((t - sum(FOCUS) / 2).abs().idxmin())


def headline(df: pd.DataFrame) -> dict:
    """Per network at the focus round: ticket vs each control and vs dense, paired by seed."""
    out = {}
    for model, d in df.groupby("model", sort=False):
        if d["round"].max() == 0:
            continue
        r = focus_round(d)
        at = d[d["round"] == r].set_index(["arm", "seed"])
        dense = d[(d["round"] == 0) & (d["arm"] == "ticket")].set_index("seed")
        ticket = at.loc["ticket"]
        h = {"round": r, "remaining_pct": float(ticket["remaining_pct"].mean()),
             "in_paper_range": bool(FOCUS[0] <= ticket["remaining_pct"].mean() <= FOCUS[1]),
             "ticket_early_stop": mean_std(ticket["early_stop_iteration"]),
             "ticket_test_acc": mean_std(ticket["test_acc"]),
             "dense_early_stop": mean_std(dense["early_stop_iteration"]),
             "dense_test_acc": mean_std(dense["test_acc"])}
        refs = {"dense": dense, **{arm: at.loc[arm] for arm in ("reinit", "random") if arm in at.index}}
        for name, ref in refs.items():
            seeds = ticket.index.intersection(ref.index)
            h[f"vs_{name}"] = {
                "early_stop_ratio": mean_std(ref.loc[seeds, "early_stop_iteration"]
                                             / ticket.loc[seeds, "early_stop_iteration"]),
                "test_acc_diff": mean_std(ticket.loc[seeds, "test_acc"] - ref.loc[seeds, "test_acc"])}
        out[model] = h
    return out


def round_table(df: pd.DataFrame, model: str, columns: dict[str, int]) -> str:
    """Markdown: one row per round, for each arm and column (name -> digits) mean ± std over seeds."""
    d = df[df["model"] == model]
    arms = [a for a in ARM_ORDER if a in set(d["arm"])]
    heads = [f"{a}: {c.replace('_', ' ')}" for a in arms for c in columns]
    lines = ["| round | % weights | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(heads)]
    for r, g in d.groupby("round"):
        cells = []
        for a in arms:
            x = g[g["arm"] == a]
            cells += [fmt(x[c], digits) if len(x) else "" for c, digits in columns.items()]
        pct = g[g["arm"] == "ticket"]["remaining_pct"].mean()
        lines.append(f"| {r} | {pct:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(df: pd.DataFrame, column: str, ylabel: str, path: Path, title: str) -> str:
    plt = pyplot()
    models = list(dict.fromkeys(df["model"]))
    from matplotlib.ticker import FuncFormatter, NullFormatter
    fig, axes = plt.subplots(1, len(models), figsize=(max(6.0, 4.2 * len(models)), 3.8), squeeze=False)
    full = with_dense_start(df)
    for ax, model in zip(axes[0], models):
        d = full[full["model"] == model]
        for arm in [a for a in ARM_ORDER if a in set(d["arm"])]:
            g = d[d["arm"] == arm].groupby("round")
            x = g["remaining_pct"].mean()
            y, e = g[column].mean(), g[column].std(ddof=1).fillna(0)
            ax.errorbar(x, y, yerr=e, marker="o", ms=3, capsize=2, label=arm)
        if column == "early_stop_iteration":  # a run that never overfits stops "early" at its budget
            ax.axhline(d["iterations"].max(), color="grey", ls="--", lw=1, label="budget")
        ax.set_xscale("log")
        ax.set_xticks(sorted(set(d["remaining_pct"].round(1))))  # one tick per round: every point is labelled
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.invert_xaxis()
        ax.set_xlabel("% of weights remaining")
        ax.set_ylabel(ylabel)
        ax.set_title(model)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, axes=list(axes[0]), legend_size=7)


def write_report(results: dict, out_dir: Path) -> dict:
    """lth.csv, tables.md, the two plots (and the robust-accuracy one), summary.json; returns the summary."""
    out_dir = Path(out_dir)
    df = pd.DataFrame(results["rows"])
    atomic_write_text(out_dir / "lth.csv", df.to_csv(index=False))
    summary = headline(df)
    n_seeds = df["seed"].nunique()
    figures = [plot_curves(df, "early_stop_iteration", "early-stopping iteration", out_dir / "lth_early_stop.png",
                           f"Early-stopping iteration (min. validation loss), mean ± std over {n_seeds} seeds"),
               plot_curves(df, "test_acc", "test accuracy at early stop", out_dir / "lth_accuracy.png",
                           f"Test accuracy at the early-stopping iteration, mean ± std over {n_seeds} seeds")]
    robust = [c for c in df.columns if c.startswith("pgd_acc_eps")]
    for c in robust:
        figures.append(plot_curves(df, c, f"PGD-{results['config']['lth']['robust_steps']} accuracy",
                                   out_dir / f"lth_{c}.png", f"Robust accuracy (ε = {c[len('pgd_acc_eps'):]}/255) "
                                                             f"of naturally trained networks at early stop, {results['config']['lth']['robust_n']} test "
                                                             f"images, mean ± std over {n_seeds} seeds"))
    parts = ["# LTH on Conv-2/4/6: early-stopping iteration and accuracy by round", ""]
    for model in dict.fromkeys(df["model"]):
        parts += [f"## {model}", "", round_table(df, model, {"early_stop_iteration": 0, "test_acc": 3}), ""]
        if robust:
            parts += [round_table(df, model, {c: 3 for c in robust}), ""]
    atomic_write_text(out_dir / "tables.md", "\n".join(parts))
    summary = {"headline": summary, "figures": figures}
    atomic_write_json(out_dir / "summary.json", summary)
    atomic_write_json(out_dir / "results.json", {**results, "summary": summary})
    return summary
