"""Shared figure plumbing for reports: a headless pyplot, distinct styles, lines with seed bands, and one
atomic, uniformly styled save (legend outside the data, integer epoch axes where asked)."""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

# Colour-blind-safe colours (Okabe-Ito) with a distinct marker each: no two series share both.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def style(i: int) -> dict:
    """Colour and marker of the i-th series."""
    return {"color": COLORS[i % len(COLORS)], "marker": MARKERS[i % len(MARKERS)]}


def binomial_se(p: float, n: int) -> float:
    """One standard error of an accuracy p measured on n images."""
    return float(np.sqrt(max(p * (1 - p), 0.0) / n)) if n else float("nan")


def eval_note(split: str, n: int, p: float = 0.3) -> str:
    """A note of the evaluation-set size for titles: how noisy one point is."""
    return f"{split} set, {n} images: one s.e. ≈ {100 * binomial_se(p, n):.1f} points at {p:.0%}"


def plot_series(ax, x: Sequence[float], runs: Sequence[Sequence[Optional[float]]], label: str, i: int,
                over: str = "seeds", **kw) -> None:
    """One series: a line through the mean over `runs` (one list per seed, or per grid cell: `over`) and, with
    several, a band of ± one standard error of that mean."""
    y = np.array([[np.nan if v is None else v for v in r] for r in runs], dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():  # a point no seed has (e.g. time 0) stays empty
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(y, axis=0)
    st = {**style(i), **kw}
    label = label if len(runs) == 1 else f"{label} (mean of {len(runs)} {over} ± s.e.)"
    ax.plot(x, mean, label=label, markersize=5, **st)
    if len(runs) > 1:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            se = np.nanstd(y, axis=0, ddof=1) / np.sqrt(np.sum(~np.isnan(y), axis=0))
        ax.fill_between(x, mean - se, mean + se, color=st["color"], alpha=0.2, lw=0)


def save_figure(fig, path: Path, axes=(), legend_size=None, integer_x: bool = False, legend: str = "each") -> str:
    """Grid and legend on `axes` (`legend`: "each" axis, or one "outside" the plotting area on the right, so
    it never covers data), integer x ticks if asked, then write the PNG atomically and close the figure;
    returns its file name."""
    from matplotlib.ticker import MaxNLocator
    from .runs import atomic_write_bytes
    axes = list(axes)  # plt.subplots gives an array, which has no truth value
    for ax in axes:
        ax.grid(alpha=0.3)
        if integer_x:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if axes and legend == "outside":
        handles, labels = axes[-1].get_legend_handles_labels()
        if handles:
            axes[-1].legend(handles, labels, fontsize=legend_size or 8, loc="upper left", bbox_to_anchor=(1.02, 1),
                            borderaxespad=0)
    elif legend == "each":
        for ax in axes:
            ax.legend(fontsize=legend_size)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    pyplot().close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path).name
