"""`robustlth bench --seeds 0,1,2`: one cached benchmark run per seed, then their spread.

Each seed is an ordinary bench run (its own run directory, resumable, reused by a later single-seed call with
that seed). The aggregate directory holds pointers to them and the statistics: per arm and metric the mean,
standard deviation and 95 % t-interval over seeds (one seed: over the images of its evaluation), and the paired
differences ticket - dense, ticket - reinit (over seeds, same seed: same θ0 and data order; per image for one
seed), each with the number of evaluation images beside it and its verdict after Holm's correction over every
difference tested. The numbers come from the same functions as a single bench's (bench.metrics).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import config_hash
from ..runs import atomic_write_text, environment
from ..stats import Interval, bootstrap_interval, proportion_interval, t_interval
from ..training import RunContext
from .arms import pairs
from .config import BenchSetup
from .harness import run_bench
from .metrics import differences, per_arm_values

Log = Optional[Callable[[str], None]]


def _interval(values: dict[int, dict]) -> Interval:
    """Over seeds when there are several; one seed: over its images (binomial) if it has an image count."""
    if len(values) == 1:
        (v,) = values.values()
        if v.get("flags") is not None and len(v["flags"]):
            return bootstrap_interval(v["flags"])
        if v.get("n_images"):
            return proportion_interval(v["value"], v["n_images"])
    return t_interval(v["value"] for v in values.values())


def _entry(iv: Interval, n_images, images: Optional[str] = None) -> dict:
    return {**iv.to_dict(), "n_images": n_images, "images": images}


def aggregate(results: dict[int, dict]) -> dict:
    """Statistics over the per-seed results.json contents of one benchmark configuration: per arm and metric the
    mean and 95 % interval, the paired differences (over seeds; per image for one seed) with Holm's correction
    over the family, and the time ratios in wall-clock and CPU seconds."""
    seeds = sorted(results)
    per_arm = per_arm_values(results)
    arms = {name: {m: _entry(_interval(v), next(iter(v.values()))["n_images"], next(iter(v.values())).get("images"))
                   for m, v in metrics.items()} for name, metrics in per_arm.items()}
    diffs = differences(per_arm, pairs(per_arm))
    heads = {k: {s: results[s]["headline"].get(k) for s in seeds}
             for k in ("total_time_ratio", "total_cpu_time_ratio", "time_to_target_vs_dense",
                       "cpu_time_to_target_vs_dense")}
    headline = {k: {**t_interval(v for v in vals.values() if v is not None).to_dict(),
                    "seeds_defined": sum(v is not None for v in vals.values())} for k, vals in heads.items()}
    loads = [r["headline"].get("load_avg") for r in results.values() if r["headline"].get("load_avg")]
    if loads:
        headline["load_avg"] = {"min": min(x["min"] for x in loads), "max": max(x["max"] for x in loads),
                                "changed": any(x["changed"] for x in loads)}
    return {"seeds": seeds, "arms": arms, "differences": diffs, "headline": headline}


def run_bench_seeds(setup: BenchSetup, device: torch.device, root: str | Path, seeds: list[int],
                    preset: Optional[str] = None, progress: bool = False, log: Log = None,
                    ctx: Optional[RunContext] = None) -> tuple[dict, Path]:
    """Run (or reuse) one bench per seed, then write the aggregate directory (under data parallelism: every
    process runs each seed's bench; the primary one writes)."""
    ctx = ctx if ctx is not None else RunContext(device)
    log = log if ctx.is_primary else None
    results, runs = {}, {}
    for s in seeds:
        if log:
            log(f"=== seed {s} ({seeds.index(s) + 1} of {len(seeds)}) ===")
        results[s], run = run_bench(setup.with_seed(s), ctx.device, root, preset, progress, log, ctx=ctx)
        runs[s] = run.path.name
    base = setup.with_seed(0)
    config = {"preset": preset, "seeds": seeds, **base.to_dict()}
    h = config_hash("benchseeds", {**base.sections(), "seeds": seeds})
    out = ctx.open_run(root, "benchseeds", h, config, None)
    with ctx.hold(out):
        agg = {"config": config, "runs": {str(s): runs[s] for s in seeds},
               "environment": {**environment(ctx.device), "world_size": ctx.world_size}, **aggregate(results)}
        if ctx.is_primary:
            out.write_json("aggregate.json", agg)
            write_aggregate_report(agg, results, out.path)
        ctx.barrier()
    return agg, out.path


# ----------------------------------------------------------------------------------------------------------
def summary_rows(agg: dict) -> list[dict]:
    return [{"arm": arm, "metric": m, "images": v.get("images"), "n_images": v["n_images"], "n": v["n"],
             "method": v["method"], "mean": v["mean"], "std": v["std"], "se": v.get("se"), "ci_lo": v["lo"],
             "ci_hi": v["hi"]}
            for arm, metrics in agg["arms"].items() for m, v in metrics.items()]


def difference_rows(agg: dict) -> list[dict]:
    return [{"pair": pair, "metric": m, "images": v.get("images"), "n_images": v["n_images"], "n": v["n"],
             "method": v["method"], "how": v.get("how"), "mean": v["mean"], "se": v.get("se"), "ci_lo": v["lo"],
             "ci_hi": v["hi"], "p": v.get("p"), "p_holm": v.get("p_holm"), "m": v.get("m"), "holds": v.get("holds"),
             "verdict": v["verdict"]}
            for pair, metrics in agg["differences"].items() for m, v in metrics.items()]


def _fmt(v: dict, time: bool = False) -> str:
    if v["mean"] is None or math.isnan(v["mean"]):
        return "—"
    scale, unit = (1, " s") if time else (100, "")
    half = "" if v["lo"] is None or math.isnan(v["lo"]) else f" ± {v['half'] * scale:.1f}"
    n = "" if time or v["n_images"] is None else f" (n={v['n_images']})"
    return f"{v['mean'] * scale:.1f}{half}{unit}{n}"


def _ratio_line(label: str, r: dict) -> Optional[str]:
    if r["mean"] is None or math.isnan(r["mean"]):
        return None
    spread = "" if math.isnan(r["lo"]) else f" (95 % t-interval {r['lo']:.3f} to {r['hi']:.3f})"
    return f"- {label}: **{r['mean']:.3f}**{spread}, over {r['seeds_defined']} seed(s)."


def headline_lines(agg: dict) -> list[str]:
    """Sentences that say whether each key difference is distinguishable from zero after Holm's correction."""
    seeds = agg["seeds"]
    how = (f"95 % t-interval over {len(seeds)} seeds (paired by seed)" if len(seeds) > 1
           else "95 % interval over the images of one seed (paired per image)")
    diffs = [v for metrics in agg["differences"].values() for v in metrics.values()]
    m = diffs[0].get("m") if diffs else 0
    lines = [f"Seeds {', '.join(map(str, seeds))}; accuracies in points, mean ± half-width of the {how}; "
             f"n = evaluation images. Verdicts are controlled for all {m} differences of the table below together "
             "(Holm): one holds only if the correction keeps it.", ""]
    h = agg["headline"]
    for key, label in (("total_time_ratio", "Total wall-clock ticket / dense"),
                       ("total_cpu_time_ratio", "Total CPU-seconds ticket / dense"),
                       ("time_to_target_vs_dense", "Time to target ticket / dense (wall-clock)"),
                       ("cpu_time_to_target_vs_dense", "Time to target ticket / dense (CPU-seconds)")):
        line = _ratio_line(label, h[key]) if key in h else None
        if line:
            lines.append(line)
    if h.get("load_avg"):
        load = h["load_avg"]
        lines.append(f"- The machine's 1-minute load average ranged {load['min']:.2f}-{load['max']:.2f} over the runs"
                     + (": **it changed during the runs, so wall-clock ratios moved with it; prefer CPU-seconds**."
                        if load["changed"] else "."))
    keys = [k for k in next(iter(agg["differences"].values()), {})
            if k.startswith(("epoch1_", "test_"))] if agg["differences"] else []
    for pair, metrics in agg["differences"].items():
        for k in keys:
            if k in metrics:
                v = metrics[k]
                lines.append(f"- {pair}, {k} ({v.get('images') or ''}): {_fmt(v)} points: **{v['verdict']}**.")
    return lines


def write_aggregate_report(agg: dict, results: dict[int, dict], out: Path) -> None:
    import pandas as pd
    from .frontier import frontier_section
    from .report import markdown_table
    atomic_write_text(out / "summary.csv", pd.DataFrame(summary_rows(agg)).to_csv(index=False))
    atomic_write_text(out / "differences.csv", pd.DataFrame(difference_rows(agg)).to_csv(index=False))
    metrics = sorted({m for a in agg["arms"].values() for m in a}, key=_metric_order)
    table = pd.DataFrame([{"arm": arm, **{m: _fmt(v[m], m.endswith("_s")) if m in v else "—" for m in metrics}}
                          for arm, v in agg["arms"].items()])
    dtable = pd.DataFrame([{"pair": p, **{m: f"{_fmt(v[m])}" for m in metrics if m in v}}
                           for p, v in agg["differences"].items()])
    cfg = agg["config"]
    lines = [f"# robustlth benchmark over seeds ({cfg.get('preset') or 'custom'})", "",
             f"Model {cfg['model']['model']} (width {cfg['model']['width']}), data `{cfg['data']['data']}`; "
             "per-seed runs: " + ", ".join(f"seed {s}: `{d}`" for s, d in agg["runs"].items()) + ".", "",
             "## Headline", "", *headline_lines(agg), "", "## Arms", "",
             "Mean ± half-width of the 95 % interval (over seeds; over images for one seed), n = evaluation images.",
             "", markdown_table(table), "",
             "## Paired differences (same seed)", "", markdown_table(dtable) if len(dtable) else "(one arm only)", "",
             "Every difference with its standard error, Holm-adjusted p-value and verdict: `differences.csv`.", ""]
    lines += [f"![{f}]({f})" for f in plot_aggregate(agg, results, out)]
    lines += ["", *frontier_section([results[s] for s in agg["seeds"]], out, markdown_table)]
    lines += ["## Environment", "", "```", json.dumps(agg["environment"], indent=1), "```", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))


