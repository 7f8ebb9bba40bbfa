"""Tables, figures and claim verdicts of a ledger experiment, rendered from its committed records only.

Every difference is paired: over seeds when two or more seeds have both cells (same θ0, same data order),
per image when one seed has both and both stored per-image verdicts, else the widest interval the two
accuracies allow (`robustlth.stats.difference_interval`). A verdict needs two or more seeds (a per-image interval
covers the evaluation images, not the training's noise), and the claims of one table form one family: it holds
only after Holm's correction over all of them.

Cells computed on different machines: accuracies are compared wherever they come from (the same code, data and
seed; machines differ only by floating-point noise), times only between cells of the same device name (a
ratio across machines would measure the machines).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Optional

import numpy as np

from ..runs import atomic_write_text, csv_text
from ..stats import Interval, difference_interval, holm_verdicts, proportion_interval, t_interval
from .cells import Cell, CellRecord, curve, metric, unpack_verdicts
from .plans import BOOSTING_LR, NATURAL, PGD, WINNING_LR, Experiment


def render(exp: Experiment, folder: Path, cells: list[Cell], records: dict[str, CellRecord]) -> list[str]:
    """Write the experiment's cells.csv and figures, and the ledger's claims table (every experiment of this
    scale under the same results folder: one family for Holm); the file names written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    view = View(cells, records)
    files = [_cells_csv(folder, view)]
    files += (natural_figures if exp.name == "natural_claims" else pgd_figures)(view, folder, exp.scale)
    files.append(write_claims(folder.parent, exp.scale, {exp.name: view}))
    return files


def claim_rows(name: str, view: View, scale: str) -> list[dict]:
    """An experiment's claims, each with the differences it tests (verdicts come from `_verdicts`)."""
    rows = (natural_claims if name == "natural_claims" else pgd_claims)(view, scale)
    for row in rows:
        row["experiment"] = name
    return rows


def write_claims(results: Path, scale: str, views: Optional[dict] = None) -> str:
    """The ledger's claims table, `ledger_claims.md` under `results` (quick scale: `ledger_claims-quick.md`):
    one row per claim of every experiment, Holm's correction over every tested difference of the table."""
    from .cells import load_records
    from .plans import EXPERIMENTS
    views = dict(views or {})
    for name in EXPERIMENTS:
        if name not in views:
            exp = EXPERIMENTS[name](scale)
            records = load_records(Path(results) / exp.folder())
            seeds = sorted({0, 1, 2} | {r.seed for r in records.values()})
            views[name] = View(exp.cells(seeds), records)
    rows = _verdicts([row for name in EXPERIMENTS for row in claim_rows(name, views[name], scale)])
    file = "ledger_claims.md" if scale == "full" else f"ledger_claims-{scale}.md"
    lines = ["# The paper's claims, decided by the results ledger", "",
             "Rendered by `python -m robustlth.ledger render` from the committed cell records of every ledger "
             "experiment (each folder's `cells/`), never from a machine's run directories. Intervals are 95 %, "
             "paired by seed (t over seeds) or, for one seed, per image; a verdict holds only after Holm's "
             f"correction over the {rows[0]['family'] if rows else 0} differences of this table measured over two or "
             "more seeds (a difference from one seed is shown per image, and decides nothing).", ""]
    for name in EXPERIMENTS:
        v = views[name]
        devices = sorted({f"{r.device.get('name')} ({r.device.get('threads')} threads)" for r in v.records.values()})
        seeds = sorted({r.seed for r in v.records.values()})
        lines.append(f"- `{EXPERIMENTS[name](scale).folder()}`: {len(v.records)} of {len(v.cells)} planned cells "
                     f"recorded (seeds {', '.join(map(str, seeds)) or 'none'}; devices: "
                     f"{', '.join(devices) or 'none yet'})")
    lines += ["", "| experiment | claim | paper | ours | scale | verdict | why (each test: difference, p, Holm p) |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join(str(r[k]).replace("|", "/") for k in
                                       ("experiment", "claim", "paper", "ours", "scale", "verdict", "why")) + " |")
    atomic_write_text(Path(results) / file, "\n".join(lines) + "\n")
    return f"../{file}"


