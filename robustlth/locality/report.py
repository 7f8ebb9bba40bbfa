"""Report of a locality run: a tidy CSV (one row per trained mask), report.md and the figures."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch

from ..plotting import COLORS, arm_style, from_zero, pyplot, save_figure
from ..runs import atomic_write_text
from .analysis import (as_images, coverage, dense_histograms, displacement_histograms, in_degree, most_connected,
                       shuffle_units, window_fraction)
from .config import LocalityConfig

ARM_LABELS = {"imp": "IMP (best round)", "oneshot": "one-shot", "random": "random mask", "dense": "dense",
              "shuffled": "IMP, shuffled across units"}
COLOURS = {k: arm_style(k)["color"] for k in ("imp", "oneshot", "random", "dense", "shuffled")}  # every figure's
METRICS = ["density", "first_layer_density", "connected_1", "connected_2", "connected_3", "train_acc", "val_acc",
           "test_acc", "locality_sc", "locality_dc", "mean_dist_sc", "mean_dist_dc", "train_time"]


def control_label(name: str) -> str:
    kind, value = name.split("_", 1)
    return f"{float(value):.0%} of the training images" if kind == "data" else f"{value} random superclasses"


def tidy_table(results: dict) -> pd.DataFrame:
    """One row per trained mask: the IMP rounds, the control runs' rounds, and the one-shot / random masks."""
    rows = []

    def add(run, summaries, best):
        for s in summaries:
            rows.append({"run": run, "round": s["round"], "analysed": best is None or s["round"] == best,
                         **{k: s.get(k) for k in METRICS}, "stopped": s.get("stopped") or ""})
    add("imp", results["rounds"], results["best_round"])
    for name in ("oneshot", "random"):
        if name in results["arms"]:
            add(name, [results["arms"][name]["summary"]], None)
    for name, c in results["controls"].items():
        add(name, c["rounds"], c["best_round"])
    df = pd.DataFrame(rows)
    df["round"] = df["round"].astype("Int64")  # one-shot and random masks have no round
    return df


def _fmt(col: str, v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.1f}" if col.endswith("time") else f"{v:.4f}"
    return str(v)


def markdown(df: pd.DataFrame, cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_fmt(c, r[c]) for c in cols) + " |" for _, r in df.iterrows()]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------
# Figures.

def _shell_profile(hist: torch.Tensor) -> np.ndarray:
    """Fraction of the pairs at each Chebyshev distance max(|dy|, |dx|) = d."""
    c = (hist.shape[0] - 1) // 2
    idx = torch.arange(hist.shape[0]) - c
    d = torch.maximum(idx[:, None].abs(), idx[None, :].abs())
    counts = torch.zeros(c + 1, dtype=torch.float64).index_add_(0, d.flatten(), hist.flatten().double())
    return (counts / counts.sum()).numpy()


