"""Replicate seeds: which seeds a command runs, and the spread of tidy per-seed results.

Each seed is its own cached, resumable run (the seed is part of every run's hash), so adding a seed reruns
nothing. Summaries group rows by everything but the seed: mean, standard deviation and a 95 % t-interval
over seeds, and paired differences between arms of the same seed (same θ0 and data order).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

from .config import SEED_MAX
from .errors import UsageError
from .stats import Interval, holm_verdicts, paired_difference, t_interval

if TYPE_CHECKING:  # pandas is imported where tables are made, not by the CLI's start-up
    import pandas as pd


def add_seed_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("replicates")
    g.add_argument("--seeds", help="comma-separated distinct seeds in [0, 2**32-1], each its own cached run, "
                                   "aggregated with 95 %% t-intervals (e.g. 0,1,2)")
    g.add_argument("--replicates", type=int, help="N seeds: seed, seed+1, ..., seed+N-1")


def parse_seeds(text: str) -> list[int]:
    """The --seeds list: comma-separated distinct integers in [0, SEED_MAX]; an empty item is an error."""
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise UsageError(f"invalid --seeds {text!r}: an empty item between commas (expected comma-separated "
                         "integers, e.g. 0,1,2)")
    try:
        seeds = [int(t) for t in items]
    except ValueError:
        raise UsageError(f"invalid --seeds {text!r}: expected comma-separated integers >= 0") from None
    bad = next((s for s in seeds if not 0 <= s <= SEED_MAX), None)
    if bad is not None:
        raise UsageError(f"invalid --seeds {text!r}: seed {bad} is outside [0, {SEED_MAX}] (2**32-1)")
    twice = next((s for i, s in enumerate(seeds) if s in seeds[:i]), None)
    if twice is not None:
        raise UsageError(f"invalid --seeds {text!r}: expected distinct integers ({twice} is given twice)")
    return seeds


def resolve_seeds(args: argparse.Namespace, base_seed: int) -> Optional[list[int]]:
    """The replicate seeds asked for on the command line, or None for a single run (checked before any work)."""
    seeds_text, n = getattr(args, "seeds", None), getattr(args, "replicates", None)
    if seeds_text is not None and n is not None:
        raise UsageError("give --seeds or --replicates, not both")
    if n is not None:
        if n < 1:
            raise UsageError(f"invalid --replicates {n}: expected an integer >= 1")
        if base_seed + n - 1 > SEED_MAX:
            raise UsageError(f"invalid --replicates {n}: seeds {base_seed}..{base_seed + n - 1} go beyond "
                             f"{SEED_MAX} (2**32-1)")
        return list(range(base_seed, base_seed + n))
    if seeds_text is None:
        return None
    return parse_seeds(seeds_text)


def interval_row(iv: Interval) -> dict:
    return {"n_seeds": iv.n if iv.method != "bootstrap" else 1, "mean": iv.mean, "std": iv.std,
            "ci_lo": iv.lo, "ci_hi": iv.hi, "method": iv.method}


def summarize(df: pd.DataFrame, by: Sequence[str], metrics: Iterable[str], n_col: Optional[str] = None) -> pd.DataFrame:
    """One row per group and metric: seeds, mean, std and the 95 % t-interval over the group's rows."""
    import pandas as pd
    out = []
    for key, sub in df.groupby(list(by), dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        for m in metrics:
            if m not in sub or sub[m].isna().all():
                continue
            row = dict(zip(by, key), metric=m, **interval_row(t_interval(sub[m].dropna())))
            if n_col and n_col in sub:
                row["n_images"] = int(sub[n_col].max())
            out.append(row)
    return pd.DataFrame(out)


def paired(df: pd.DataFrame, by: Sequence[str], metrics: Iterable[str], a: str, b: str,
           arm_col: str = "arm", seed_col: str = "seed") -> pd.DataFrame:
    """a - b per seed within each group (same seed: same initial weights and data order), t-interval over seeds;
    verdicts controlled for every difference of the table together (Holm: `m` intervals tested, `p_holm`, and a
    verdict holds only if the correction keeps it)."""
    import pandas as pd
    out, ivs = [], []
    for key, sub in df.groupby(list(by), dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        va, vb = sub[sub[arm_col] == a], sub[sub[arm_col] == b]
        if va.empty or vb.empty:
            continue
        for m in metrics:
            if m not in sub:
                continue
            xa = {s: v for s, v in zip(va[seed_col], va[m]) if not _missing(v)}
            xb = {s: v for s, v in zip(vb[seed_col], vb[m]) if not _missing(v)}
            iv = paired_difference(xa, xb)
            if iv.n == 0:
                continue
            out.append(dict(zip(by, key), pair=f"{a} - {b}", metric=m, **interval_row(iv), se=iv.se))
            ivs.append(iv)
    for row, v in zip(out, holm_verdicts(ivs)):
        row.update(p=v["p"], p_holm=v["p_holm"], m=v["m"], holds=v["holds"], verdict=v["verdict"])
    return pd.DataFrame(out)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt_cell(mean: float, lo: float, hi: float, scale: float = 100) -> str:
    """'23.4 ± 1.2' in points, or the mean alone without an interval."""
    if _missing(mean):
        return "—"
    if _missing(lo):
        return f"{mean * scale:.1f}"
    return f"{mean * scale:.1f} ± {(hi - lo) / 2 * scale:.1f}"


GRID_METRICS = ("epoch1_pgd", "epoch5_pgd", "final_pgd", "epoch1_clean", "epoch5_clean", "final_clean")


def grid_summary(ok: pd.DataFrame, grid_dir: Path, varying: list[str]) -> list[str]:
    """An ablation run over several seeds: per cell and arm the t-interval over seeds, ticket - reinit paired
    by seed; writes ablation_summary.csv, ablation_differences.csv and a plot; returns Markdown lines."""
    import pandas as pd
    from .runs import atomic_write_text
    by = varying or ["search_lr"]
    metrics = [m for m in GRID_METRICS if m in ok and ok[m].notna().any()]
    summary = summarize(ok, by + ["arm"], metrics, n_col="eval_n")
    diffs = paired(ok, by, metrics, "ticket", "reinit") if {"ticket", "reinit"} <= set(ok["arm"]) else pd.DataFrame()
    atomic_write_text(Path(grid_dir) / "ablation_summary.csv", summary.to_csv(index=False))
    atomic_write_text(Path(grid_dir) / "ablation_differences.csv", diffs.to_csv(index=False))
    n_seeds = ok["seed"].nunique()
    n_eval = int(ok["eval_n"].max()) if "eval_n" in ok else None
    m_tested = int(diffs["m"].iloc[0]) if not diffs.empty and "m" in diffs else 0
    lines = [f"## Over {n_seeds} seeds: mean ± 95 % t-interval half-width, points (n = {n_eval} evaluation images "
             "per accuracy)", "",
             f"ticket − reinit is paired by seed; its verdicts are controlled for the {m_tested} differences tested "
             "in these tables together (Holm): one holds only if the correction keeps it.", ""]
    from .bench.report import markdown_table
    for m in metrics:
        sub = summary[summary.metric == m]
        table = sub.assign(value=[fmt_cell(r.mean, r.ci_lo, r.ci_hi) for r in sub.itertuples()]) \
            .pivot_table(index=by, columns="arm", values="value", aggfunc="first").reset_index()
        if not diffs.empty:
            d = diffs[diffs.metric == m]
            dv = d.assign(diff=[f"{fmt_cell(r.mean, r.ci_lo, r.ci_hi)} ({r.verdict})" for r in d.itertuples()])
            table = table.merge(dv[by + ["diff"]].rename(columns={"diff": "ticket - reinit"}), on=by, how="left")
        table.columns = [str(c) for c in table.columns]
        lines += [f"### {m}", "", markdown_table(table), ""]
    plot = _grid_plot(summary, grid_dir, by, metrics)
    if plot:
        lines.append(f"![{plot}]({plot})")
    return lines


def _grid_plot(summary: pd.DataFrame, grid_dir: Path, by: list[str], metrics: list[str]) -> Optional[str]:
    """Epoch-1 accuracy of each arm along the first varying axis, with 95 % error bars over seeds."""
    metric = next((m for m in ("epoch1_pgd", "epoch1_clean") if m in metrics), None)
    if metric is None:
        return None
    import numpy as np
    from .plotting import arm_style, error_bars, from_zero, pyplot, save_figure
    plt = pyplot()
    x, rest = by[0], by[1:]
    fig, ax = plt.subplots(figsize=(6, 4))
    sub = summary[summary.metric == metric]
    for i, (key, g) in enumerate(sub.groupby(["arm"] + rest, dropna=False)):
        key = key if isinstance(key, tuple) else (key,)
        g = g.sort_values(x)
        se = (g["std"] / np.sqrt(g["n_seeds"])).to_numpy(float)
        label = ", ".join(f"{k}={v}" for k, v in zip(["arm"] + rest, key))
        error_bars(ax, g[x].astype(float), g["mean"], se, capsize=3, label=label, **arm_style(key[0], i))
    ax.set_xlabel(x)
    ax.set_ylabel(f"{metric} (mean over seeds, bars ± one s.e.)")
    from_zero(ax)
    return save_figure(fig, Path(grid_dir) / f"{metric}_vs_{x}_seeds.png", [ax], legend_size=7)
