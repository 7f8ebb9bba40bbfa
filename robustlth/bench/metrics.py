"""Flat views of a benchmark's results, shared by the harness, its report and the seed aggregate (which do not
import each other), so every printed number comes from one place.

`arm_values` gives every accuracy of one arm with the images it covers (and its per-image verdicts where the run
stored them); `differences` pairs two arms' values the one way every report uses (`stats.difference_interval`:
per image for one run, over seeds for several) and controls the family of verdicts with Holm's correction.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..stats import difference_interval, holm_verdicts, unpack_flags

if TYPE_CHECKING:  # annotations only: the config imports the arms, which the headline needs at call time
    from .config import BenchSetup

# Per-epoch (validation) metrics of a curve point: the point's key, its per-image flag names (AND-ed), words.
CURVE_METRICS = {"clean": (("clean",), "clean"), "pgd20": (("pgd",), "PGD-20 (cross-entropy)"),
                 "cw20": (("cw",), "CW-20 (margin)"),
                 "robust": (("clean", "pgd", "cw"), "worst case of PGD-20 and CW-20")}


def final_metrics(final: Optional[dict]) -> dict:
    """Flat final test-set metrics: clean, each attack's cumulative robust accuracy, worst case (none: {})."""
    if not final:
        return {}
    out = {"clean": final["clean"]}
    for a in final["attacks"]:
        out[a["name"]] = a["robust_after"]
    out["worst_case"] = final["worst_case"]
    out.update({k: v for k, v in final.items() if k.startswith("worst_case_first_")})
    return out


def curve_metric(curve: list[dict]) -> str:
    """The strongest per-epoch robustness a curve has: `robust` (the per-image worst case of PGD-20 and CW-20),
    else `pgd20` (runs of earlier versions measured no CW), else `clean` (natural retraining)."""
    last = curve[-1] if curve else {}
    for key in ("robust", "pgd20"):
        if last.get(key) is not None:
            return key
    return "clean"


def curve_metric_words(key: str) -> str:
    return CURVE_METRICS[key][1] if key in CURVE_METRICS else key


def point_flags(point: dict, key: str) -> Optional[np.ndarray]:
    """Per-image verdicts of one curve point for metric `key` (None when the run stored none)."""
    stored = point.get("flags") or {}
    names = CURVE_METRICS.get(key, ((),))[0]
    if not names or any(n not in stored for n in names):
        return None
    out = unpack_flags(stored[names[0]])
    for n in names[1:]:
        out = out & unpack_flags(stored[n])
    return out


def worst_case_images(final: dict) -> tuple[str, int]:
    """(metric, images) of the honest final number: the per-sample worst case over every attack, on the images
    where every attack ran (the first K when an attack such as AutoAttack ran on those only)."""
    for k in final:
        if k.startswith("worst_case_first_"):
            return k, int(k[len("worst_case_first_"):])
    return "worst_case", int(final["n"])


def image_sets(final: Optional[dict]) -> Optional[dict]:
    """Which test images each number covers: {"n": all final images, "attacks": {attack: images it ran on},
    "worst_case_n": images where every attack ran, "words": one sentence}."""
    if not final:
        return None
    n = int(final["n"])
    ran = {a["name"]: int(a.get("n") or n) for a in final["attacks"]}
    metric, k = worst_case_images(final)
    limited = {a: m for a, m in ran.items() if m < n}
    words = (f"the first {n} test images; " + ", ".join(f"{a} on {m}" for a, m in ran.items())
             + (f"; worst case over every attack on the first {k} (where every attack ran)" if limited else
                f"; worst case over every attack on all {n}"))
    return {"n": n, "attacks": ran, "worst_case_metric": metric, "worst_case_n": k, "words": words}


