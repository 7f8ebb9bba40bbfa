"""Shared figure plumbing for reports: a headless pyplot, one palette for every figure (each arm the same colour
and marker wherever it appears, with words instead of internal names), lines with noise bands, clipped error
bars, axes from zero, and one atomic, uniformly styled save (legend outside the data, integer epoch axes where
asked).

Noise, the same way in every figure: over several seeds (or grid cells) a band or bar of ± one standard error of
the mean; for one run, ± one binomial standard error of the evaluation-set size. Bands and bars are clipped to
what the quantity can be (accuracies in [0, 1], counts from 0)."""
from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .stats import binomial_se  # noqa: F401  (re-exported: reports import it from here)

# Colour-blind-safe colours (Okabe-Ito, then Tol's muted for more series) with a distinct marker each.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#882255", "#999933",
          "#44AA99", "#332288", "#AA4499")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "p", "<", ">")

# Every arm (bench, LTH, sweep, locality) has one colour and marker in every figure, and a label in words.
ARM_STYLE = {
    "dense": ("#000000", "o"), "ticket": ("#0072B2", "s"), "reinit": ("#D55E00", "^"),
    "random_prune": ("#009E73", "D"), "random": ("#009E73", "D"), "winning": ("#CC79A7", "v"),
    "fast_at": ("#E69F00", "P"), "ticket_fast": ("#56B4E9", "X"), "structured": ("#882255", "*"),
    "structured_fast": ("#999933", "h"), "rst": ("#AA4499", "p"), "rst-iter": ("#332288", "<"),
    "imp": ("#0072B2", "s"), "oneshot": ("#E69F00", "P"), "shuffled": ("#D55E00", "^"),
    "transfer": ("#332288", "<"), "transfer_reinit": ("#44AA99", ">"),
}
ARM_LABELS = {
    "dense": "dense, PGD AT", "ticket": "boosting ticket, PGD AT", "reinit": "ticket mask, re-initialised",
    "random_prune": "random pruning", "winning": "winning ticket (usual-LR search)",
    "fast_at": "dense, fast AT (N-FGSM)", "ticket_fast": "boosting ticket, fast AT (N-FGSM)",
    "structured": "structured ticket, PGD AT", "structured_fast": "structured ticket, fast AT (N-FGSM)",
    "rst": "RST ticket", "rst-iter": "RST-Iter ticket", "imp": "IMP ticket",
}


def arm_style(name: str, i: int = 0) -> dict:
    """Colour and marker of an arm, the same in every figure (a name not in ARM_STYLE: the i-th style)."""
    if name in ARM_STYLE:
        color, marker = ARM_STYLE[name]
        return {"color": color, "marker": marker}
    return style(i)


def arm_label(name: str) -> str:
    """An arm's name in words for legends ("ticket_fast" -> "boosting ticket, fast AT (N-FGSM)")."""
    return ARM_LABELS.get(name, name.replace("_", " "))


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def style(i: int) -> dict:
    """Colour and marker of the i-th series."""
    return {"color": COLORS[i % len(COLORS)], "marker": MARKERS[i % len(MARKERS)]}


def eval_note(split: str, n: int, p: float = 0.3) -> str:
    """A note of the evaluation-set size for titles: how noisy one point is."""
    return f"{split} set, {n} images: one s.e. ≈ {100 * binomial_se(p, n):.1f} points at {p:.0%}"


def _nan(v) -> float:
    return float("nan") if v is None else float(v)


def mean_se(runs: Sequence[Sequence[Optional[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Per point: the mean over runs and one standard error of that mean (nan where fewer than 2 runs have it)."""
    y = np.array([[_nan(v) for v in r] for r in runs], dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():  # a point no run has (e.g. time 0) stays empty
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(y, axis=0)
        count = np.sum(~np.isnan(y), axis=0)
        se = np.where(count > 1, np.nanstd(y, axis=0, ddof=1) / np.sqrt(np.maximum(count, 1)), np.nan)
    return mean, se


def clipped(mean, err, lo: Optional[float] = 0.0, hi: Optional[float] = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of mean ± err, clipped to [lo, hi] (None: unbounded); nan errors give no band."""
    mean, err = np.asarray(mean, dtype=float), np.asarray(err, dtype=float)
    low, up = mean - err, mean + err
    if lo is not None:
        low = np.maximum(low, lo)
    if hi is not None:
        up = np.minimum(up, hi)
    return low, up


def error_bars(ax, x, mean, err, lo: Optional[float] = 0.0, hi: Optional[float] = 1.0, **kw):
    """errorbar() with bars of ± err clipped to [lo, hi] (an accuracy bar never leaves [0, 1], an iteration
    count's never goes below 0); nan errors draw no bar."""
    mean = np.asarray(mean, dtype=float)
    low, up = clipped(mean, err, lo, hi)
    yerr = np.nan_to_num(np.vstack([mean - low, up - mean]), nan=0.0)
    kw.setdefault("capsize", 2)
    return ax.errorbar(x, mean, yerr=yerr, **kw)


def plot_series(ax, x: Sequence[float], runs: Sequence[Sequence[Optional[float]]], label: str, i: int = 0,
                over: str = "seeds", n_images: Optional[int] = None, bounds=(0.0, 1.0), name: Optional[str] = None,
                **kw) -> None:
    """One series: a line through the mean over `runs` (one list per seed, or per grid cell: `over`) and a band
    of its noise: ± one standard error of the mean over several runs; for one run with `n_images`, ± one binomial
    standard error of an accuracy on that many images. Bands are clipped to `bounds`. `name` (an arm) picks its
    colour and marker from ARM_STYLE; else the i-th style."""
    mean, se = mean_se(runs)
    st = {**(arm_style(name, i) if name else style(i)), **kw}
    if len(runs) > 1:
        label = f"{label} (mean of {len(runs)} {over} ± s.e.)"
    elif n_images:
        se = np.array([binomial_se(m, n_images) if not math.isnan(m) else np.nan for m in mean])
    ax.plot(x, mean, label=label, markersize=5, **st)
    if not np.all(np.isnan(se)):
        low, up = clipped(mean, se, *bounds)
        ax.fill_between(x, low, up, color=st["color"], alpha=0.15, lw=0)
        if np.sum(~np.isnan(mean)) == 1:  # one point draws no band: a bar instead
            error_bars(ax, x, mean, se, *bounds, color=st["color"], ls="none", lw=1)


def from_zero(*axes, top: Optional[float] = None) -> None:
    """Accuracy (or count) axes start at 0, so a few points do not look like a large gap; `top` fixes the top."""
    for ax in axes:
        ax.set_ylim(bottom=0, top=top if top is not None else max(ax.get_ylim()[1], 0.05))


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
