"""Tables, the plot and the headline of `robustlth sparsity-sweep`: test accuracy by method and sparsity,
mean ± std over seeds, and RST's paired differences with IMP and with its own untransformed random ticket."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..lth.report import fmt, mean_std
from ..plotting import pyplot, save_figure
from ..runs import atomic_write_json, atomic_write_text
from .config import METHODS


def paired(df: pd.DataFrame, a: str, b: str, s: float, column: str = "test_acc") -> tuple[float, float]:
    x = df[(df["method"] == a) & (df["target_sparsity"] == s)].set_index("seed")[column]
    y = df[(df["method"] == b) & (df["target_sparsity"] == s)].set_index("seed")[column]
    seeds = x.index.intersection(y.index)
    return mean_std(x.loc[seeds] - y.loc[seeds])


def headline(df: pd.DataFrame) -> dict:
    out = {}
    methods = set(df["method"])
    for s in sorted(set(df[df["method"] != "dense"]["target_sparsity"])):
        h = {m: mean_std(df[(df["method"] == m) & (df["target_sparsity"] == s)]["test_acc"])
             for m in METHODS if m in methods and m != "dense"}
        for a, b in (("rst", "imp"), ("rst", "random"), ("imp", "random"), ("rst-iter", "imp")):
            if {a, b} <= methods:
                h[f"{a}_minus_{b}"] = paired(df, a, b, s)
        out[f"{s:g}"] = h
    if "dense" in methods:
        out["dense"] = mean_std(df[df["method"] == "dense"]["test_acc"])
    return out


def table(df: pd.DataFrame, column: str, digits: int = 3) -> str:
    methods = [m for m in METHODS if m in set(df["method"]) and m != "dense"]
    lines = ["| sparsity | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for s in sorted(set(df[df["method"] != "dense"]["target_sparsity"])):
        cells = [fmt(df[(df["method"] == m) & (df["target_sparsity"] == s)][column], digits) for m in methods]
        lines.append(f"| {s:.0%} | " + " | ".join(cells) + " |")
    dense = df[df["method"] == "dense"]
    if len(dense):
        lines += ["", f"Dense network (0 % sparsity): {fmt(dense[column], digits)}"]
    return "\n".join(lines)


LABELS = {"imp": "IMP ticket", "random": "random mask (untransformed)", "rst": "RST ticket",
          "rst-iter": "RST-Iter ticket"}


def plot(df: pd.DataFrame, path: Path) -> str:
    """Test accuracy by sparsity, each method in its colour of every figure: the mean over seeds with bars of ±
    one standard error over seeds (for 2 seeds: the two seeds' range), clipped to [0, 1]; the dense network as a
    line with its band; y from 0."""
    import numpy as np
    from ..plotting import arm_style, error_bars, from_zero
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    n = df["seed"].nunique()
    for i, m in enumerate(m for m in METHODS if m in set(df["method"]) and m != "dense"):
        g = df[df["method"] == m].groupby("target_sparsity")["test_acc"]
        x = [100 * s for s in g.mean().index]
        se = (g.std(ddof=1) / np.sqrt(g.count())).to_numpy()
        error_bars(ax, x, g.mean(), se, ms=4, capsize=3, label=LABELS.get(m, m), ls="-", **arm_style(m, i))
    dense = df[df["method"] == "dense"]["test_acc"]
    if len(dense):
        m, sd = mean_std(dense)
        se = sd / np.sqrt(len(dense))
        ax.axhline(m, color="k", lw=1, label="dense network")
        if se:
            ax.axhspan(max(m - se, 0), min(m + se, 1), color="k", alpha=0.1)
    ax.set_xlabel("sparsity (% of prunable weights removed)")
    ax.set_ylabel("test accuracy")
    bars = (f"bars ± one s.e. over {n} seeds" + (" (the two seeds' range)" if n == 2 else "")) if n > 1 else "one seed"
    ax.set_title(f"Natural training, mean over seeds; {bars}", fontsize=9)
    from_zero(ax)
    return save_figure(fig, path, axes=[ax], legend="outside", legend_size=8)


def write_report(results: dict, out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    df = pd.DataFrame(results["rows"])
    atomic_write_text(out_dir / "sweep.csv", df.to_csv(index=False))
    parts = ["# Test accuracy by method and sparsity (mean ± std over seeds)", "", table(df, "test_acc"), "",
             "## Validation accuracy after the first epoch of fine-tuning", "", table(df, "epoch1_val_acc"), ""]
    atomic_write_text(out_dir / "tables.md", "\n".join(parts))
    summary = {"headline": headline(df), "figures": [plot(df, out_dir / "sweep_accuracy.png")]}
    atomic_write_json(out_dir / "summary.json", summary)
    atomic_write_json(out_dir / "results.json", {**results, "summary": summary})
    return summary