def plot_rounds(results: dict, out: Path) -> str:
    from matplotlib.ticker import MaxNLocator
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    runs = {"imp": results["rounds"], **{k: c["rounds"] for k, c in results["controls"].items()}}
    labels = {"imp": "IMP"} | {k: f"IMP, {control_label(k)}" for k in results["controls"]}
    n_val = results.get("n_val")
    for (name, rounds), colour in zip(runs.items(), (COLOURS["imp"], COLORS[3], COLORS[8])):
        r = [s["round"] for s in rounds]
        acc = np.array([s["val_acc"] for s in rounds], dtype=float)
        axes[0].plot(r, acc, marker="o", ms=3, color=colour,
                     label=labels[name] + (" (superclass accuracy)" if name.startswith("super") else ""))
        if n_val:  # one run per round: ± one binomial s.e. of the validation set
            se = np.sqrt(acc * (1 - acc) / n_val)
            axes[0].fill_between(r, np.maximum(acc - se, 0), np.minimum(acc + se, 1), color=colour, alpha=0.15, lw=0)
        axes[1].plot(r, [s["locality_sc"] for s in rounds], marker="o", ms=3, color=colour,
                     label=f"{labels[name]}: S_sc")
        axes[1].plot(r, [s["locality_dc"] for s in rounds], marker="s", ms=3, ls="--", color=colour,
                     label=f"{labels[name]}: S_dc")
    best = results["best_round"]
    for name in ("oneshot", "random"):
        if name in results["arms"]:
            s = results["arms"][name]["summary"]
            axes[0].scatter([best], [s["val_acc"]], marker="*", s=120, color=COLOURS[name], zorder=3,
                            label=f"{ARM_LABELS[name]} at round {best}")
            axes[1].scatter([best], [s["locality_sc"]], marker="*", s=120, color=COLOURS[name], zorder=3,
                            label=f"{ARM_LABELS[name]}: S_sc")
    axes[0].axvline(best, color="grey", ls=":", lw=1)
    axes[1].axhline(1.0, color="black", lw=0.8)
    axes[0].set_ylabel(f"{results['rounds'][0]['eval_split']} accuracy" + (f" (band ± one s.e. of {n_val} images)"
                                                                           if n_val else ""))
    from_zero(axes[0])
    axes[1].set_ylabel(f"pairs within |Δ|∞ ≤ {results['config']['locality']['radius']}, relative to dense")
    for ax in axes:
        ax.set_xlabel("IMP round (0 = dense)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_title("Accuracy per round (dotted: analysed round)")
    axes[1].set_title("First-layer locality per round (1 = dense / random)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower left")  # the curves sit above, the controls' stars in the middle
    axes[1].legend(fontsize=7, loc="upper left")  # locality stays at 1 over the first rounds
    return save_figure(fig, out / "rounds.png")


def plot_displacements(hists: dict, out: Path) -> list[str]:
    """Per arm: S_sc and S_dc as distributions, and divided by a dense unit's (where locality shows)."""
    plt = pyplot()
    dense = [h.double() / h.sum() for h in dense_histograms()]
    names = [k for k in hists if k != "dense"]
    ratios = {}
    for name in names:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[name] = [np.where(dense[j] > 0, (hists[name][j].double() / hists[name][j].sum()) / dense[j], np.nan)
                            for j in range(2)]
    # One colour range for every ratio map, symmetric around 1, from the central half of the maps (the corners
    # hold few pairs and are noisy), so the arms can be compared by eye.
    span = max(float(np.nanmax(np.abs(r[16:47, 16:47] - 1))) for rs in ratios.values() for r in rs)
    span = min(max(span, 0.05), 1.0)
    fig, axes = plt.subplots(len(names), 4, figsize=(18, 3.9 * len(names)))
    axes = np.atleast_2d(axes)
    ext = [-31.5, 31.5, 31.5, -31.5]
    kinds = ("S_sc (same channel)", "S_dc (across channels)")
    for i, name in enumerate(names):
        for j, kind in enumerate(kinds):
            ax = axes[i, 2 * j]
            im = ax.imshow((hists[name][j].double() / hists[name][j].sum()).numpy(), extent=ext, cmap="viridis")
            ax.set_title(f"{ARM_LABELS[name]}: {kind}", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label("fraction of pairs", fontsize=8)
            ax = axes[i, 2 * j + 1]
            im = ax.imshow(ratios[name][j], extent=ext, cmap="RdBu_r", vmin=1 - span, vmax=1 + span)
            ax.set_title(f"{ARM_LABELS[name]}: {kind.split()[0]} / dense", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label("ratio to a dense unit", fontsize=8)
        axes[i, 0].set_ylabel("Δy (pixels)")
    for ax in axes[-1]:
        ax.set_xlabel("Δx (pixels)")
    files = [save_figure(fig, out / "displacement_maps.png")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for j, kind in enumerate(kinds):
        base = _shell_profile(dense_histograms()[j])
        for name in hists:
            prof = _shell_profile(hists[name][j])
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(base > 0, prof / base, np.nan)
            axes[j].plot(np.arange(len(prof)), ratio, marker="o", ms=3, color=COLOURS[name], label=ARM_LABELS[name])
        axes[j].set_xlabel("displacement max(|Δx|, |Δy|) (pixels)")
        axes[j].set_ylabel("fraction of pairs / dense fraction")
        axes[j].set_title(f"{kind}: profile relative to a dense unit")
    files.append(save_figure(fig, out / "displacement_profiles.png", axes, legend_size=8))
    return files


def plot_in_degree(masks: dict, out: Path) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    degs = {k: in_degree(m).numpy() for k, m in masks.items() if k != "dense"}
    top = max(int(d.max()) for d in degs.values()) + 1
    bins = np.linspace(0, top, 41)
    top_count = 1
    for name, d in degs.items():
        counts, _, _ = ax.hist(d, bins=bins, histtype="step", lw=1.6, color=COLOURS[name],
                               label=f"{ARM_LABELS[name]} (mean {d.mean():.1f}, {int((d == 0).sum())} units with none)")
        top_count = max(top_count, counts.max())
    ax.set_yscale("log")
    ax.set_ylim(0.8, top_count * 12)  # headroom for the legend above the histograms
    ax.set_xlabel("in-degree: surviving input connections of a first-layer unit (of 3072)")
    ax.set_ylabel("number of units")
    ax.set_title("In-degree of the first-layer units")
    return save_figure(fig, out / "in_degree.png", [ax], legend_size=8)


def plot_coverage(masks: dict, out: Path) -> str:
    plt = pyplot()
    names = [k for k in masks if k != "dense"]
    fig, axes = plt.subplots(len(names), 4, figsize=(13, 3.1 * len(names)))
    axes = np.atleast_2d(axes)
    for i, name in enumerate(names):
        cov = coverage(masks[name]).numpy()
        panels = [("red", cov[0], "Reds"), ("green", cov[1], "Greens"), ("blue", cov[2], "Blues"),
                  ("all channels", cov.sum(0), "magma")]
        for j, (title, img, cmap) in enumerate(panels):
            im = axes[i, j].imshow(img, cmap=cmap, vmin=0)
            axes[i, j].set_title(f"{ARM_LABELS[name]}: {title}", fontsize=9)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            fig.colorbar(im, ax=axes[i, j], fraction=0.046, pad=0.04, label="outgoing connections")
    fig.suptitle("Coverage: surviving first-layer connections per input pixel")
    return save_figure(fig, out / "coverage.png")


def plot_gallery(name: str, mask: torch.Tensor, n: int, out: Path) -> str:
    plt = pyplot()
    imgs = as_images(mask)
    units = most_connected(mask, n)
    deg = in_degree(mask)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.05 * rows + 0.5))
    for ax in np.atleast_1d(axes).flat:
        ax.axis("off")
    for ax, u in zip(np.atleast_1d(axes).flat, units.tolist()):
        ax.imshow(imgs[u].permute(1, 2, 0).float().numpy(), interpolation="nearest")
        ax.set_title(f"unit {u}: {int(deg[u])}", fontsize=8)
    fig.suptitle(f"{ARM_LABELS[name]}: the {n} most connected first-layer units\n"
                 "(colour: surviving R/G/B inputs; title: unit, in-degree)", fontsize=9)
    return save_figure(fig, out / f"gallery_{name}.png")


def plot_removal(results: dict, out: Path) -> Optional[str]:
    """None when no arm has removal results (the analysed mask is the dense one)."""
    if not any(a["removal"] and a["removal"]["k"] for a in results["arms"].values()):
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for name, arm in results["arms"].items():
        rem = arm["removal"]
        if not rem or not rem["k"]:
            continue
        base = arm["summary"]["test_acc"]
        n = results.get("n_test")
        for ys, marker, ls, which in ((rem["most"], "o", "-", "most"), (rem["least"], "s", "--", "least")):
            y = np.array([base] + ys, dtype=float)
            ax.errorbar([0] + rem["k"], y, yerr=None if not n else np.vstack(
                [np.minimum(np.sqrt(y * (1 - y) / n), y), np.sqrt(y * (1 - y) / n)]), marker=marker, ls=ls,
                capsize=2, color=COLOURS[name], label=f"{ARM_LABELS[name]}: {which} connected removed")
    ax.set_xlabel("first-layer units removed (k)")
    ax.set_ylabel("test accuracy" + (f" (bars ± one s.e. of {results['n_test']} images)" if results.get("n_test")
                                     else ""))
    from_zero(ax)
    ax.set_title("Removing the most vs the least connected first-layer units")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(fig, out / "unit_removal.png")


# ------------------------------------------------------------------------------------------------------

def render_markdown(results: dict, df: pd.DataFrame, window: dict, files: list[str]) -> str:
    cfg = results["config"]
    d, t, loc = cfg["data"], cfg["train"], cfg["locality"]
    best = results["best_round"]
    imp = results["rounds"]
    lines = [
        "# Local connectivity from pruning: IMP on a fully connected network", "",
        f"Model `{cfg['model']['model']}` (width {cfg['model']['width']}), data `{d['data']}` "
        f"({results['n_train']} train / {results['n_val']} validation / {results['n_test']} test images, "
        f"augmentation {'on' if d['augment'] else 'off'}). Per round: {t['epochs']} epochs of SGD "
        f"(LR {t['lr']}, momentum {t['momentum']}, weight decay {t['weight_decay']}, batch {t['batch_size']}, "
        f"{t['schedule']} LR), seed {t['seed']}. IMP per layer: {loc['ratio']:.0%} of each hidden layer's remaining "
        f"weights per round, output layer dense, rewind to the weights after {loc['rewind_iteration']} steps, stop "
        f"when a pruned layer has <= {loc['stop_units']:.0%} of its units connected (at most {loc['max_rounds']} "
        "pruned rounds).", "",
        "## Headline", "",
        f"- IMP ran {len(imp) - 1} pruning rounds; it stopped because {imp[-1]['stopped']}.",
        f"- Best validation accuracy: round {best} (first-layer density {imp[best]['first_layer_density']:.4f}), "
        f"val {imp[best]['val_acc']:.4f} / test {imp[best]['test_acc']:.4f}; dense (round 0): val "
        f"{imp[0]['val_acc']:.4f} / test {imp[0]['test_acc']:.4f}.",
        f"- Locality of the analysed first-layer mask (fraction of pairs within |Δ|∞ <= {loc['radius']}, "
        "divided by a dense unit's): " + ", ".join(
            f"{ARM_LABELS[k]} S_sc {a['summary']['locality_sc']:.3f} / S_dc {a['summary']['locality_dc']:.3f}"
            for k, a in results["arms"].items()) + ".",
        f"- Training time of every mask together: {results['train_time_s'] / 60:.1f} min "
        f"({results['environment']['torch_threads']} CPU threads; evaluation excluded).",
    ]
    for name, c in results["controls"].items():
        r = c["rounds"][c["best_round"]]
        lines.append(f"- Control, {control_label(name)}: {len(c['rounds']) - 1} rounds, best round {c['best_round']} "
                     f"(first-layer density {r['first_layer_density']:.4f}, val {r['val_acc']:.4f}), locality S_sc "
                     f"{r['locality_sc']:.3f} / S_dc {r['locality_dc']:.3f}; at the main run's round {best}: " +
                     (f"S_sc {c['rounds'][best]['locality_sc']:.3f}." if best < len(c["rounds"]) else "not reached."))
    lines += ["", "## Every trained mask", "",
              "`density`: fraction of the hidden layers' weights left; `connected_i`: fraction of hidden layer i's "
              "units with some input and some output left; `locality_*`: as above.", "",
              markdown(df, ["run", "round", "analysed", "density", "first_layer_density", "connected_1",
                            "connected_2", "connected_3", "val_acc", "test_acc", "locality_sc", "locality_dc",
                            "mean_dist_sc", "train_time"]), "",
              "## Unit removal (test accuracy)", ""]
    for name, arm in results["arms"].items():
        rem = arm["removal"]
        if rem and rem["k"]:
            lines.append(f"- {ARM_LABELS[name]} ({rem['connected']} connected units; intact "
                         f"{arm['summary']['test_acc']:.4f}): " + ", ".join(
                             f"k={k}: most {m:.4f} / least {l:.4f}" for k, m, l in
                             zip(rem["k"], rem["most"], rem["least"])))
    lines += ["", "## Locality of the analysed masks", "",
              f"Fraction of the pairs within |Δ|∞ <= {loc['radius']}, and that fraction divided by a dense unit's. "
              "The shuffled baseline deals each input's surviving connections to random units: same coverage map, "
              "no receptive fields.", "",
              "| mask | S_sc window | S_dc window | locality S_sc | locality S_dc |", "|---|---|---|---|---|"]
    dense = window["dense"]
    lines += [f"| {ARM_LABELS[k]} | {v[0]:.4f} | {v[1]:.4f} | {v[0] / dense[0]:.3f} | {v[1] / dense[1]:.3f} |"
              for k, v in window.items()]
    lines.append("")
    lines += [f"![{f}]({f})" for f in files]
    lines += ["", "## Environment", "", "```", json.dumps(results["environment"], indent=1), "```", ""]
    return "\n".join(lines)


def write_report(results: dict, masks: dict, out: Path, loc: LocalityConfig) -> None:
    out = Path(out)
    df = tidy_table(results)
    atomic_write_text(out / "locality.csv", df.to_csv(index=False))
    masks = masks | {"shuffled": shuffle_units(masks["imp"], seed=results["config"]["train"]["seed"])}
    hists = {k: displacement_histograms(m) for k, m in masks.items()}
    window = {k: (window_fraction(h[0], loc.radius), window_fraction(h[1], loc.radius)) for k, h in hists.items()}
    arms = {k: m for k, m in masks.items() if k != "shuffled"}  # the shuffle is a baseline of the pair counts only
    files = [plot_rounds(results, out), *plot_displacements(hists, out), plot_in_degree(arms, out),
             plot_coverage(arms, out)]
    files += [plot_gallery(k, m, loc.gallery, out) for k, m in arms.items() if k != "dense"]
    removal = plot_removal(results, out)
    files += [removal] if removal else []
    atomic_write_text(out / "report.md", render_markdown(results, df, window, files))
