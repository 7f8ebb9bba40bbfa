"""Benchmark reports from a bench's result.json: a CSV (one row per arm), plots, and report.md. Re-rendered by
`robustlth report RUN_DIR`; several run directories combine into one comparison table."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from ..errors import FileFormatError, UsageError
from ..runs import atomic_write_text
from ..safety import read_json
from ..stages import DONE
from .metrics import curve_metric_words, fmt_points, image_sets, worst_case_images


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
    metric, k = worst_case_images(final)
    return "worst case over all attacks", final[metric], k


def upgraded(results: dict, force: bool = False) -> dict:
    """`results` with its headline recomputed by this version when an earlier one wrote it (no paired
    differences, no CPU ratios, a target on cross-entropy PGD only): the report then prints this version's
    numbers, all from the one headline. Config sections of earlier layouts (a flat `bench:` section) are moved
    to their sections first. `force`: recompute it whatever wrote it."""
    if "differences" in results["headline"] and not force:
        return results
    from .config import BenchSetup, moved_to_sections
    from .metrics import headline
    cfg = moved_to_sections({k: v for k, v in results["config"].items() if k != "preset"})
    try:
        setup = BenchSetup.from_sections(cfg)
    except Exception:  # a config this version cannot read: keep the stored headline
        return results
    out = {**results, "config": {"preset": results["config"].get("preset"), **setup.to_dict()}}
    out["headline"] = {**headline(results["arms"], setup), "recomputed": True}
    if force and not results["headline"].get("recomputed") and "differences" in results["headline"]:
        out["headline"]["recomputed"] = False  # written by the run itself, recomputed the same way
    return out


def _target(h: dict) -> float:
    return h["target"] if "target" in h else h["target_pgd20"]


def _pts(v: Optional[float]) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:+.1f}"


def headline_lines(results: dict) -> list[str]:
    """The honest headline, in order: the ticket's time to target against the dense run's own (wall clock and CPU
    seconds), the total-time ratios and the machine's load, then the final per-sample worst case over all attacks
    with its paired interval and the images it rests on. Every number is read from the stored headline (the one
    source of the stdout summary, report.md and result.json)."""
    h, arms = results["headline"], results["arms"]
    cfg = results["config"]
    ttt, ctt, dense, ticket = h["time_to_target"], h.get("cpu_time_to_target") or {}, arms["dense"], arms["ticket"]
    metric = h.get("target_metric", "pgd20")
    n_eval = h.get("target_n") or cfg["train"]["eval_n"]
    target = (f"target: dense final {curve_metric_words(metric)} on the {h['target_split']} set ({n_eval} images) "
              f"minus {cfg['bench']['target_tolerance']:.2f} = {_target(h):.4f}")
    if metric == "pgd20":
        target += ("; this run measured cross-entropy PGD only, which overstates robustness against margin attacks, "
                   "so this target is lenient")
    cpu = ""
    if h.get("cpu_time_to_target_vs_dense") is not None:
        cpu = (f"; in process CPU-seconds **{h['cpu_time_to_target_vs_dense']:.2f}x** ({ctt['ticket']:.1f} vs "
               f"{ctt['dense']:.1f})")
    if ttt.get("ticket") is None:
        first = (f"Time to target: the ticket never reached it; the dense run did after {ttt['dense']:.1f} s "
                 f"({target}).")
    else:
        first = (f"Time to target, ticket vs the dense run's own: **{h['time_to_target_vs_dense']:.2f}x** wall-clock "
                 f"({ttt['ticket']:.1f} s vs {ttt['dense']:.1f} s){cpu}; below 1: the ticket gets there sooner; "
                 f"{target}.")
    total = (f"Total wall-clock ticket / dense: {h['total_time_ratio']:.3f} ({ticket['total_time']:.1f} s, search "
             f"included, vs {dense['total_time']:.1f} s for all {dense['epochs']} dense epochs; evaluation excluded)")
    if h.get("total_cpu_time_ratio") is not None:
        total += (f"; in CPU-seconds {h['total_cpu_time_ratio']:.3f} ({ticket['total_cpu_time']:.1f} vs "
                  f"{dense['total_cpu_time']:.1f})")
    else:
        total += "; CPU-seconds were not recorded by this run"
    load = h.get("load_avg")
    if load:
        total += (f". The machine's 1-minute load average ranged {load['min']:.2f}-{load['max']:.2f} over the arms' "
                  f"epochs ({load['cpu_count']} CPUs)" + (": **it changed during the run, so wall-clock ratios moved "
                                                         "with it; prefer the CPU-second ratios**" if load["changed"]
                                                         else ""))
    else:
        total += ". The machine's load was not recorded by this run"
    lines = [first, total + "."]
    td = (h.get("differences") or {}).get("ticket - dense", {})
    if dense.get("final") and ticket.get("final"):
        label, d, n = worst_case_metric(dense["final"])
        _, t, _ = worst_case_metric(ticket["final"])
        sets = image_sets(dense["final"])
        names = ", ".join(f"{a} on {k}" for a, k in sets["attacks"].items())
        wc = td.get(f"test_{sets['worst_case_metric']}")
        if wc and wc.get("method") == "bound":
            diff = (f"ticket − dense {_pts(wc['mean'])} points, 95 % interval at most ±{100 * wc['half']:.1f} "
                    f"(an upper bound: this run stored no per-image verdicts to pair), n = {wc['n_images']}")
        elif wc and not math.isnan(wc.get("lo", math.nan)):
            diff = (f"ticket − dense {_pts(wc['mean'])} ± {100 * wc['half']:.1f} points, 95 % interval {wc['how']}, "
                    f"n = {wc['n_images']}")
        else:
            diff = f"ticket − dense {_pts(t - d)} points, no interval"
        line = (f"Final test set, per-sample {label} ({names}), on the {n} images every attack ran on: ticket "
                f"{t:.4f}, dense {d:.4f} ({diff}).")
        if n < sets["n"]:
            line += (f" **The worst case rests on {n} of the {sets['n']} final images** (AutoAttack ran on those "
                     f"only): its interval is{' up to' if wc and wc.get('method') == 'bound' else ''} "
                     f"±{100 * wc['half']:.1f} points wide." if wc and not math.isnan(wc.get("half", math.nan))
                     else f" **The worst case rests on {n} images.**")
            hybrid = next((v for k, v in td.items() if k.startswith("test_worst_case_")
                           and not k.startswith("test_worst_case_first_")), None)
            if hybrid:
                line += (f" On all {sets['n']} (the other attacks on all, AutoAttack's verdicts on the first {n} only):"
                         f" ticket − dense {fmt_points(hybrid)} points.")
        lines.append(line)
    return lines


def difference_table(results: dict) -> pd.DataFrame:
    """Every paired difference of the headline, one row each, naming its images and n."""
    rows = []
    for pair, metrics in (results["headline"].get("differences") or {}).items():
        for m, v in metrics.items():
            rows.append({"pair": pair, "metric": m, "images": v.get("images"), "n": v.get("n_images"),
                         "difference_points": _pts(v["mean"]),
                         "ci95_points": "—" if v["lo"] is None or math.isnan(v["lo"]) else
                         f"{100 * v['lo']:+.1f} to {100 * v['hi']:+.1f}",
                         "se_points": "—" if v.get("se") is None or math.isnan(v["se"]) else f"{100 * v['se']:.1f}",
                         "how": v.get("how"), "p_holm": v.get("p_holm"), "verdict": v.get("verdict")})
    return pd.DataFrame(rows)


def arms_table(results: dict, run_name: str = "") -> pd.DataFrame:
    """One row per arm; every accuracy column names its images (`_nK`), every time column its clock."""
    rows = []
    h = results["headline"]
    for name, a in results["arms"].items():
        split, n_eval = a["eval_split"], results["config"]["train"]["eval_n"]
        load = a.get("load_avg_range")
        row = {"run": run_name, "arm": name, "epochs": a["epochs"], "sparsity": round(a["sparsity"], 4),
               "search_s": round(a["search_time"], 1), "train_s": round(a["train_time"], 1),
               "total_s": round(a["total_time"], 1), "eval_s": round(a["eval_time"], 1),
               "total_cpu_s": None if a.get("total_cpu_time") is None else round(a["total_cpu_time"], 1),
               "load_avg": "—" if not load else f"{load[0]:.2f}-{load[1]:.2f}",
               "time_to_target_s": h["time_to_target"].get(name),
               "cpu_time_to_target_s": (h.get("cpu_time_to_target") or {}).get(name)}
        row.update(final_columns(a["final"]))
        for label, point in (("epoch1", a["curve"][0]), ("last", a["curve"][-1])):
            for what in ("clean", "pgd20", "cw20", "robust"):
                if what in ("clean", "pgd20") or point.get(what) is not None:
                    row[f"{label}_{split}_{what}_n{n_eval}"] = point.get(what)
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


SHORT = {"worst case of PGD-20 and CW-20": "worst-case robust", "PGD-20 (cross-entropy; no CW measured)": "PGD-20",
         "clean": "clean"}  # axis labels; the titles say it in full


def _search_ends(arms: dict[str, list[dict]]) -> list[tuple[float, list[str]]]:
    """Where each ticket search ends on the wall clock; arms that share a search (within 5 %: a structured arm
    adds its slicing to the same search) under one line."""
    ends: list[tuple[float, list[str]]] = []
    for name, runs in arms.items():
        t = runs[0]["search_time"]
        if not t:
            continue
        for u, names in ends:
            if abs(u - t) <= 0.05 * max(u, t):
                names.append(name)
                break
        else:
            ends.append((t, [name]))
    return ends


def plot(results: dict, out_dir: Path, seeds: Optional[dict[str, list[dict]]] = None) -> list[str]:
    """Robust accuracy against wall-clock and accuracy per epoch, each arm in its colour and marker of every
    figure, with noise bands: ± one binomial standard error of the evaluation-set size for one run, ± one
    standard error over seeds for several (`seeds`: arm -> several runs' arm dicts). Robustness is the curve's
    strongest measure (the per-image worst case of PGD-20 and CW-20; PGD-20 for runs that measured no CW)."""
    from ..plotting import arm_label, from_zero, plot_series, pyplot, save_figure
    from .metrics import curve_metric
    plt = pyplot()
    files = []
    arms = seeds or {name: [a] for name, a in results["arms"].items()}
    first = next(iter(results["arms"].values()))
    split, n_eval = first["eval_split"], results["config"]["train"]["eval_n"]
    key = curve_metric(results["arms"]["dense"]["curve"])
    words = {"robust": "worst case of PGD-20 and CW-20", "pgd20": "PGD-20 (cross-entropy; no CW measured)",
             "clean": "clean"}[key]
    band = "bands: ± one s.e. over seeds" if seeds else f"bands: ± one binomial s.e. of {n_eval} images"
    note = f"{split} set, {n_eval} images; {band}"
    h = results["headline"]
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for i, (name, runs) in enumerate(arms.items()):
        x = [0] + [p["wall_clock"] for p in runs[0]["curve"]]
        plot_series(ax, x, [[None] + [p.get(key) for p in r["curve"]] for r in runs], arm_label(name), i,
                    n_images=n_eval, name=name, ls=("-", "--", "-.", ":")[i % 4])
    for t, names in _search_ends(arms):
        ax.axvline(t, ls=":", lw=1, color="grey")
        ax.annotate("search ends", (t, 0), xytext=(3, 3), textcoords="offset points", fontsize=7, color="grey",
                    rotation=90, va="bottom")
    ax.axhline(_target(h), color="grey", ls="--", lw=0.8,
               label=f"target: dense final − {results['config']['bench']['target_tolerance']:.2f}")
    ax.set_xlabel("wall-clock seconds (search + training; evaluation excluded)")
    ax.set_ylabel(f"{SHORT[words]} accuracy ({split})")
    ax.set_title(f"{words[0].upper() + words[1:]} accuracy vs wall-clock\n({note})", fontsize=10)
    ax.set_xlim(left=0)
    from_zero(ax)
    files.append(save_figure(fig, out_dir / "robust_vs_time.png", [ax], legend="outside"))
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2))
    for i, (name, runs) in enumerate(arms.items()):
        epochs = [p["epoch"] for p in runs[0]["curve"]]
        ls = ("-", "--", "-.", ":")[i % 4]
        plot_series(axes[0], epochs, [[p["clean"] for p in r["curve"]] for r in runs], arm_label(name), i,
                    n_images=n_eval, name=name, ls=ls)
        plot_series(axes[1], epochs, [[p.get(key) for p in r["curve"]] for r in runs], arm_label(name), i,
                    n_images=n_eval, name=name, ls=ls)
    for ax, what in zip(axes, ("clean", words)):
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{SHORT.get(what, what)} accuracy ({split})")
        ax.set_title(f"{what} accuracy per epoch", fontsize=10)
    from_zero(*axes)
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
    if h.get("recomputed"):
        lines += ["", "(Headline recomputed from the stored arms by this version of robustlth: the run's own "
                  "result file predates paired intervals and CPU-second ratios.)"]
    lines += ["", f"Model {cfg['model']['model']} (width {cfg['model']['width']}), data `{cfg['data']['data']}`, "
              f"dense {at} {b['dense_epochs']} epochs vs ticket search ({b['search_attack']}, "
              f"{b['search_epochs']} epochs) + {at} {b['ticket_epochs']} epochs, "
              f"pruning {p['strategy']} {p['ratio']:.0%}, seed {cfg['train']['seed']}. {environment_note(env)}", "",
              "## Details", ""]
    if h.get("time_to_target_ratio") is not None:
        lines.append(f"- Ticket time to target / dense *total* time: {h['time_to_target_ratio']:.3f} (not a speed-up "
                     "over dense training stopped at the target: see the first line).")
    if "best_epoch_val" in h:
        lines.append(f"- Best epoch by validation {curve_metric_words(h.get('target_metric', 'pgd20'))} (reported, "
                     "not used for the table; the test set never chooses anything): " +
                     ", ".join(f"{k} {v}" for k, v in h["best_epoch_val"].items()) + ".")
    if h.get("target_metric", "pgd20") == "pgd20":
        lines.append("- Per-epoch CW was not measured by this run: the curves and the time to target use "
                     "cross-entropy PGD-20, which overstates robustness by a few points against margin attacks.")
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
    diffs = difference_table(results)
    if len(diffs):
        m = next(iter(next(iter(h["differences"].values()), {}).values()), {}).get("m")
        lines += ["## Paired differences", "",
                  "Each difference is paired: per image on the images both arms were evaluated on (one run), or over "
                  "seeds. `ci95_points`: its 95 % interval; `se_points`: one standard error of the difference (not of "
                  "one accuracy); `how`: `upper bound` where the run stored no per-image verdicts, so only the widest "
                  "interval the two accuracies allow can be given. Verdicts are controlled for the "
                  f"{m} differences tested here together (Holm): one holds only if the correction keeps it.", "",
                  markdown_table(diffs), ""]
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
    results = upgraded(results)
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
_HEADLINE_KEYS = {"total_time_ratio": _NUM, "target_split": "str", "time_to_target": "dict"}
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
    target = results["headline"].get("target", results["headline"].get("target_pgd20"))
    if not _kind_ok(target, _NUM):
        return "headline.target is missing"
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
