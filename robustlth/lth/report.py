"""Tables, plots and the headline numbers of `robustlth lth`: per network, the early-stopping iteration and the
test accuracy there against the percentage of weights remaining, ticket against controls, mean ± std over
seeds."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

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


LABELS = {"ticket": "IMP ticket (reset to θ0)", "reinit": "ticket mask, re-initialised",
          "random": "random mask, same layer sparsity", "transfer": "ticket, trained on the other half",
          "transfer_reinit": "its re-init, trained on the other half"}
CHANCE_FACTOR = 1.5  # a network whose test accuracy is below 1.5x chance did not train


def attackable(df: pd.DataFrame, column: str, n: int, classes: int = 10) -> pd.Series:
    """Rows whose robust accuracy `column` (on the first n test images) means something: the network trained (test
    accuracy at least CHANCE_FACTOR x chance) and the attack changed its predictions (its accuracy lies more than
    two binomial standard errors of n images below the clean test accuracy). A near-constant network predicts
    much the same class whatever the input, so no attack changes it and its "robust accuracy" is that class's
    share of the attacked images, which can even exceed its clean accuracy on the whole test set."""
    se = np.sqrt(df["test_acc"] * (1 - df["test_acc"]) / n)
    return (df["test_acc"] >= CHANCE_FACTOR / classes) & (df[column] < df["test_acc"] - 2 * se)


def plot_curves(df: pd.DataFrame, column: str, ylabel: str, path: Path, title: str,
                attacked_n: Optional[int] = None) -> str:
    """One panel per network: `column` against the share of weights left, one line per arm (its colour of every
    figure), the mean over seeds with bars of ± one standard error over seeds (for 2 seeds: the two seeds' range),
    clipped to what the quantity can be (iterations within [0, budget], accuracies within [0, 1]); y from 0.
    `attacked_n` (robust accuracies on that many images) leaves out the networks the attack could not change
    (`attackable`), saying how many."""
    from matplotlib.ticker import FuncFormatter, NullFormatter
    from ..plotting import arm_style, error_bars, from_zero
    plt = pyplot()
    models = list(dict.fromkeys(df["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(max(6.0, 4.4 * len(models)), 4.0), squeeze=False)
    full = with_dense_start(df)
    dropped = 0
    if attacked_n:
        dropped = int((~attackable(df, column, attacked_n)).sum())  # of the trained networks, not the copies
        full = full[attackable(full, column, attacked_n)]
    for i, (ax, model) in enumerate(zip(axes[0], models)):
        d = full[full["model"] == model]
        budget = float(df[df["model"] == model]["iterations"].max())
        hi = budget if column == "early_stop_iteration" else 1.0
        for j, arm in enumerate(a for a in ARM_ORDER if a in set(d["arm"])):
            g = d[d["arm"] == arm].groupby("round")
            x = g["remaining_pct"].mean()
            y = g[column].mean()
            se = (g[column].std(ddof=1) / np.sqrt(g[column].count())).to_numpy()
            if attacked_n:  # a point left with one seed: the binomial s.e. of its images instead
                se = np.where(np.isnan(se), np.sqrt(y * (1 - y) / attacked_n), se)
            st = arm_style(arm, j)
            error_bars(ax, x, y, se, 0.0, hi, ms=4, label=LABELS.get(arm, arm), ls="-", **st)
        if column == "early_stop_iteration":  # a run that never overfits stops "early" at its budget
            ax.axhline(budget, color="grey", ls="--", lw=1, label="budget (no early stop)")
        ax.set_xscale("log")
        ax.set_xticks(sorted(set(df[df["model"] == model]["remaining_pct"].round(1))))  # every round labelled
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.invert_xaxis()
        ax.set_xlabel("% of weights remaining")
        ax.set_ylabel(ylabel)
        ax.set_title(model)
        from_zero(ax, top=budget * 1.08 if column == "early_stop_iteration" else None)
    n = df["seed"].nunique()
    note = (f"mean over {n} seeds, bars ± one s.e. over seeds" + (" (for 2 seeds: the two seeds' range)" if n == 2
                                                                   else "")) if n > 1 else "one seed"
    if attacked_n and dropped:
        note += (f";\n{dropped} of {len(df)} networks left out: near-constant ones, whose attack changed "
                 f"(almost) no prediction (PGD accuracy within 2 s.e. of clean, or clean < {CHANCE_FACTOR:g}x "
                 "chance); a point left with one seed has a binomial bar")
    fig.suptitle(f"{title}\n({note})", fontsize=9)
    return save_figure(fig, path, axes=list(axes[0]), legend="outside", legend_size=8)


def write_report(results: dict, out_dir: Path) -> dict:
    """lth.csv, tables.md, the two plots (and the robust-accuracy one), summary.json; returns the summary."""
    out_dir = Path(out_dir)
    df = pd.DataFrame(results["rows"])
    atomic_write_text(out_dir / "lth.csv", df.to_csv(index=False))
    summary = headline(df)
    figures = [plot_curves(df, "early_stop_iteration", "early-stopping iteration", out_dir / "lth_early_stop.png",
                           "Early-stopping iteration (minimum validation loss)"),
               plot_curves(df, "test_acc", "test accuracy at early stop", out_dir / "lth_accuracy.png",
                           "Test accuracy at the early-stopping iteration")]
    robust = [c for c in df.columns if c.startswith("pgd_acc_eps")]
    for c in robust:
        figures.append(plot_curves(df, c, f"PGD-{results['config']['lth']['robust_steps']} accuracy",
                                   out_dir / f"lth_{c}.png", f"Robust accuracy (ε = {c[len('pgd_acc_eps'):]}/255) "
                                   f"of naturally trained networks at early stop, first "
                                   f"{results['config']['lth']['robust_n']} test images",
                                   attacked_n=results["config"]["lth"]["robust_n"]))
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