class View:
    """The plan's records by role and seed (only records of the current plan: a stale one is left out)."""

    def __init__(self, cells: list[Cell], records: dict[str, CellRecord]):
        self.cells = cells
        self.records = {c.name: records[c.name] for c in cells
                        if c.name in records and records[c.name].cell_id == c.cell_id()}
        self.by_role: dict[str, dict[int, CellRecord]] = {}
        for c in cells:
            if c.name in self.records:
                self.by_role.setdefault(c.tags["role"], {})[c.seed] = self.records[c.name]

    def values(self, role: str, what: str) -> dict[int, float]:
        return {s: v for s, r in self.by_role.get(role, {}).items() if (v := metric(r, what)) is not None}

    def flags(self, role: str, what: str) -> dict[int, np.ndarray]:
        """Per-image verdicts of a final metric (test_clean, test_pgd20, ...) by seed, where stored."""
        key = what[5:]
        out = {}
        for s, r in self.by_role.get(role, {}).items():
            per = ((r.result.get("final") or {}).get("flags") or {})
            if key in per:
                out[s] = unpack_verdicts(per[key])
        return out

    def n_images(self, role: str, what: str) -> Optional[int]:
        for r in self.by_role.get(role, {}).values():
            if what.startswith("test_"):
                return r.settings["final"]["final_n"]
            return r.settings["train"]["eval_n"]
        return None

    def diff(self, a: str, b: str, what: str) -> Interval:
        return difference_interval(self.values(a, what), self.values(b, what), self.flags(a, what),
                                   self.flags(b, what), self.n_images(a, what))

    def level(self, role: str, what: str) -> Interval:
        return t_interval(self.values(role, what).values())

    def bars(self, roles: list[str], what: str, n_images: int) -> tuple[list[float], list[float]]:
        """Means and 95 % half-widths for error bars: over seeds (t) where a role has two or more, else the
        binomial interval of the one accuracy on its n_images (evaluation noise only)."""
        means, halves = [], []
        for role in roles:
            iv = self.level(role, what)
            if iv.n == 1:
                iv = proportion_interval(iv.mean, n_images)
            means.append(iv.mean)
            halves.append(iv.half if iv.n else float("nan"))
        return means, halves

    def noise_words(self) -> str:
        """What the bars are, with the number of seeds behind the points."""
        counts = sorted({len(seeds) for seeds in self.by_role.values()} - {0})
        if not counts:
            return "no cells yet"
        many = [n for n in counts if n > 1]
        words = [f"t over {many[0] if len(many) == 1 else f'{many[0]}-{many[-1]}'} seeds"] if many else []
        if counts[0] == 1:
            words.append("a point from one seed: binomial over its images")
        return "; ".join(words)

    def seeds(self, *roles: str) -> int:
        sets = [set(self.by_role.get(r, {})) for r in roles]
        return len(set.intersection(*sets)) if sets else 0


def pts(i: Interval) -> str:
    """A difference with its n: seeds (t over seeds) or images (one seed, paired per image)."""
    if math.isnan(i.mean):
        return "—"
    return f"{i.fmt()} (n={i.n} {'seeds' if i.method in ('t', 'none') else 'images'})"


def lvl(i: Interval) -> str:
    """A level (an accuracy over seeds): mean ± 95 % t half-width, or the single value; — when not measured."""
    return "—" if math.isnan(i.mean) else i.fmt()


def _combined(view: View, terms: list[tuple[float, str]], what: str) -> dict[int, float]:
    """Per seed, sum of weight * value over `terms` (roles), for seeds that have every term."""
    vals = [(w, view.values(role, what)) for w, role in terms]
    seeds = set.intersection(*(set(v) for _, v in vals)) if vals else set()
    return {s: sum(w * v[s] for w, v in vals) for s in seeds}


