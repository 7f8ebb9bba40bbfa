"""Benchmark reports from results.json: a CSV (one row per arm), plots, and report.md. Re-rendered by
`robustlth report RUN_DIR`; several run directories combine into one comparison table."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..errors import UsageError
from ..runs import atomic_write_text
from ..safety import read_json
from .metrics import final_metrics


def arms_table(results: dict, run_name: str = "") -> pd.DataFrame:
    rows = []
    for name, a in results["arms"].items():
        row = {"run": run_name, "arm": name, "epochs": a["epochs"], "sparsity": round(a["sparsity"], 4),
               "search_s": round(a["search_time"], 1), "train_s": round(a["train_time"], 1),
               "total_s": round(a["total_time"], 1), "eval_s": round(a["eval_time"], 1),
               f"epoch1_{a['eval_split']}_clean": a["curve"][0]["clean"],
               f"epoch1_{a['eval_split']}_pgd20": a["curve"][0]["pgd20"],
               f"last_{a['eval_split']}_clean": a["curve"][-1]["clean"],
               f"last_{a['eval_split']}_pgd20": a["curve"][-1]["pgd20"]}
        row.update({f"test_{k}": v for k, v in final_metrics(a["final"]).items()})
        row["time_to_target_s"] = results["headline"]["time_to_target"].get(name)
        row["stopped"] = a["stopped"] or ""
        rows.append(row)
    df = pd.DataFrame(rows)
    return df if run_name else df.drop(columns="run")


def markdown_table(df: pd.DataFrame) -> str:
    def fmt(col, v):
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return "—"
        if isinstance(v, float):
            return f"{v:.1f}" if col.endswith("_s") else f"{v:.4f}"
        return str(v)
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(fmt(c, r[c]) for c in cols) + " |")
    return "\n".join(lines)


def plot(results: dict, out_dir: Path) -> list[str]:
    from ..plotting import pyplot, save_figure
    plt = pyplot()
    files = []
    split = next(iter(results["arms"].values()))["eval_split"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, a in results["arms"].items():
        ax.plot([0] + [p["wall_clock"] for p in a["curve"]], [None] + [p["pgd20"] for p in a["curve"]],
                marker="o", label=name)
        if a["search_time"]:
            ax.axvline(a["search_time"], ls=":", lw=0.8, color=ax.lines[-1].get_color())
    ax.axhline(results["headline"]["target_pgd20"], color="grey", ls="--", lw=0.8, label="dense final − tol.")
    ax.set_xlabel("wall-clock seconds (search + training; evaluation excluded)")
    ax.set_ylabel(f"PGD-20 accuracy ({split})")
    files.append(save_figure(fig, out_dir / "robust_vs_time.png", [ax]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, a in results["arms"].items():
        epochs = [p["epoch"] for p in a["curve"]]
        axes[0].plot(epochs, [p["clean"] for p in a["curve"]], marker="o", label=name)
        axes[1].plot(epochs, [p["pgd20"] for p in a["curve"]], marker="o", label=name)
    for ax, what in zip(axes, ("clean", "PGD-20")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{what} accuracy ({split})")
    files.append(save_figure(fig, out_dir / "accuracy_vs_epoch.png", axes))
    return files


def render_markdown(results: dict, plots: Iterable[str]) -> str:
    h, cfg, env = results["headline"], results["config"], results["environment"]
    b = cfg["bench"]
    ttt = h["time_to_target"]
    lines = [f"# robustlth benchmark ({cfg.get('preset') or 'custom'})", "",
             f"Model {cfg['model']['model']} (width {cfg['model']['width']}), data `{cfg['data']['data']}`, "
             f"dense PGD-{b['attack_steps']} AT {b['dense_epochs']} epochs vs ticket search ({b['search_attack']}, "
             f"{b['search_epochs']} epochs) + PGD-{b['attack_steps']} AT {b['ticket_epochs']} epochs, "
             f"pruning {b['strategy']} {b['ratio']:.0%}, seed {b['seed']}.", "",
             "## Headline", "",
             f"- Total wall-clock ticket / dense: **{h['total_time_ratio']:.3f}** "
             f"({results['arms']['ticket']['total_time']:.1f} s vs {results['arms']['dense']['total_time']:.1f} s; "
             "search included, evaluation excluded).",
             f"- Target: dense final PGD-20 on the {h['target_split']} set minus {b['target_tolerance']:.2f} = "
             f"{h['target_pgd20']:.4f}. Time to target: " + ", ".join(
                 f"{k} {'never' if v is None else f'{v:.1f} s'}" for k, v in ttt.items())
             + (f" (ticket / dense total: {h['time_to_target_ratio']:.3f})." if h["time_to_target_ratio"] is not None
                else " (the ticket never reached it).")]
    if "final_clean_diff" in h:
        lines.append(f"- Final test-set differences ticket − dense: clean {h['final_clean_diff']:+.4f}, "
                     + ", ".join(f"{k[6:-5]} {v:+.4f}" for k, v in h.items()
                                 if k.startswith("final_") and k.endswith("_diff") and k != "final_clean_diff") + ".")
    else:
        lines.append("- No final test-set evaluation (final_attacks is empty).")
    if h.get("time_to_target_vs_dense") is not None:
        lines.append(f"- The dense run itself reached the target after {ttt['dense']:.1f} s: the ticket's time to target is "
                     f"**{h['time_to_target_vs_dense']:.2f}x** the dense run's (below 1: the ticket gets there sooner).")
    if "best_epoch_val" in h:
        lines.append("- Best epoch by validation PGD-20 (reported, not used for the table): " +
                     ", ".join(f"{k} {v}" for k, v in h["best_epoch_val"].items()) + ".")
    stopped = {k: a["stopped"] for k, a in results["arms"].items() if a["stopped"]}
    for k, v in stopped.items():
        lines.append(f"- **{k} stopped early**: {v}")
    lines += ["", "## Arms (final epoch; test metrics are robust accuracy after each attack, cumulative)", "",
              markdown_table(arms_table(results)), ""]
    warns = {k: a["final"]["warnings"] for k, a in results["arms"].items() if a["final"] and a["final"]["warnings"]}
    if warns:
        lines += ["## Evaluation warnings", ""] + [f"- {k}: {w}" for k, ws in warns.items() for w in ws] + [""]
    lines += [f"![{p}]({p})" for p in plots]
    lines += ["", "## Environment", "", "```", json.dumps(env, indent=1), "```", ""]
    return "\n".join(lines)


def write_report(results: dict, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "results.csv", arms_table(results).to_csv(index=False))
    files = plot(results, out_dir)
    atomic_write_text(out_dir / "report.md", render_markdown(results, files))


def load_results(run_dir: Path) -> dict:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise UsageError(f"{run_dir} has no results.json: not a finished benchmark directory")
    results = read_json(path, "benchmark results file")
    if not (isinstance(results, dict) and {"config", "environment", "headline", "arms"} <= set(results)):
        raise UsageError(f"{path} is not a benchmark's results.json (a train or other run?): `robustlth report` "
                         "reads bench run directories")
    return results


def compare(run_dirs: list[Path]) -> pd.DataFrame:
    frames = []
    for d in run_dirs:
        res = load_results(d)
        df = arms_table(res, Path(d).name)
        df.insert(2, "ticket/dense time", round(res["headline"]["total_time_ratio"], 4))
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