def _metric_order(m: str) -> tuple:
    order = ("epoch1_", "epoch5_", "last_", "test_", "search_s", "train_s", "total_s", "search_cpu_s",
             "train_cpu_s", "total_cpu_s")
    return (next((i for i, p in enumerate(order) if m.startswith(p)), len(order)), m)


TEST_BARS = (("test_clean", "clean"), ("test_pgd20", "PGD-20"), ("test_worst_case", "worst case, all attacks"))


def plot_aggregate(agg: dict, results: dict[int, dict], out: Path) -> list[str]:
    """Accuracy per epoch with a band of ± one standard error over seeds, and final test accuracies with bars of
    ± one standard error; each arm in its colour of every figure, y from 0, whole epochs."""
    from ..plotting import arm_label, arm_style, error_bars, from_zero, plot_series, pyplot, save_figure
    from .metrics import curve_metric
    from .report import SHORT
    plt = pyplot()
    seeds = agg["seeds"]
    first = results[seeds[0]]
    split = next(iter(first["arms"].values()))["eval_split"]
    n_eval = first["config"]["train"]["eval_n"]
    key = curve_metric(first["arms"]["dense"]["curve"])
    words = {"robust": "worst case of PGD-20 and CW-20", "pgd20": "PGD-20 (cross-entropy; no CW measured)",
             "clean": "clean"}[key]
    files = []
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2))
    for i, name in enumerate(first["arms"]):
        curves = [results[s]["arms"][name]["curve"] for s in seeds if name in results[s]["arms"]]
        epochs = list(range(1, min(len(c) for c in curves) + 1))
        for ax, what in zip(axes, ("clean", key)):
            runs = [[c[e - 1].get(what) for e in epochs] for c in curves]
            if all(v is None for r in runs for v in r):
                continue
            plot_series(ax, epochs, runs, arm_label(name), i, n_images=n_eval, name=name)
    band = f"± one s.e. over {len(seeds)} seeds" if len(seeds) > 1 else f"± one binomial s.e. of {n_eval} images"
    for ax, what in zip(axes, ("clean", words)):
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{SHORT.get(what, what)} accuracy ({split})")
        ax.set_title(f"{what} accuracy per epoch", fontsize=10)
    from_zero(*axes)
    fig.suptitle(f"{split} set, {n_eval} images; bands {band}", fontsize=9)
    files.append(save_figure(fig, out / "accuracy_vs_epoch_seeds.png", list(axes), integer_x=True,
                             legend="outside"))
    bars = [(m, label) for m, label in TEST_BARS if any(m in a for a in agg["arms"].values())]
    limited = sorted({m for a in agg["arms"].values() for m in a if m.startswith("test_worst_case_first_")})
    if limited:  # the worst case where every attack ran replaces the one that mixes image sets
        k = limited[0].rsplit("_", 1)[-1]
        bars = [b for b in bars if b[0] != "test_worst_case"] + [(limited[0], f"worst case, all attacks (first {k})")]
    if bars:
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        width = 0.8 / max(1, len(agg["arms"]))
        for i, (name, a) in enumerate(agg["arms"].items()):
            xs = [j + i * width for j, (m, _) in enumerate(bars) if m in a]
            vals = [a[m] for m, _ in bars if m in a]
            se = [v.get("se") if v.get("se") is not None else float("nan") for v in vals]
            st = arm_style(name, i)
            ax.bar(xs, [v["mean"] for v in vals], width, color=st["color"], label=arm_label(name))
            error_bars(ax, xs, [v["mean"] for v in vals], se, color="black", ls="none", capsize=3, lw=1)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(bars))],
                      [f"{label}\n(n={next(iter(agg['arms'].values())).get(m, {}).get('n_images')})"
                       for m, label in bars], fontsize=8)
        ax.set_ylabel(f"test accuracy (bars {band.replace(str(n_eval) + ' images', 'the test images')})", fontsize=9)
        from_zero(ax)
        files.append(save_figure(fig, out / "final_test_seeds.png", [ax], legend="outside"))
    return files