def _verdicts(rows: list[dict]) -> list[dict]:
    """Holm over every tested difference of the table that rests on two or more seeds; a claim holds in the
    paper's direction: reproduced, in the other: contradicted, else inconclusive. A difference from one seed is
    shown (per image) but decides nothing: its interval covers the evaluation images, not the training's noise."""
    tests = [(i, t) for i, row in enumerate(rows) for t in row.pop("tests", [])]
    seeded = [t["interval"].method == "t" and t["interval"].n >= 2 for _, t in tests]
    holm = holm_verdicts([t["interval"] if ok else dataclasses.replace(t["interval"], se=float("nan"))
                          for (_, t), ok in zip(tests, seeded)])
    m = holm[0]["m"] if holm else 0
    for (i, t), h, ok in zip(tests, holm, seeded):
        iv, row = t["interval"], rows[i]
        direction = 0 if not h["holds"] else (1 if iv.mean > 0 else -1)
        word = "inconclusive" if direction == 0 else ("reproduced" if direction == t["sign"] else "contradicted")
        row.setdefault("words", []).append(word)
        tail = f"p={_p(h['p'])}, Holm p={_p(h['p_holm'])}" if ok else \
            ("one seed: not tested" if not math.isnan(iv.mean) else "not measured yet")
        row.setdefault("why_parts", []).append(f"{t['what']}: {pts(iv)}, {tail}" + (f": {word}" if ok else ""))
    for row in rows:
        words = row.pop("words", [])
        row["verdict"] = ("contradicted" if "contradicted" in words else
                          "reproduced" if words and all(w == "reproduced" for w in words) else "inconclusive")
        row["why"] = "; ".join(row.pop("why_parts", [])) or "not measured yet"
        row["family"] = m
    return rows


def _ratio(i: Interval) -> str:
    return "—" if math.isnan(i.mean) else i.fmt(scale=1, digits=3)


def _p(p: float) -> str:
    return "—" if p is None or math.isnan(p) else (f"{p:.3f}" if p >= 0.001 else "<0.001")


# ----------------------------------------------------------------------------------------------------
# Natural training (CPU).