def arm_values(arm: dict, eval_n: int) -> dict[str, dict]:
    """Every accuracy and time of one arm of one run: {metric: {value, n_images, images, flags}}; `flags` (an
    array of per-image verdicts, or None) lets two arms be paired image by image."""
    split, curve = arm["eval_split"], arm["curve"]
    out = {}
    points = (("epoch1", curve[0] if curve else None), ("epoch5", curve[4] if len(curve) >= 5 else None),
              ("last", curve[-1] if curve else None))
    for label, point in points:
        for what in CURVE_METRICS:
            if point is not None and point.get(what) is not None:
                out[f"{label}_{split}_{what}"] = {"value": point[what], "n_images": eval_n,
                                                  "images": f"{split} set, {eval_n} images",
                                                  "flags": point_flags(point, what)}
    final = arm.get("final")
    if final:
        flags = final.get("flags") or {}
        n = int(final["n"])
        test = f"first {n} test images"

        def packed(name):
            return unpack_flags(flags[name]) if flags.get(name) else None
        out["test_clean"] = {"value": final["clean"], "n_images": n, "images": test, "flags": packed("clean")}
        limited = {}
        for a in final["attacks"]:  # cumulative over all n images; an attack run on the first K only says so
            k = int(a.get("n") or n)
            name = a["name"] if k >= n else f"{a['name']}_ran_on_{k}"
            if k < n:
                limited[a["name"]] = k
            out[f"test_{name}"] = {"value": a["robust_after"], "n_images": n, "flags": packed(a["name"]),
                                   "images": test + (f" ({a['name']} on the first {k}, the rest keep the earlier "
                                                     "attacks' verdicts)" if k < n else "")}
        last = packed(final["attacks"][-1]["name"]) if final["attacks"] else packed("clean")
        hybrid = "test_worst_case" + "".join(f"_{a}_on_{k}" for a, k in limited.items())
        out[hybrid] = {"value": final["worst_case"], "n_images": n, "flags": last,
                       "images": test + ("".join(f"; {a} on the first {k} only" for a, k in limited.items()))}
        for key, v in final.items():
            if key.startswith("worst_case_first_"):
                m = int(key.rsplit("_", 1)[1])
                out[f"test_{key}"] = {"value": v, "n_images": m, "flags": last[:m] if last is not None else None,
                                      "images": f"first {m} test images (every attack ran on them)"}
    for k in ("search_time", "train_time", "total_time", "search_cpu_time", "train_cpu_time", "total_cpu_time"):
        if arm.get(k) is not None:
            out[k.replace("_time", "_s")] = {"value": arm[k], "n_images": None}
    return out


def is_time(metric: str) -> bool:
    return metric.endswith("_s")


def per_arm_values(results: dict[int, dict]) -> dict[str, dict[str, dict[int, dict]]]:
    """arm -> metric -> seed -> value entry, over the per-seed results of one configuration."""
    out: dict[str, dict[str, dict[int, dict]]] = {}
    for seed, r in sorted(results.items()):
        eval_n = r["config"]["train"]["eval_n"]
        for name, arm in r["arms"].items():
            for metric, v in arm_values(arm, eval_n).items():
                out.setdefault(name, {}).setdefault(metric, {})[seed] = v
    return out


def difference_entry(a: dict[int, dict], b: dict[int, dict]):
    """The paired interval of a - b (seed -> value entries), as `stats.difference_interval` gives it."""
    n = next(iter(a.values()))["n_images"]
    return difference_interval({s: v["value"] for s, v in a.items()}, {s: v["value"] for s, v in b.items()},
                               {s: v.get("flags") for s, v in a.items()}, {s: v.get("flags") for s, v in b.items()},
                               n_images=n)


HOW = {"paired-images": "paired over images", "t": "paired over seeds",
       "bound": "upper bound (no per-image verdicts stored)", "none": "no interval"}


def differences(per_arm: dict[str, dict[str, dict[int, dict]]], pairs: list[tuple[str, str]]) -> dict[str, dict]:
    """`a - b` for each pair and accuracy metric both arms have: the paired interval, its n and images, and the
    verdict after Holm's correction over every difference listed (the family: all pairs and metrics here)."""
    entries, ivs = [], []
    out: dict[str, dict] = {}
    for a, b in pairs:
        if a not in per_arm or b not in per_arm:
            continue
        out[f"{a} - {b}"] = {}
        for m in per_arm[a]:
            if is_time(m) or m not in per_arm[b]:
                continue
            iv = difference_entry(per_arm[a][m], per_arm[b][m])
            first = next(iter(per_arm[a][m].values()))
            entry = {**iv.to_dict(), "n_images": first["n_images"], "images": first.get("images"),
                     "seeds": len(set(per_arm[a][m]) & set(per_arm[b][m])), "how": HOW.get(iv.method, iv.method)}
            out[f"{a} - {b}"][m] = entry
            entries.append(entry)
            ivs.append(iv)
    for entry, v in zip(entries, holm_verdicts(ivs)):
        entry.update(p=v["p"], p_holm=v["p_holm"], m=v["m"], holds=v["holds"], verdict=v["verdict"])
    return out


