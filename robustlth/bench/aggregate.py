"""`robustlth bench --seeds 0,1,2`: one cached benchmark run per seed, then their spread.

Each seed is an ordinary bench run (its own run directory, resumable, reused by a later single-seed call with
that seed). The aggregate directory holds pointers to them and the statistics: per arm and metric the mean,
standard deviation and 95 % t-interval over seeds (one seed: a bootstrap over the test images of the final
evaluation), and the paired differences ticket - dense, ticket - reinit (same seed: same θ0 and data order),
each with the number of evaluation images beside it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import config_hash
from ..runs import atomic_write_text, environment
from ..stats import Interval, bootstrap_interval, paired_bootstrap_interval, paired_difference, t_interval, \
    unpack_flags, verdict_word
from ..training import RunContext
from .arms import pairs
from .config import BenchSetup
from .harness import run_bench

Log = Optional[Callable[[str], None]]


def arm_values(arm: dict, eval_n: int) -> dict[str, dict]:
    """Every accuracy and time of one arm of one run: {metric: {value, n_images, flags (final only)}}."""
    split, curve = arm["eval_split"], arm["curve"]
    out = {}
    for label, point in (("epoch1", curve[0] if curve else None), ("epoch5", curve[4] if len(curve) >= 5 else None),
                         ("last", curve[-1] if curve else None)):
        for what in ("clean", "pgd20"):
            if point is not None and point.get(what) is not None:
                out[f"{label}_{split}_{what}"] = {"value": point[what], "n_images": eval_n}
    final = arm.get("final")
    if final:
        flags = final.get("flags", {})
        n = final["n"]
        out["test_clean"] = {"value": final["clean"], "n_images": n, "flags": flags.get("clean")}
        for a in final["attacks"]:  # cumulative over all n images; an attack run on the first K only says so
            name = a["name"] if a.get("n", n) >= n else f"{a['name']}_ran_on_{a['n']}"
            out[f"test_{name}"] = {"value": a["robust_after"], "n_images": n, "flags": flags.get(a["name"])}
        last = flags.get(final["attacks"][-1]["name"]) if final["attacks"] else flags.get("clean")
        out["test_worst_case"] = {"value": final["worst_case"], "n_images": n, "flags": last}
        for k, v in final.items():
            if k.startswith("worst_case_first_"):
                m = int(k.rsplit("_", 1)[1])
                out[f"test_{k}"] = {"value": v, "n_images": m, "flags": last[:m] if last else None}
    for k in ("search_time", "train_time", "total_time"):
        out[k.replace("_time", "_s")] = {"value": arm[k], "n_images": None}
    return out


def _interval(values: dict[int, dict]) -> Interval:
    """Over seeds when there are several; one seed: bootstrap over its images if its flags were stored."""
    if len(values) == 1:
        (v,) = values.values()
        if v.get("flags"):
            return bootstrap_interval(unpack_flags(v["flags"]))
    return t_interval(v["value"] for v in values.values())


def _difference(a: dict[int, dict], b: dict[int, dict]) -> Interval:
    seeds = sorted(set(a) & set(b))
    if len(seeds) == 1 and a[seeds[0]].get("flags") and b[seeds[0]].get("flags"):
        s = seeds[0]
        return paired_bootstrap_interval(unpack_flags(a[s]["flags"]), unpack_flags(b[s]["flags"]))
    return paired_difference({s: a[s]["value"] for s in seeds}, {s: b[s]["value"] for s in seeds})


def _entry(iv: Interval, n_images) -> dict:
    return {**iv.to_dict(), "n_images": n_images}


def aggregate(results: dict[int, dict]) -> dict:
    """Statistics over the per-seed results.json contents of one benchmark configuration."""
    seeds = sorted(results)
    eval_n = results[seeds[0]]["config"]["train"]["eval_n"]
    per_arm: dict[str, dict[str, dict[int, dict]]] = {}
    for s in seeds:
        for name, arm in results[s]["arms"].items():
            for metric, v in arm_values(arm, eval_n).items():
                per_arm.setdefault(name, {}).setdefault(metric, {})[s] = v
    arms = {name: {m: _entry(_interval(v), next(iter(v.values()))["n_images"]) for m, v in metrics.items()}
            for name, metrics in per_arm.items()}
    diffs = {}
    for a, b in pairs(per_arm):
        if a in per_arm and b in per_arm:
            common = [m for m in per_arm[a] if m in per_arm[b] and not m.endswith("_s")]
            diffs[f"{a} - {b}"] = {}
            for m in common:
                iv = _difference(per_arm[a][m], per_arm[b][m])
                diffs[f"{a} - {b}"][m] = {**_entry(iv, next(iter(per_arm[a][m].values()))["n_images"]),
                                          "verdict": verdict_word(iv)}
    heads = {k: {s: results[s]["headline"].get(k) for s in seeds} for k in ("total_time_ratio",
                                                                              "time_to_target_vs_dense")}
    headline = {k: {**t_interval(v for v in vals.values() if v is not None).to_dict(),
                    "seeds_defined": sum(v is not None for v in vals.values())} for k, vals in heads.items()}
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
    return [{"arm": arm, "metric": m, "n_images": v["n_images"], "n": v["n"], "method": v["method"], "mean": v["mean"],
             "std": v["std"], "ci_lo": v["lo"], "ci_hi": v["hi"]}
            for arm, metrics in agg["arms"].items() for m, v in metrics.items()]


def difference_rows(agg: dict) -> list[dict]:
    return [{"pair": pair, "metric": m, "n_images": v["n_images"], "n": v["n"], "method": v["method"],
             "mean": v["mean"], "ci_lo": v["lo"], "ci_hi": v["hi"], "verdict": v["verdict"]}
            for pair, metrics in agg["differences"].items() for m, v in metrics.items()]


def _fmt(v: dict, time: bool = False) -> str:
    if v["mean"] is None or math.isnan(v["mean"]):
        return "—"
    scale, unit = (1, " s") if time else (100, "")
    half = "" if math.isnan(v["lo"]) else f" ± {v['half'] * scale:.1f}"
    n = "" if time or v["n_images"] is None else f" (n={v['n_images']})"
    return f"{v['mean'] * scale:.1f}{half}{unit}{n}"


def headline_lines(agg: dict) -> list[str]:
    """Sentences that say whether each key difference is distinguishable from zero."""
    seeds = agg["seeds"]
    how = (f"95 % t-interval over {len(seeds)} seeds" if len(seeds) > 1
           else "95 % bootstrap interval over the test images of one seed")
    lines = [f"Seeds {', '.join(map(str, seeds))}; accuracies in points, mean ± half-width of the {how}; "
             "n = evaluation images.", ""]
    r = agg["headline"]["total_time_ratio"]
    if not math.isnan(r["mean"]):
        spread = "" if math.isnan(r["lo"]) else f" (95 % CI {r['lo']:.3f} to {r['hi']:.3f})"
        lines.append(f"- Total wall-clock ticket / dense: **{r['mean']:.3f}**{spread}.")
    keys = [k for k in next(iter(agg["differences"].values()), {})
            if k.startswith(("epoch1_", "epoch5_", "test_"))] if agg["differences"] else []
    for pair, metrics in agg["differences"].items():
        for k in keys:
            if k in metrics:
                v = metrics[k]
                lines.append(f"- {pair}, {k}: {_fmt(v)} points: **{v['verdict']}**.")
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
             "## Headline", "", *headline_lines(agg), "", "## Arms", "", markdown_table(table), "",
             "## Paired differences (same seed)", "", markdown_table(dtable) if len(dtable) else "(one arm only)", ""]
    lines += [f"![{f}]({f})" for f in plot_aggregate(agg, results, out)]
    lines += ["", *frontier_section([results[s] for s in agg["seeds"]], out, markdown_table)]
    lines += ["## Environment", "", "```", json.dumps(agg["environment"], indent=1), "```", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))


def _metric_order(m: str) -> tuple:
    order = ("epoch1_", "epoch5_", "last_", "test_", "search_s", "train_s", "total_s")
    return (next((i for i, p in enumerate(order) if m.startswith(p)), len(order)), m)


def plot_aggregate(agg: dict, results: dict[int, dict], out: Path) -> list[str]:
    """Accuracy per epoch with a 95 % band over seeds, and final test accuracies with error bars."""
    from ..plotting import pyplot, save_figure
    plt = pyplot()
    seeds = agg["seeds"]
    first = results[seeds[0]]
    split = next(iter(first["arms"].values()))["eval_split"]
    files = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name in first["arms"]:
        curves = [results[s]["arms"][name]["curve"] for s in seeds]
        for ax, what in zip(axes, ("clean", "pgd20")):
            epochs = range(1, min(len(c) for c in curves) + 1)
            ivs = [t_interval(c[e - 1][what] for c in curves) for e in epochs]
            if all(math.isnan(iv.mean) for iv in ivs):
                continue
            line, = ax.plot(list(epochs), [iv.mean for iv in ivs], marker="o", label=name)
            if len(seeds) > 1:
                ax.fill_between(list(epochs), [max(iv.lo, 0) for iv in ivs], [min(iv.hi, 1) for iv in ivs], alpha=0.2,
                                color=line.get_color())
    for ax, what in zip(axes, ("clean", "PGD-20")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{what} accuracy ({split}, n={first['config']['train']['eval_n']}; 95 % band)")
    files.append(save_figure(fig, out / "accuracy_vs_epoch_seeds.png", axes, legend="outside"))
    test_metrics = [m for m in ("test_clean", "test_pgd20", "test_worst_case") if
                    any(m in a for a in agg["arms"].values())]
    if test_metrics:
        fig, ax = plt.subplots(figsize=(6, 4))
        width = 0.8 / max(1, len(agg["arms"]))
        for i, (name, a) in enumerate(agg["arms"].items()):
            xs = [j + i * width for j, m in enumerate(test_metrics) if m in a]
            vals = [a[m] for m in test_metrics if m in a]
            err = [[v["mean"] - max(v["lo"], 0) if not math.isnan(v["lo"]) else 0 for v in vals],  # clipped to [0, 1]
                   [min(v["hi"], 1) - v["mean"] if not math.isnan(v["hi"]) else 0 for v in vals]]
            ax.bar(xs, [v["mean"] for v in vals], width, yerr=err, capsize=3, label=name)
        n = next(iter(agg["arms"].values())).get("test_clean", {}).get("n_images")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(test_metrics))], test_metrics)
        ax.set_ylabel(f"test accuracy (n={n}; 95 % CI)")
        files.append(save_figure(fig, out / "final_test_seeds.png", [ax], legend="outside"))
    return files