def natural_claims(view: View, scale: str) -> list[dict]:
    p = NATURAL[scale]
    b, w = f"ticket_lr{BOOSTING_LR:g}", f"ticket_lr{WINNING_LR:g}"
    r, d = f"reinit_lr{BOOSTING_LR:g}", "dense"
    e1, e5 = "epoch1_clean", "epoch5_clean"
    n_val = p["train"]["eval_n"]
    scale_text = (f"{p['model']['model']} width {p['model']['width']:g}, CIFAR-10 JPEG copy 45,000 train, "
                  f"validation n={n_val}" if scale == "full" else f"quick plan ({scale})")
    rows = []
    levels = ", ".join(f"{name} {lvl(view.level(role, e1))} / {lvl(view.level(role, e5))}"
                       for name, role in (("boosting", b), ("winning", w), ("re-init", r), ("dense", d)))
    rows.append({"claim": "(a) Boost: after retraining epoch 1 the boosting ticket (search LR 0.01) is ahead of the "
                          "winning ticket (search LR 0.1) and of its re-initialisation",
                 "paper": "epoch-1 validation: boosting 79.7 %, winning 56.4 %, re-init 57.0 % (VGG-16)",
                 "ours": f"validation accuracy epoch 1 / 5 (mean over {view.seeds(b)} seeds): {levels}; at epoch 5 "
                         f"(described, not tested: the claim is epoch 1's) boosting − winning {pts(view.diff(b, w, e5))}, "
                         f"boosting − re-init {pts(view.diff(b, r, e5))}",
                 "tests": [{"what": "boosting − winning, epoch 1", "interval": view.diff(b, w, e1), "sign": 1},
                           {"what": "boosting − re-init, epoch 1", "interval": view.diff(b, r, e1), "sign": 1}]})
    # (b) Search LR: per seed, the slope of epoch-1 accuracy against log10(search LR).
    lrs = p["lrs"]
    per_lr = {lr: view.values(f"ticket_lr{lr:g}", e1) for lr in lrs}
    seeds = set.intersection(*(set(v) for v in per_lr.values())) if per_lr else set()
    slopes = {s: float(np.polyfit(np.log10(lrs), [per_lr[lr][s] for lr in lrs], 1)[0]) for s in seeds}
    rows.append({"claim": "(b) A smaller search LR gives a stronger boost (epoch-1 accuracy falls as the search LR "
                          "grows)",
                 "paper": "search LR 0.01: 79.7 % at epoch 1, 0.1: 56.4 %; too small hurts final accuracy",
                 "ours": "ticket validation accuracy epoch 1 / 5 by search LR: " + ", ".join(
                     f"{lr:g}: {lvl(view.level(f'ticket_lr{lr:g}', e1))} / {lvl(view.level(f'ticket_lr{lr:g}', e5))}"
                     for lr in lrs),
                 "tests": [{"what": "slope of epoch-1 accuracy per decade of search LR",
                            "interval": t_interval(slopes.values()), "sign": -1}]})
    # (c) Ratio: the boost (boosting − winning at epoch 1) inside 60-90 % minus outside.
    ratios, r0 = p["ratios"], 0.8

    def at_ratio(lr, ratio):
        return f"ticket_lr{lr:g}" + ("" if ratio == r0 else f"_r{ratio:g}")
    inside = [x for x in ratios if 0.6 <= x <= 0.9]
    outside = [x for x in ratios if not 0.6 <= x <= 0.9]
    terms = [(1 / len(inside), at_ratio(BOOSTING_LR, x)) for x in inside] + \
            [(-1 / len(inside), at_ratio(WINNING_LR, x)) for x in inside]
    if outside:
        terms += [(-1 / len(outside), at_ratio(BOOSTING_LR, x)) for x in outside] + \
                 [(1 / len(outside), at_ratio(WINNING_LR, x)) for x in outside]
    rows.append({"claim": "(c) The boost is strongest at 60-90 % pruning",
                 "paper": "strongest at 60-90 %",
                 "ours": "boost (boosting − winning, epoch-1 validation) by ratio: " + ", ".join(
                     f"{x:g}: {pts(view.diff(at_ratio(BOOSTING_LR, x), at_ratio(WINNING_LR, x), e1))}" for x in ratios),
                 "tests": [{"what": "mean boost inside 60-90 % − outside",
                            "interval": t_interval(_combined(view, terms, e1).values()), "sign": 1}]
                 if outside else []})
    # (d) Width: the boost at the widest minus at the narrowest width.
    widths, w0 = p["widths"], p["model"]["width"]

    def at_width(lr, width):
        return f"ticket_lr{lr:g}" + ("" if width == w0 else f"_w{width:g}")
    lo_w, hi_w = min(widths), max(widths)
    terms = [(1, at_width(BOOSTING_LR, hi_w)), (-1, at_width(WINNING_LR, hi_w)),
             (-1, at_width(BOOSTING_LR, lo_w)), (1, at_width(WINNING_LR, lo_w))]
    rows.append({"claim": "(d) Wider networks give a stronger boost",
                 "paper": "wider is always better (WRN-34-10: 90.9 % after one epoch)",
                 "ours": "epoch-1 validation accuracy boosting / winning by width: " + ", ".join(
                     f"{x:g}: {lvl(view.level(at_width(BOOSTING_LR, x), e1))} / "
                     f"{lvl(view.level(at_width(WINNING_LR, x), e1))}" for x in widths),
                 "tests": [{"what": f"boost at width {hi_w:g} − at {lo_w:g}",
                            "interval": t_interval(_combined(view, terms, e1).values()), "sign": 1}]
                 if hi_w > lo_w else []})
    # (e) Budget sweep: final test accuracy, boosting vs winning.
    budgets, b0 = p["budgets"], p["bench"]["ticket_epochs"]

    def at_budget(lr, budget):
        return f"ticket_lr{lr:g}" + ("" if budget == b0 else f"_b{budget}")
    small, large = min(budgets), max(budgets)
    gap_small = view.diff(at_budget(BOOSTING_LR, small), at_budget(WINNING_LR, small), "test_clean")
    shrink = t_interval(_combined(view, [(1, at_budget(BOOSTING_LR, small)), (-1, at_budget(WINNING_LR, small)),
                                         (-1, at_budget(BOOSTING_LR, large)), (1, at_budget(WINNING_LR, large))],
                                  "test_clean").values())
    n_test = p["final"]["final_n"]
    rows.append({"claim": "(e) Budget sweep: the boosting ticket is ahead of the winning ticket at small budgets, "
                          "and the gap closes as the budget grows",
                 "paper": "budget 20/40/60/80/100: boosting 91.25/91.84/92.13/92.14/92.05 vs winning "
                          "88.10/90.03/90.96/91.79/92.00 (VGG-16)",
                 "ours": f"final test accuracy (n={n_test}) boosting / winning by budget: " + ", ".join(
                     f"{x}: {lvl(view.level(at_budget(BOOSTING_LR, x), 'test_clean'))} / "
                     f"{lvl(view.level(at_budget(WINNING_LR, x), 'test_clean'))}" for x in budgets),
                 "tests": [{"what": f"boosting − winning at budget {small}", "interval": gap_small, "sign": 1},
                           {"what": f"gap at {small} − gap at {large}", "interval": shrink, "sign": 1}]})
    for row in rows:
        row["scale"] = scale_text
    return rows


