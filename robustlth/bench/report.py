"""Benchmark reports from a bench's result.json: a CSV (one row per arm), plots, and report.md. Re-rendered by
`robustlth report RUN_DIR`; several run directories combine into one comparison table."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from ..errors import FileFormatError, UsageError
from ..plotting import binomial_se
from ..runs import atomic_write_text
from ..safety import read_json
from ..stages import DONE


def final_columns(final: Optional[dict]) -> dict:
    """Final test-set metrics, each column naming the images it covers: the per-sample worst case over all
    attacks first (over the first K images when an attack such as AutoAttack ran on those only), then clean
    accuracy and the accuracy after each attack, cumulative (robust to it and every attack before it)."""
    if not final:
        return {}
    n, out = final["n"], {}
    for k, v in final.items():
        if k.startswith("worst_case_first_"):
            out[f"test_worst_all_attacks_n{k[len('worst_case_first_'):]}"] = v
    limited = {a["name"]: a["n"] for a in final["attacks"] if a.get("n") is not None and a["n"] < n}
    out[f"test_worst_case_n{n}" + "".join(f"_{a}_on_{k}" for a, k in limited.items())] = final["worst_case"]
    out[f"test_clean_n{n}"] = final["clean"]
    for a in final["attacks"]:
        ran = f"_ran_on_{limited[a['name']]}" if a["name"] in limited else ""
        out[f"test_{a['name']}_cum_n{n}{ran}"] = a["robust_after"]
    return out


def worst_case_metric(final: dict) -> tuple[str, float, int]:
    """(label, value, images) of the honest final number: the worst case over every attack, on the images
    where every attack ran."""
    for k, v in final.items():
        if k.startswith("worst_case_first_"):
            return "worst case over all attacks", v, int(k[len("worst_case_first_"):])
    return "worst case over all attacks", final["worst_case"], final["n"]


def headline_lines(results: dict) -> list[str]:
    """The honest headline, in order: the ticket's time to target against the dense run's own time to target,
    the total-time ratio, then the final per-sample worst case over all attacks."""
    h, arms = results["headline"], results["arms"]
    cfg = results["config"]
    ttt, dense, ticket = h["time_to_target"], arms["dense"], arms["ticket"]
    target = (f"target: dense final PGD-20 on the {h['target_split']} set ({cfg['train']['eval_n']} images) minus "
              f"{cfg['bench']['target_tolerance']:.2f} = {h['target_pgd20']:.4f}")
    if ttt.get("ticket") is None:
        first = f"Time to target: the ticket never reached it; the dense run did after {ttt['dense']:.1f} s ({target})."
    else:
        first = (f"Time to target, ticket vs the dense run's own: **{h['time_to_target_vs_dense']:.2f}x** "
                 f"({ttt['ticket']:.1f} s vs {ttt['dense']:.1f} s; below 1: the ticket gets there sooner; {target}).")
    lines = [first,
             f"Total wall-clock ticket / dense: {h['total_time_ratio']:.3f} ({ticket['total_time']:.1f} s, search "
             f"included, vs {dense['total_time']:.1f} s for all {dense['epochs']} dense epochs; evaluation excluded)."]
    if dense.get("final") and ticket.get("final"):
        label, d, n = worst_case_metric(dense["final"])
        _, t, _ = worst_case_metric(ticket["final"])
        names = ", ".join(a["name"] for a in dense["final"]["attacks"])
        lines.append(f"Final test set, per-sample {label} ({names}) on {n} images: ticket {t:.4f}, dense {d:.4f} "
                     f"(ticket − dense {t - d:+.4f}; one standard error about {binomial_se(d, n):.3f}).")
    return lines


def arms_table(results: dict, run_name: str = "") -> pd.DataFrame:
    rows = []
    for name, a in results["arms"].items():
        split, n_eval = a["eval_split"], results["config"]["train"]["eval_n"]
        row = {"run": run_name, "arm": name, "epochs": a["epochs"], "sparsity": round(a["sparsity"], 4),
               "search_s": round(a["search_time"], 1), "train_s": round(a["train_time"], 1),
               "total_s": round(a["total_time"], 1), "eval_s": round(a["eval_time"], 1),
               "time_to_target_s": results["headline"]["time_to_target"].get(name)}
        row.update(final_columns(a["final"]))
        row.update({f"epoch1_{split}_clean_n{n_eval}": a["curve"][0]["clean"],
                    f"epoch1_{split}_pgd20_n{n_eval}": a["curve"][0]["pgd20"],
                    f"last_{split}_clean_n{n_eval}": a["curve"][-1]["clean"],
                    f"last_{split}_pgd20_n{n_eval}": a["curve"][-1]["pgd20"]})
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


def plot(results: dict, out_dir: Path, seeds: Optional[dict[str, list[dict]]] = None) -> list[str]:
    """Robust accuracy against wall-clock and accuracy per epoch, one distinct colour and marker per arm.
    `seeds` (arm -> several runs' arm dicts) draws each arm's mean with a ± s.e. band instead of one run."""
    from ..plotting import eval_note, plot_series, pyplot, save_figure, style
    plt = pyplot()
    files = []
    arms = seeds or {name: [a] for name, a in results["arms"].items()}
    split = next(iter(results["arms"].values()))["eval_split"]
    note = eval_note(split, results["config"]["train"]["eval_n"])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    search_ends = []
    for i, (name, runs) in enumerate(arms.items()):
        a = runs[0]
        x = [0] + [p["wall_clock"] for p in a["curve"]]
        plot_series(ax, x, [[None] + [p["pgd20"] for p in r["curve"]] for r in runs], name, i,
                    ls=("-", "--", "-.", ":")[i % 4])
        if a["search_time"] and a["search_time"] not in search_ends:
            search_ends.append(a["search_time"])
            ax.axvline(a["search_time"], ls=":", lw=1, color=style(i)["color"],
                       label=f"search ends ({name} and arms sharing its search)")
    ax.axhline(results["headline"]["target_pgd20"], color="grey", ls="--", lw=0.8,
               label="target: dense final − tolerance")
    ax.set_xlabel("wall-clock seconds (search + training; evaluation excluded)")
    ax.set_ylabel(f"PGD-20 accuracy ({split})")
    ax.set_title(f"Robust accuracy vs wall-clock\n({note})", fontsize=10)
    files.append(save_figure(fig, out_dir / "robust_vs_time.png", [ax], legend="outside"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (name, runs) in enumerate(arms.items()):
        epochs = [p["epoch"] for p in runs[0]["curve"]]
        ls = ("-", "--", "-.", ":")[i % 4]
        plot_series(axes[0], epochs, [[p["clean"] for p in r["curve"]] for r in runs], name, i, ls=ls)
        plot_series(axes[1], epochs, [[p["pgd20"] for p in r["curve"]] for r in runs], name, i, ls=ls)
    for ax, what in zip(axes, ("clean", "PGD-20")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{what} accuracy ({split})")
        ax.set_title(f"{what} accuracy per epoch", fontsize=10)
    fig.suptitle(note, fontsize=9)
    files.append(save_figure(fig, out_dir / "accuracy_vs_epoch.png", list(axes), integer_x=True, legend="outside"))
    return files


def environment_note(env: dict) -> str:
    world = env.get("world_size") or 1
    parallel = (f"Data-parallel over {world} processes (times are the primary process's wall clock). "
                if world > 1 else "")
    commit = env.get("git_commit")
    if not commit:
        return parallel + f"robustlth {env.get('robustlth', '?')}, commit unknown (not run from a git checkout)."
    clean = not commit.endswith("+dirty") and not env.get("robustlth_dirty")
    return (parallel + f"robustlth {env.get('robustlth', '?')} at commit {commit.split('+')[0][:12]}, "
            + ("a clean tree." if clean else "**with uncommitted changes** (its source differed from that commit)."))


def render_markdown(results: dict, plots: Iterable[str], extra: Iterable[str] = ()) -> str:
    h, cfg, env = results["headline"], results["config"], results["environment"]
    b, a, p = cfg["bench"], cfg["attack"], cfg["prune"]
    at = f"PGD-{a['attack_steps']} AT" if a["attack"] == "pgd" else f"{a['attack']} training"
    lines = [f"# robustlth benchmark ({cfg.get('preset') or 'custom'})", ""]
    lines += [f"- {line}" for line in headline_lines(results)]
    lines += ["", f"Model {cfg['model']['model']} (width {cfg['model']['width']}), data `{cfg['data']['data']}`, "
              f"dense {at} {b['dense_epochs']} epochs vs ticket search ({b['search_attack']}, "
              f"{b['search_epochs']} epochs) + {at} {b['ticket_epochs']} epochs, "
              f"pruning {p['strategy']} {p['ratio']:.0%}, seed {cfg['train']['seed']}. {environment_note(env)}", "",
              "## Details", ""]
    if h.get("time_to_target_ratio") is not None:
        lines.append(f"- Ticket time to target / dense *total* time: {h['time_to_target_ratio']:.3f} (not a speed-up "
                     "over dense training stopped at the target: see the first line).")
    if "best_epoch_val" in h:
        lines.append("- Best epoch by validation PGD-20 (reported, not used for the table): " +
                     ", ".join(f"{k} {v}" for k, v in h["best_epoch_val"].items()) + ".")
    stopped = {k: a["stopped"] for k, a in results["arms"].items() if a["stopped"]}
    for k, v in stopped.items():
        lines.append(f"- **{k} stopped early**: {v}")
    if not any(a.get("final") for a in results["arms"].values()):
        lines.append("- No final test-set evaluation (final_attacks is empty).")
    lines += ["", "## Arms", "",
              "Columns name the images they cover (`_nK`). `test_worst_all_attacks_nK`: per-sample worst case over "
              "every attack, on the images where every attack ran; `test_ATTACK_cum`: robust accuracy after that "
              "attack and all before it (cumulative, each attack run on the points still robust); `_ran_on_K`: the "
              "attack ran on the first K images only, the others keep their verdict from the earlier attacks. "
              f"Epoch columns: the per-epoch {results['arms']['dense']['eval_split']} set.", "",
              markdown_table(arms_table(results)), ""]
    if results.get("arm_dirs"):  # arms are stages beside the bench, shared with benches that need the same arm
        lines += ["Run directories of the arms, beside this one (each opens with `robustlth eval --checkpoint DIR`):",
                  ""]
        lines += [f"- {k}: `{v}`" for k, v in results["arm_dirs"].items()] + [""]
    warns = {k: a["final"]["warnings"] for k, a in results["arms"].items() if a["final"] and a["final"]["warnings"]}
    if warns:
        lines += ["## Evaluation warnings", ""] + [f"- {k}: {w}" for k, ws in warns.items() for w in ws] + [""]
    lines += [f"![{p}]({p})" for p in plots]
    lines += ["", *extra, "## Environment", "", "```", json.dumps(env, indent=1), "```", ""]
    return "\n".join(lines)


def write_report(results: dict, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "results.csv", arms_table(results).to_csv(index=False))
    files = plot(results, out_dir)
    from .frontier import frontier_section
    frontier = frontier_section([results], out_dir, markdown_table)
    atomic_write_text(out_dir / "report.md", render_markdown(results, files, frontier))


def load_results(run_dir: Path) -> dict:
    path = Path(run_dir) / DONE
    if not path.is_file():
        raise UsageError(f"{run_dir} has no {DONE}: not a finished benchmark directory")
    results = read_json(path, "benchmark results file")
    if not (isinstance(results, dict) and {"config", "environment", "headline", "arms"} <= set(results)):
        raise UsageError(f"{path} is not a benchmark's {DONE} (a train or other run?): `robustlth report` "
                         "reads bench run directories")
    problem = _results_problem(results)
    if problem:
        raise FileFormatError(f"{path} is an incomplete or damaged benchmark results file: {problem}; run the "
                              "bench again to rewrite it")
    return results


# What a report reads from a result.json, checked before any of it is written: "num" a number, "num?" a number
# or null, "int" an integer, "str" a string, "str?" a string or null, "dict" any mapping, or a nested mapping.
_NUM, _OPT_NUM = "num", "num?"
_CONFIG_KEYS = {"data": {"data": "str"}, "model": {"model": "str", "width": _NUM},
                "train": {"eval_n": "int", "seed": "int"},
                "bench": {"target_tolerance": _NUM, "dense_epochs": "int", "ticket_epochs": "int",
                          "search_epochs": "int", "search_attack": "str"},
                "attack": {"attack": "str", "attack_steps": "int"}, "prune": {"strategy": "str", "ratio": _NUM}}
_HEADLINE_KEYS = {"total_time_ratio": _NUM, "target_pgd20": _NUM, "target_split": "str", "time_to_target": "dict"}
_ARM_KEYS = {"eval_split": "str", "epochs": "int", "sparsity": _NUM, "search_time": _NUM, "train_time": _NUM,
             "total_time": _NUM, "eval_time": _NUM, "stopped": "str?", "curve": "list", "final": "dict?"}
_POINT_KEYS = {"epoch": "int", "wall_clock": _NUM, "clean": _OPT_NUM, "pgd20": _OPT_NUM}
_FINAL_KEYS = {"n": "int", "worst_case": _NUM, "clean": _NUM, "attacks": "list", "warnings": "list"}
_ATTACK_KEYS = {"name": "str", "robust_after": _NUM}


def _kind_ok(value, kind: str) -> bool:
    if kind.endswith("?") and value is None:
        return True
    kind = kind.rstrip("?")
    if kind in ("num", "int"):
        return isinstance(value, (int, float) if kind == "num" else int) and not isinstance(value, bool)
    return isinstance(value, {"str": str, "dict": dict, "list": list}[kind])


def _keys_problem(d, keys: dict, where: str) -> Optional[str]:
    """The first key of `keys` that `d` (at `where`) lacks or holds with the wrong kind of value, as a phrase."""
    if not isinstance(d, dict):
        return f"{where} is not a mapping"
    for k, kind in keys.items():
        at = f"{where}.{k}"
        if k not in d:
            return f"{at} is missing"
        if isinstance(kind, dict):
            problem = _keys_problem(d[k], kind, at)
            if problem:
                return problem
        elif not _kind_ok(d[k], kind):
            return f"{at} is {d[k]!r}, not {_KIND_WORDS[kind]}"
    return None


_KIND_WORDS = {"num": "a number", "num?": "a number or null", "int": "an integer", "str": "a string",
               "str?": "a string or null", "dict": "a mapping", "dict?": "a mapping or null", "list": "a list"}


def _results_problem(results: dict) -> Optional[str]:
    """What keeps a report from being written out of `results` (a phrase naming the key), or None."""
    problem = (_keys_problem(results["config"], _CONFIG_KEYS, "config")
               or _keys_problem(results["headline"], _HEADLINE_KEYS, "headline"))
    if problem:
        return problem
    if not isinstance(results["environment"], dict):
        return "environment is not a mapping"
    arms, ttt = results["arms"], results["headline"]["time_to_target"]
    if not isinstance(arms, dict):
        return "arms is not a mapping of arm name: results"
    for name in ("dense", "ticket"):
        if name not in arms:
            return f"arms.{name} is missing (a bench has arms dense and ticket)"
    for name, value in ttt.items():
        if not _kind_ok(value, _OPT_NUM):
            return f"headline.time_to_target.{name} is {value!r}, not a number or null"
    if not _kind_ok(ttt.get("dense"), _NUM):
        return "headline.time_to_target.dense is missing"
    if ttt.get("ticket") is not None and not _kind_ok(results["headline"].get("time_to_target_vs_dense"), _NUM):
        return "headline.time_to_target_vs_dense is missing"
    for name, arm in arms.items():
        problem = _keys_problem(arm, _ARM_KEYS, f"arms.{name}")
        if problem:
            return problem
        if not arm["curve"]:
            return f"arms.{name}.curve is empty"
        for i, point in enumerate(arm["curve"]):
            problem = _keys_problem(point, _POINT_KEYS, f"arms.{name}.curve[{i}]")
            if problem:
                return problem
        final = arm["final"]
        if final:
            problem = _keys_problem(final, _FINAL_KEYS, f"arms.{name}.final")
            if problem:
                return problem
            for i, a in enumerate(final["attacks"]):
                problem = _keys_problem(a, _ATTACK_KEYS, f"arms.{name}.final.attacks[{i}]")
                if problem:
                    return problem
    if "arm_dirs" in results and not isinstance(results["arm_dirs"], dict):
        return "arm_dirs is not a mapping"
    return None


def compare(run_dirs: list[Path]) -> pd.DataFrame:
    frames = []
    for d in run_dirs:
        res = load_results(d)
        df = arms_table(res, Path(d).name)
        df.insert(2, "ticket/dense time", round(res["headline"]["total_time_ratio"], 4))
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