def fmt_points(entry: dict, digits: int = 1) -> str:
    """'-0.2 ± 1.9 (n=1000)' in points: mean ± half-width of the 95 % interval, and its n."""
    mean, lo = entry.get("mean"), entry.get("lo")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    bound = " at most" if entry.get("method") == "bound" else ""  # no per-image verdicts: the widest it can be
    half = "" if lo is None or math.isnan(lo) else f" ±{bound} {entry['half'] * 100:.{digits}f}"
    n = entry.get("n_images")
    return f"{mean * 100:+.{digits}f}{half}" + (f" (n={n})" if n else "")


# ----------------------------------------------------------------------------------------------------------
# The bench headline.

def time_to_target(curve: list[dict], target: float, key: str = "pgd20", clock: str = "wall_clock") -> Optional[float]:
    """The `clock` reading (wall_clock or cpu_time) at the first epoch whose `key` accuracy reaches `target`."""
    for point in curve:
        if point.get(key) is not None and point[key] >= target:
            return point.get(clock)
    return None


# The load "changed during the run" when the slowdown it implies, max(load, cores) / cores, moved by more than
# this factor between the least and the most loaded epoch (a busy machine shares its cores among that many jobs).
LOAD_CHANGE = 1.2


def load_note(arms: dict[str, dict]) -> Optional[dict]:
    """The machine's 1-minute load average over every arm's epochs: its range and whether it changed enough to
    move wall-clock ratios (None: not recorded)."""
    import os
    ranges = [a.get("load_avg_range") for a in arms.values() if a.get("load_avg_range")]
    if not ranges:
        return None
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    cores = os.cpu_count() or 1
    return {"min": lo, "max": hi, "cpu_count": cores, "changed": bool(max(hi, cores) / max(lo, cores) > LOAD_CHANGE)}


def _ratio(a, b) -> Optional[float]:
    return a / b if (a is not None and b) else None


def headline(arms: dict[str, dict], s: BenchSetup) -> dict:
    """Every number the bench's stdout summary, report.md and result.json print, computed once here: time to
    target (wall clock and CPU seconds) on the validation curve's strongest robustness, time ratios, the final
    test-set differences between paired arms with paired intervals over the images both were evaluated on, and
    which images each covers. Choices (the target, the best epoch) use the per-epoch evaluation split only."""
    from .arms import pairs
    dense, ticket = arms["dense"], arms["ticket"]
    key = curve_metric(dense["curve"])  # worst case of PGD-20 and CW-20; PGD-20 for older runs; clean if natural
    target = dense["curve"][-1][key] - s.bench.target_tolerance
    ttt = {name: time_to_target(a["curve"], target, key) for name, a in arms.items()}
    ctt = {name: time_to_target(a["curve"], target, key, "cpu_time") for name, a in arms.items()}
    h = {"total_time_ratio": ticket["total_time"] / dense["total_time"],
         "total_cpu_time_ratio": _ratio(ticket.get("total_cpu_time"), dense.get("total_cpu_time")),
         "target": target, "target_metric": key, "target_split": dense["eval_split"], "target_n": s.train.eval_n,
         "time_to_target": ttt, "cpu_time_to_target": ctt,
         "time_to_target_ratio": _ratio(ttt["ticket"], dense["total_time"]),
         # The dense run may itself reach the target long before its budget ends: compare with that too.
         "time_to_target_vs_dense": _ratio(ttt["ticket"], ttt["dense"]),
         "cpu_time_to_target_vs_dense": _ratio(ctt["ticket"], ctt["dense"]),
         "load_avg": load_note(arms)}
    diffs = differences(per_arm_values({s.seed: {"config": {"train": {"eval_n": s.train.eval_n}}, "arms": arms}}),
                        pairs(arms))
    h["differences"] = diffs
    if s.final.final_attacks and dense.get("final") and ticket.get("final"):  # empty: no final evaluation
        first = s.final.final_attacks[0]
        metric, k = worst_case_images(dense["final"])
        td = diffs.get("ticket - dense", {})
        wc = td.get(f"test_{metric}", {})
        h.update({"final_images": image_sets(dense["final"]),
                  "final_clean_diff": td.get("test_clean", {}).get("mean"),
                  f"final_{first}_diff": td.get(f"test_{first}", {}).get("mean"),
                  # the honest worst case: over every attack, on the images where every attack ran
                  "final_worst_case_diff": wc.get("mean"), "final_worst_case_n": k,
                  "final_worst_case_se": wc.get("se"), "final_worst_case_ci": [wc.get("lo"), wc.get("hi")]})
    if dense["eval_split"] == "val":  # best epochs chosen on validation data, never on the test set
        h["best_epoch_val"] = {name: max(a["curve"], key=lambda r: r.get(key) or 0)["epoch"]
                               for name, a in arms.items()}
    return h