# Epoch 1 solid with filled markers, epoch 5 dashed with hollow ones: the legend tells them apart.
EPOCH_STYLES = (("epoch1_clean", {"ls": "-"}), ("epoch5_clean", {"ls": "--", "mfc": "white"}))


def natural_figures(view: View, folder: Path, scale: str) -> list[str]:
    from ..plotting import from_zero, plot_series, pyplot, save_figure, error_bars, style
    p, plt, files = NATURAL[scale], pyplot(), []
    n_val, n_test = p["train"]["eval_n"], p["final"]["final_n"]
    b, w = f"ticket_lr{BOOSTING_LR:g}", f"ticket_lr{WINNING_LR:g}"
    arms = ((b, "boosting ticket (search LR 0.01)", "ticket"), (w, "winning ticket (search LR 0.1)", "winning"),
            (f"reinit_lr{BOOSTING_LR:g}", "boosting mask, re-initialised", "reinit"), ("dense", "dense", "dense"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for role, label, style_name in arms:
        runs = [curve(r) for r in view.by_role.get(role, {}).values()]
        if runs:
            n = min(len(x) for x in runs)
            plot_series(axes[0], range(1, n + 1), [x[:n] for x in runs], label, name=style_name, n_images=n_val)
    axes[0].set(xlabel="retraining epoch", ylabel=f"validation accuracy (n={n_val})",
                title="(a) convergence after the search (band: ± 1 s.e.)")
    for i, lr in enumerate(sorted({c.tags["search_lr"] for c in view.cells if c.kind == "search"})):
        runs = [curve(r) for c, r in _cells_of(view, "search", search_lr=lr, width=p["model"]["width"])]
        if runs:
            n = min(len(x) for x in runs)
            plot_series(axes[1], range(1, n + 1), [x[:n] for x in runs], f"search LR {lr:g}", i=i, n_images=n_val)
    axes[1].set(xlabel="search epoch", ylabel=f"validation accuracy (n={n_val})",
                title="searches: LR drops at 50 / 75 % (plateau check)")
    from_zero(*axes, top=1.0)
    files.append(save_figure(fig, folder / "boost_curves.png", axes, integer_x=True, legend_size=7))

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for ax, key, values, fmt, xlabel in ((axes[0], "ratio", p["ratios"], "_r{:g}", "pruning ratio"),
                                         (axes[1], "width", p["widths"], "_w{:g}", "width multiplier of VGG-16")):
        base = {"ratio": 0.8, "width": p["model"]["width"]}[key]
        for i, (lr, label) in enumerate(((BOOSTING_LR, "boosting"), (WINNING_LR, "winning"))):
            roles = [f"ticket_lr{lr:g}" + ("" if v == base else fmt.format(v)) for v in values]
            shift = (i - 0.5) * 0.012  # the two tickets' bars side by side, not on top of each other
            xs = [v * 2 ** (shift * 5) if key == "width" else v + shift for v in values]
            for what, epoch_style in EPOCH_STYLES:
                mean, half = view.bars(roles, what, n_val)
                error_bars(ax, xs, mean, half, label=f"{label}, epoch {what[5]}", **{**style(i), **epoch_style})
        ax.set(xlabel=xlabel, ylabel=f"validation accuracy (n={n_val})", title=f"by {key}")
        if key == "width":
            ax.set_xscale("log", base=2)
    roles = [f"ticket_lr{lr:g}" for lr in p["lrs"]]
    for what, epoch_style in EPOCH_STYLES:
        mean, half = view.bars(roles, what, n_val)
        error_bars(axes[2], p["lrs"], mean, half, label=f"ticket, epoch {what[5]}", **{**style(0), **epoch_style})
    axes[2].set(xscale="log", xlabel="search LR", ylabel=f"validation accuracy (n={n_val})", title="(b) by search LR")
    fig.suptitle(f"(c), (d), (b): 95 % bars ({view.noise_words()})", fontsize=10)
    from_zero(*axes, top=1.0)
    files.append(save_figure(fig, folder / "factors.png", axes, legend_size=7))

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    b0 = p["bench"]["ticket_epochs"]
    for i, (lr, label) in enumerate(((BOOSTING_LR, "boosting ticket"), (WINNING_LR, "winning ticket"))):
        mean, half = view.bars([f"ticket_lr{lr:g}" + ("" if x == b0 else f"_b{x}") for x in p["budgets"]],
                               "test_clean", n_test)
        error_bars(ax, p["budgets"], mean, half, label=label, **style(i))
    ax.set(xscale="log", xlabel="retraining budget (epochs; LR drops at 50 / 75 %)",
           ylabel=f"final test accuracy (n={n_test})", title="(e) budget sweep")
    ax.text(0.02, 0.02, f"95 % bars: {view.noise_words()}", transform=ax.transAxes, fontsize=7)
    ax.set_xticks(p["budgets"], [str(x) for x in p["budgets"]])
    ax.minorticks_off()
    from_zero(ax, top=1.0)
    files.append(save_figure(fig, folder / "budget_sweep.png", [ax]))
    return files


def _cells_of(view: View, kind: str, **tags):
    for c in view.cells:
        if c.kind == kind and c.name in view.records and all(c.tags.get(k) == v for k, v in tags.items()):
            yield c, view.records[c.name]


# ----------------------------------------------------------------------------------------------------
# PGD AT (GPU).

MARGIN = 0.01  # "matches": not more than 1 point of robust accuracy below (non-inferiority)

def pgd_claims(view: View, scale: str) -> list[dict]:
    p = PGD[scale]
    b = p["bench"]
    role = {"dense": f"dense_{b['dense_epochs']}", "short": f"dense_{p['short_dense']}",
             "ticket": f"ticket_{b['ticket_epochs']}", "reinit": f"reinit_{b['ticket_epochs']}",
             "fast_at": f"fast_at_{b['fast_at_epochs']}", "ticket_fast": f"ticket_fast_{b['fast_at_epochs']}"}
    rows, ratios = [], {}
    for s, t in view.by_role.get(role["ticket"], {}).items():
        dn = view.by_role.get(role["dense"], {}).get(s)
        if dn is not None and t.device.get("name") == dn.device.get("name"):
            ratios[s] = metric(t, "total_time") / metric(dn, "total_time")
    devices = sorted({r.device.get("name", "?") for r in view.records.values()})
    rows.append({"claim": "Time: the ticket pipeline (FGSM search + ticket PGD AT) takes about half the dense "
                          "PGD-AT time",
                 "paper": "0.51 (69,552 s vs 134,764 s, WRN-34-10, 2x V100)",
                 "ours": f"(search + ticket {b['ticket_epochs']} epochs) / dense {b['dense_epochs']} epochs, same "
                         f"device only: {_ratio(t_interval(ratios.values()))} over {len(ratios)} seeds",
                 "tests": []})
    tests = []
    # "Matches" is non-inferiority within MARGIN; "beats" and "faster" are superiority.
    for a, bb, what, margin, text in (
            ("ticket", "dense", "test_pgd20", MARGIN, "ticket − dense (full budget) + 1 point margin, PGD-20"),
            ("ticket", "short", "test_pgd20", 0.0, "ticket − dense (same budget), PGD-20"),
            ("ticket", "reinit", "epoch1_pgd20", 0.0, "ticket − re-init, epoch-1 validation PGD-20")):
        tests.append({"what": text, "interval": view.diff(role[a], role[bb], what).shifted(margin), "sign": 1})
    rows.append({"claim": "Robustness: the ticket trained for half the budget matches dense PGD AT, beats the dense "
                          "network at its own budget, and converges faster than its re-initialisation",
                 "paper": "FGSM ticket + 60 epochs: 45.73 % PGD-10 vs dense 100 epochs 44.78 % (VGG-16); "
                          "no same-budget dense control",
                 "ours": "final test PGD-20 / CW (first n images of the exact test set): " + ", ".join(
                     f"{k} {lvl(view.level(role[k], 'test_pgd20'))} / {lvl(view.level(role[k], 'test_cw'))}"
                     for k in ("dense", "short", "ticket", "reinit")),
                 "tests": tests})
    rows.append({"claim": "Fast AT: N-FGSM on the ticket or the dense network reaches the PGD-AT robustness at a "
                          "fraction of the time",
                 "paper": "(not in the paper: the baseline users compare against)",
                 "ours": "final test PGD-20: " + ", ".join(
                     f"{k} {lvl(view.level(role[k], 'test_pgd20'))}" for k in ("fast_at", "ticket_fast")),
                 "tests": [{"what": "fast ticket − dense (full budget) + 1 point margin, PGD-20",
                            "interval": view.diff(role["ticket_fast"], role["dense"], "test_pgd20").shifted(MARGIN),
                            "sign": 1}]})
    for row in rows:
        row["scale"] = (f"VGG-16, CIFAR-10 JPEG copy, PGD-10 AT; devices: {', '.join(devices) or 'none yet'}"
                        if scale == "full" else f"quick plan ({scale}); devices: {', '.join(devices) or 'none'}")
    return rows


def pgd_figures(view: View, folder: Path, scale: str) -> list[str]:
    from ..plotting import from_zero, plot_series, pyplot, save_figure
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    n = PGD[scale]["train"]["eval_n"]
    for i, role in enumerate(sorted(view.by_role)):
        runs = [curve(r, "pgd20") for r in view.by_role[role].values() if r.kind == "arm"]
        if runs:
            k = min(len(x) for x in runs)
            plot_series(ax, range(1, k + 1), [x[:k] for x in runs], role.replace("_", " "), i=i, n_images=n)
    ax.set(xlabel="epoch", ylabel=f"validation PGD-20 accuracy (n={n})", title="PGD-AT claims: per-epoch robustness")
    from_zero(ax, top=1.0)
    return [save_figure(fig, folder / "curves.png", [ax], integer_x=True, legend="outside")]


# ----------------------------------------------------------------------------------------------------
# Files.

def _cells_csv(folder: Path, view: View) -> str:
    cols = ["cell", "seed", "kind", "arm", "role", "search_lr", "ratio", "width", "budget", "epoch1_clean",
            "epoch5_clean", "epoch1_pgd20", "final_val_clean", "test_clean", "test_pgd20", "test_cw", "seconds",
            "cpu_seconds", "device", "threads", "commit", "resumed", "search_recomputed"]
    rows = []
    for name, r in view.records.items():
        c = curve(r)
        row = {"cell": name, "seed": r.seed, "kind": r.kind, "arm": r.arm, **{k: r.tags.get(k) for k in
               ("role", "search_lr", "ratio", "width", "budget")},
               "final_val_clean": c[-1] if c else None, "seconds": round(r.seconds, 1),
               "cpu_seconds": round(r.cpu_seconds, 1), "device": r.device.get("name"),
               "threads": r.device.get("threads"), "commit": r.environment.get("git_commit"),
               "resumed": r.resumed, "search_recomputed": r.search_recomputed}
        for k in ("epoch1_clean", "epoch5_clean", "epoch1_pgd20", "test_clean", "test_pgd20", "test_cw"):
            try:
                row[k] = metric(r, k)
            except (KeyError, IndexError, ValueError):
                row[k] = None
        rows.append(row)
    atomic_write_text(folder / "cells.csv", csv_text(rows, cols))
    return "cells.csv"
