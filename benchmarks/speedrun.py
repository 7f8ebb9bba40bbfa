"""The speedrun against the published fast-AT recipes, on one chip, in one run: a table and a curve.

It runs `robustlth speedrun` (its budgets: the main one and `--curve`), then plain reference loops written here
from the published settings, on the same device, data and test images, evaluated with the same attacks:

- `fgsm_rs_wong2020`: FGSM-RS as "Fast is better than free" (Wong et al., ICLR 2020) published it
  (locuslab/fast_adversarial, CIFAR10/train_fgsm.py defaults): PreActResNet-18, 15 epochs, batch 128, SGD momentum
  0.9, weight decay 5e-4, torch's CyclicLR 0 -> 0.2 -> 0 with its peak at half the steps (and its default momentum
  cycling 0.9 -> 0.8 -> 0.9), a uniform start in the ε-ball, one step of α = 10/255 projected back to the ball,
  ε = 8/255, mixed precision (apex O2 with loss scale 1.0 there; fp16 autocast without loss scaling here, on CUDA
  only), the attack's backward also computing weight gradients (`loss.backward()`), model in train mode throughout.
- `nfgsm_dejorge2022`: N-FGSM (de Jorge et al., NeurIPS 2022) as fast-AT benchmarks run it: ResNet-18 (the N-FGSM
  code's default is PreActResNet-18: `--reference-model`), 30 epochs, batch 128, the same SGD and CyclicLR, noise
  uniform in ±16/255 (k = 2ε), one step of 8/255, no projection to the ε-ball (only to the [0, 1] box), fp32,
  input gradients only (`torch.autograd.grad`).

Beside the speedrun, the same recipe trains a ticket (`--tickets`, default boosting,structured: `robustlth speedrun
--ticket`, each ticket found by a short search whose seconds count in its training time), at the same budgets, on
the same data and test images; the table gives each ticket row next to the plain one, and the report says plainly
whether the recipe with a ticket beats the recipe without one: whether it reaches an equal or higher robust accuracy
(AutoAttack's, and PGD's beside it) in less time, its search included.

Every recipe reads the same device-resident, on-device-augmented batches (robustlth's `TrainLoader`: random crop
with 4-pixel padding and flips), so what differs is the training loop itself, not the input pipeline (the
published loops used torchvision's CPU DataLoader). Training seconds exclude evaluation everywhere. Output (under
`--out`, the device named in each file): `table.md` (with the ticket verdicts), `table.csv` (one row per recipe,
with the speedrun's time and robust-accuracy ratios from this same run), `curve.csv` and `curve.png` (robust
accuracy against training seconds), `speedrun_bench.json` (everything, with the environment) and
`speedrun_bench.log`.

    PYTHONPATH=. python benchmarks/speedrun.py --out benchmarks/results/speedrun_h100 --curve 5,10,15   # a GPU
    python benchmarks/speedrun.py --device cpu --quick --out /tmp/speedrun_dry                         # dry run

No GPU number in this repository comes from this script yet: the GPU measurement is still to be made, so whether
a ticket pays in the speedrun is unmeasured too.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from robustlth.config import parse_number  # noqa: E402
from robustlth.data import TrainLoader, as_float  # noqa: E402
from robustlth.device import resolve_device, resolve_precision, synchronize, tune_for_static_shapes  # noqa: E402
from robustlth.evaluate import evaluate_robustness  # noqa: E402
from robustlth.models import build_model  # noqa: E402
from robustlth.runs import atomic_write_json, atomic_write_text, csv_text, environment  # noqa: E402
from robustlth.speedrun import (TICKETS, Speedrun, SpeedrunPoint, SpeedrunResult, SpeedrunSetup,  # noqa: E402
                                device_name, plot_curve)
from robustlth.stages import run_stage, stage_dir  # noqa: E402
from robustlth.training import RunContext, seed_everything  # noqa: E402

EPS = 8 / 255


@dataclass(frozen=True)
class Reference:
    """A published single-step recipe, as its code's defaults set it."""
    name: str
    label: str
    model: str
    epochs: int
    batch_size: int
    lr_max: float
    alpha: float  # step size
    init: float  # half-width of the uniform start
    project: bool  # the step projected back to the ε-ball
    mixed_precision: bool  # fp16 autocast on CUDA
    weight_grads_in_attack: bool  # loss.backward() in the attack (weights' gradients computed too)
    source: str


REFERENCES = {
    "fgsm_rs_wong2020": Reference(
        "fgsm_rs_wong2020", "FGSM-RS, Wong et al. 2020 (PreActResNet-18, 15 ep)", "preactresnet18", 15, 128, 0.2,
        10 / 255, EPS, True, True, True, "locuslab/fast_adversarial CIFAR10/train_fgsm.py defaults"),
    "nfgsm_dejorge2022": Reference(
        "nfgsm_dejorge2022", "N-FGSM, de Jorge et al. 2022 (ResNet-18, 30 ep)", "resnet18", 30, 128, 0.2, 8 / 255,
        16 / 255, False, False, False, "pdejorge/N-FGSM train.py defaults (unif 2, alpha 8, clip -1), ResNet-18"),
}


def reference_step(ref: Reference, model: torch.nn.Module, opt: torch.optim.Optimizer, sched,
                   device: torch.device) -> Callable:
    """One training step of the published loop (input x in [0, 1]; the model normalises inside)."""
    amp = (lambda: torch.autocast("cuda", dtype=torch.float16)) if (ref.mixed_precision and device.type == "cuda") \
        else contextlib.nullcontext

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        delta = (torch.rand_like(x) * 2 - 1) * ref.init
        delta = torch.max(torch.min(delta, 1 - x), -x).requires_grad_(True)  # inside the [0, 1] box
        with amp():
            loss = F.cross_entropy(model(x + delta), y)
        if ref.weight_grads_in_attack:
            loss.backward()
            grad = delta.grad.detach()
        else:
            grad, = torch.autograd.grad(loss, delta)
        delta = delta.detach() + ref.alpha * grad.sign()
        if ref.project:
            delta = delta.clamp(-EPS, EPS)
        delta = torch.max(torch.min(delta, 1 - x), -x).detach()
        with amp():
            out = model(x + delta)
            loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        return loss.detach()
    return step


def train_reference(ref: Reference, data, device: torch.device, seed: int, epochs: int, width: float,
                    say: Callable[[str], None]) -> tuple[torch.nn.Module, dict]:
    """The published loop for `epochs` epochs; (model, its record: training seconds, images/s, settings)."""
    seed_everything(seed)
    model = build_model(ref.model, width, data.spec).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=ref.lr_max, momentum=0.9, weight_decay=5e-4)
    loader = TrainLoader(data.train, ref.batch_size, device, seed, augment=True, flips=data.spec.flips)
    steps = epochs * len(loader)
    # torch's CyclicLR as both codes call it: from 0 up to lr_max over half the steps and back down (momentum
    # cycled 0.9 -> 0.8 -> 0.9, its default); at least one step each way for tiny dry runs.
    half = max(steps / 2, 1)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=0.0, max_lr=ref.lr_max, step_size_up=half,
                                              step_size_down=half)
    step = reference_step(ref, model, opt, sched, device)
    seconds, losses = 0.0, []
    for epoch in range(epochs):
        synchronize(device)
        t0 = time.perf_counter()
        total = torch.zeros((), device=device)
        for x, y in loader.epoch(epoch):
            total += step(x, y)
        synchronize(device)
        seconds += time.perf_counter() - t0
        losses.append(float(total) / len(loader))
        say(f"{ref.name} epoch {epoch + 1}/{epochs}: loss {losses[-1]:.3f}, {seconds:.1f} s of training")
    images = epochs * len(loader) * min(ref.batch_size, len(data.train))
    precision = "fp16 autocast" if (ref.mixed_precision and device.type == "cuda") else "fp32"
    return model, {"train_time": seconds, "images_per_second": images / max(seconds, 1e-9), "losses": losses,
                   "precision": precision, "epochs": epochs, "batch_size": ref.batch_size, "model": ref.model,
                   "width": width, "source": ref.source}


@dataclass
class Row:
    name: str
    label: str
    model: str
    epochs: int
    batch_size: int
    precision: str
    train_time: float
    images_per_second: float
    n: int
    clean: Optional[float]
    accuracy: dict
    worst_case: Optional[float]
    guard: str  # the overfitting guard: fired / did not fire / none (the published loops have none)
    search_time: float = 0.0  # a ticket's search, counted in train_time
    beats_speedrun: Optional[bool] = None  # a ticket row: the verdict on its headline metric (None: not judged)

    @property
    def robust(self) -> Optional[float]:
        return self.accuracy.get("autoattack", self.worst_case)


def speedrun_row(p: SpeedrunPoint, setup: SpeedrunSetup, name: str = "speedrun") -> Row:
    s = p.settings
    precision = s.get("precision", "?") + (" + channels_last" if s.get("channels_last") else "") + \
        (" + CUDA graphs" if s.get("cuda_graphs") else "")
    label = f"robustlth speedrun ({setup.model.model}, {setup.attack.attack}, {p.epochs} ep)"
    if p.ticket:
        t = p.ticket
        what = (f"sparsity {t['sparsity']:.2f}" if t["kind"] == "boosting" else
                f"{t['macs'] / t['dense_macs']:.2f} of the MACs")
        label = (f"robustlth speedrun + {t['kind']} ticket ({what}; {t['search_epochs']}-ep search + {p.epochs} ep, "
                 "search counted)")
    return Row(name, label, setup.model.model, p.epochs, setup.train.batch_size, precision, p.train_time,
               p.images_per_second, p.n, p.clean, p.accuracy, p.worst_case,
               ("fired: " + (p.stopped or "")) if p.guard_fired else "did not fire" if setup.train.guard else "off",
               search_time=p.search_time)


def ticket_verdict(plain: SpeedrunResult, ticketed: SpeedrunResult, kind: str, metric: str, dry: bool) -> dict:
    """Does the recipe with a ticket beat the recipe without one on `metric` (an attack's name, or "robust": the
    headline, AutoAttack's or the worst case)? The target is the plain recipe's accuracy at its main budget; each
    recipe's time to reach it is its fastest budget at an equal or higher accuracy (a ticket's search included).
    The ticket beats the plain recipe when it gets there in less time. Returns the numbers and a plain sentence."""
    def acc(p: SpeedrunPoint) -> Optional[float]:
        return p.robust if metric == "robust" else p.accuracy.get(metric)
    names = {"robust": "AutoAttack" if "autoattack" in plain.main().accuracy else "worst-case robust"}
    name = names.get(metric, metric.upper())
    dry_text = ("DRY RUN (tiny data and network; it says nothing about GPU speed or robustness): " if dry else "")
    target = acc(plain.main())
    out = {"ticket": kind, "metric": metric, "target": target, "plain_s": None, "ticket_s": None, "beats": None}
    if target is None:
        return {**out, "text": f"{dry_text}with a {kind} ticket: not judged on {name} accuracy (not measured)."}
    plain_s = min(p.train_time for p in plain.points if acc(p) is not None and acc(p) >= target)
    reached = [p for p in ticketed.points if acc(p) is not None and acc(p) >= target]
    q = min(reached, key=lambda p: p.train_time) if reached else None
    out.update(plain_s=round(plain_s, 3), ticket_s=round(q.train_time, 3) if q else None,
               beats=bool(q is not None and q.train_time < plain_s))
    n = plain.main().n
    noise = (f" (on {n} test images one standard error of an accuracy near {target:.2f} is about "
             f"{math.sqrt(max(target * (1 - target), 1e-12) / max(n, 1)):.3f}: a closer difference is noise)")
    head = f"{dry_text}The recipe with a {kind} ticket"
    if out["beats"]:
        text = (f"{head} **beats** the recipe without one on {name} accuracy: it reaches {acc(q):.4f} ≥ {target:.4f} "
                f"in {q.train_time:.1f} s ({_epochs(q.epochs)}, its {q.search_time:.1f} s search included) against "
                f"{plain_s:.1f} s without a ticket{noise}.")
    elif q is not None:
        text = (f"{head} does **not** beat the recipe without one on {name} accuracy: it reaches {acc(q):.4f} ≥ "
                f"{target:.4f} only in {q.train_time:.1f} s ({_epochs(q.epochs)}, its {q.search_time:.1f} s search "
                f"included) against {plain_s:.1f} s without a ticket{noise}.")
    else:
        m = ticketed.main()
        text = (f"{head} does **not** beat the recipe without one on {name} accuracy: it never reaches the plain "
                f"recipe's {target:.4f} (reached in {plain_s:.1f} s); at {_epochs(m.epochs)} it trains "
                f"{m.train_time:.1f} s ({m.train_time / max(plain.main().train_time, 1e-9):.2f}× the plain time, its "
                f"{m.search_time:.1f} s search included) to "
                + ("an unmeasured accuracy" if acc(m) is None else f"{acc(m):.4f} ({acc(m) - target:+.4f})")
                + f"{noise}.")
    return {**out, "text": text}


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def overall_verdict(verdicts: list[dict], dry: bool) -> str:
    """One sentence over the tickets, on the headline metric: does the recipe with a ticket beat the one without?"""
    head = [v for v in verdicts if v["metric"] == "robust"]
    winners = [v["ticket"] for v in head if v["beats"]]
    judged = [v["ticket"] for v in head if v["beats"] is not None]
    dry_text = "DRY RUN, so this says nothing about a GPU: " if dry else ""
    if not judged:
        return f"**Verdict: {dry_text}not judged** (no final evaluation measured a robust accuracy)."
    if winners:
        return (f"**Verdict: {dry_text}the recipe with a ticket beats the recipe without one in this run** (the "
                f"{' and the '.join(winners)} ticket{'s' if len(winners) > 1 else ''}, its search counted).")
    which = f"the {judged[0]} ticket does not" if len(judged) == 1 else \
        "neither the " + " nor the ".join(judged) + " ticket"
    return (f"**Verdict: {dry_text}the recipe with a ticket does not beat the recipe without one in this run** "
            f"({which} reach{'es' if len(judged) > 1 else ''} the plain recipe's robust accuracy sooner, its search "
            "counted).")


def verdict_metrics(setup: SpeedrunSetup) -> list[str]:
    """The headline metric, and the PGD attacks beside it."""
    return ["robust", *[a for a in setup.final.final_attacks if a.startswith("pgd")]]


def evaluate(model, data, setup: SpeedrunSetup, device: torch.device, say) -> dict:
    f = setup.final
    x, y = as_float(data.test, device, f.final_n)
    limits = {"autoattack": f.autoattack_n} if (f.autoattack_n and "autoattack" in f.final_attacks) else None
    return evaluate_robustness(model, x, y, f.final_attacks, eps=setup.attack.eps, batch_size=f.eval_batch_size,
                               seed=setup.train.seed, independent=True,
                               precision=resolve_precision(device, setup.speedrun.eval_precision), limits=limits,
                               log=say)


def table_rows(rows: list[Row], base: Row) -> list[dict]:
    """The table: every recipe, with its time and robust accuracy against the speedrun's, from this run."""
    out = []
    for r in rows:
        out.append({"recipe": r.name, "what": r.label, "model": r.model, "epochs": r.epochs, "batch": r.batch_size,
                    "precision": r.precision, "train_s": round(r.train_time, 2), "search_s": round(r.search_time, 2),
                    "images_per_s": round(r.images_per_second, 1), "n": r.n, "clean": r.clean, **r.accuracy,
                    "worst_case": r.worst_case, "guard": r.guard,
                    "train_s_over_speedrun": round(r.train_time / base.train_time, 3) if base.train_time else None,
                    "robust_minus_speedrun": (round(r.robust - base.robust, 4)
                                              if r.robust is not None and base.robust is not None else None),
                    "ticket_beats_speedrun": r.beats_speedrun})
    return out


def to_markdown(rows: list[dict], env: dict, setup: SpeedrunSetup, quick: bool,
                verdicts: Optional[list[dict]] = None) -> str:
    attacks = [a for a in setup.final.final_attacks]
    head = ["recipe", "model", "epochs", "batch", "precision", "train s", "of it search s", "images/s", "clean",
            *attacks, "worst case", "guard", "train s / speedrun", "robust − speedrun"]
    f = lambda v: "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))  # noqa: E731
    dry = "a DRY RUN (tiny data and models): the numbers say nothing about speed or robustness; " if quick else ""
    lines = [f"# Speedrun against the published fast-AT recipes on {device_name(env)}", "",
             f"torch {env.get('torch')}, robustlth {env.get('robustlth')} at {env.get('git_commit')}; {dry}"
             f"all rows measured in this one run on this device. Test images: the first {setup.final.final_n} of "
             f"{setup.data.test_data or setup.data.data}; every attack on every clean-correct image "
             f"(each column that attack's own accuracy), ε = 8/255, precision {setup.speedrun.eval_precision}. "
             "Training seconds exclude evaluation; every recipe reads the same device-resident, on-device-augmented "
             "batches.",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["what"], r["model"], r["epochs"], r["batch"], r["precision"], f"{r['train_s']:.1f}",
                 f"{r['search_s']:.1f}" if r["search_s"] else "-", f"{r['images_per_s']:,.0f}", f(r["clean"]),
                 *[f(r.get(a)) for a in attacks], f(r["worst_case"]),
                 r["guard"], f(r["train_s_over_speedrun"]), f(r["robust_minus_speedrun"])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if verdicts:
        lines += ["", "## With a ticket or without", "",
                  "Each ticket's training seconds include its search (the recipe at the search LR, then pruning). "
                  "Target: the plain recipe's accuracy at its main budget; time to reach it: the fastest budget with "
                  "an equal or higher accuracy (more budgets: `--curve`).", "", overall_verdict(verdicts, quick), ""]
        lines += [f"- {v['text']}" for v in verdicts]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (its runs/ holds the speedrun's stages)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true",
                   help="dry run: the speedrun's quick preset, references at 1/8 width for 1 epoch on its data")
    p.add_argument("--epochs", type=int, help="the speedrun's budget (default: its preset's)")
    p.add_argument("--curve", default="", help="more speedrun budgets for the curve, e.g. 5,10 (comma-separated)")
    p.add_argument("--tickets", default="boosting,structured",
                   help="the recipe with these tickets too (comma-separated, from "
                        f"{', '.join(t for t in TICKETS if t != 'none')}; empty: none), each at the speedrun's budgets")
    p.add_argument("--search-epochs", type=int,
                   help="the tickets' search epochs (default: the speedrun's, 2; quick: 1)")
    p.add_argument("--ticket-ratio", type=float, help="the boosting ticket's pruned fraction (default: 0.8)")
    p.add_argument("--ticket-keep", type=float, help="the structured ticket's kept channel fraction (default: 0.5)")
    p.add_argument("--references", default=",".join(REFERENCES),
                   help=f"comma-separated, from {', '.join(REFERENCES)} (empty: none)")
    p.add_argument("--reference-epochs", type=int, help="override every reference's published epochs")
    p.add_argument("--reference-curve", default="",
                   help="also run every reference at these epoch budgets (comma-separated), for the curve")
    p.add_argument("--reference-model", help="override the references' models (e.g. preactresnet18)")
    p.add_argument("--width", type=float, help="width of every network (default: 1; the quick run: 1/8)")
    p.add_argument("--data", help="training data (default: the speedrun preset's)")
    p.add_argument("--test-data", help="test images' source (default: the speedrun preset's, the exact subset)")
    p.add_argument("--n-train", type=int, help="class-balanced subset of the training images")
    p.add_argument("--final-n", type=int, help="test images evaluated (default: 1000; quick: 8)")
    p.add_argument("--final-attacks", help="comma-separated (default: pgd50,autoattack)")
    p.add_argument("--eps", type=parse_number, default=EPS, help="must be 8/255: the references are published at it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    args = p.parse_args(argv)
    if abs(args.eps - EPS) > 1e-12:
        p.error("the reference recipes are published at eps 8/255")
    tickets = [t.strip() for t in args.tickets.split(",") if t.strip()]
    for t in tickets:
        if t not in TICKETS or t == "none":
            p.error(f"unknown ticket {t!r} in --tickets: expected boosting or structured")
    device = resolve_device(args.device)
    if args.threads or (args.quick and device.type == "cpu"):
        torch.set_num_threads(args.threads or 1)  # the dry run's tiny networks: one thread, as gpu_check's
    tune_for_static_shapes(device)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log_file = open(out / "speedrun_bench.log", "a")

    def say(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    preset = "quick" if args.quick else "full"
    over: dict[str, dict] = {"data": {}, "train": {"seed": args.seed}, "final": {}, "speedrun": {}, "model": {}}
    for key, section, name in (("data", "data", "data"), ("test_data", "data", "test_data"),
                               ("n_train", "data", "n_train"), ("epochs", "train", "epochs"),
                               ("final_n", "final", "final_n"), ("width", "model", "width")):
        if getattr(args, key) is not None:
            over[section][name] = getattr(args, key)
    if args.final_attacks is not None:
        over["final"]["final_attacks"] = [a for a in args.final_attacks.split(",") if a]
    curve = [int(e) for e in args.curve.split(",") if e.strip()]
    over["speedrun"]["curve"] = curve
    for name in ("search_epochs", "ticket_ratio", "ticket_keep"):
        if getattr(args, name) is not None:
            over["speedrun"][name] = getattr(args, name)
    setup = SpeedrunSetup.from_preset(preset, **over)
    width = setup.model.width
    refs = [REFERENCES[r.strip()] for r in args.references.split(",") if r.strip()]
    env = environment(device)
    say(f"speedrun benchmark on {device_name(env)}: speedrun budgets {setup.budgets()}, tickets {tickets or 'none'}, "
        f"references {[r.name for r in refs] or 'none'}{' (dry run)' if args.quick else ''}")

    # 1. The speedrun (its stages cached under out/runs).
    stage = Speedrun(setup, out / "runs", preset, False, say)
    data = stage.load()  # loaded once: the same data and test images for the references
    result = run_stage(stage, out / "runs", RunContext(device))
    run = stage_dir(stage, out / "runs")
    points = sorted(result.points, key=lambda q: q.epochs)
    base = speedrun_row(result.main(), setup)
    rows, curve_rows = [base], [dict(recipe="speedrun", epochs=q.epochs, train_s=round(q.train_time, 3),
                                     clean=q.clean, **q.accuracy, worst_case=q.worst_case) for q in points]
    series = {f"speedrun ({setup.model.model})": [(q.train_time, q.robust, f"{q.epochs} ep") for q in points]}
    report = {"environment": env, "quick": args.quick, "setup": {k: v.to_dict() for k, v in setup.sections().items()},
              "speedrun": result.to_dict(), "speedrun_dir": str(run.path), "tickets": {}, "references": {}}

    # 1b. The same recipe with a ticket (its search counted in its time), at the same budgets, on the same data.
    verdicts = []
    for kind in tickets:
        tsetup = setup.with_ticket(kind)
        tstage = Speedrun(tsetup, out / "runs", preset, False, say, data)
        tresult = run_stage(tstage, out / "runs", RunContext(device))
        tpoints = sorted(tresult.points, key=lambda q: q.epochs)
        found = [ticket_verdict(result, tresult, kind, m, args.quick) for m in verdict_metrics(setup)]
        verdicts += found
        row = speedrun_row(tresult.main(), tsetup, f"speedrun+{kind}")
        row.beats_speedrun = found[0]["beats"]
        rows.append(row)
        curve_rows += [dict(recipe=f"speedrun+{kind}", epochs=q.epochs, train_s=round(q.train_time, 3),
                            search_s=round(q.search_time, 3), clean=q.clean, **q.accuracy, worst_case=q.worst_case)
                       for q in tpoints]
        series[f"speedrun + {kind} ticket"] = [(q.train_time, q.robust, f"{q.epochs} ep") for q in tpoints]
        report["tickets"][kind] = {"speedrun": tresult.to_dict(), "dir": str(stage_dir(tstage, out / "runs").path),
                                   "verdicts": found}
        for v in found:
            say(v["text"].replace("**", ""))

    # 2. The published loops, each at its published budget (and at --reference-curve budgets).
    for ref in refs:
        if args.reference_model:
            ref = Reference(**{**ref.__dict__, "model": args.reference_model})
        budgets = sorted({args.reference_epochs or (1 if args.quick else ref.epochs)} |
                         {int(e) for e in args.reference_curve.split(",") if e.strip()})
        pts = []
        for epochs in budgets:
            say(f"--- reference {ref.name}, {epochs} epochs ---")
            model, rec = train_reference(ref, data, device, args.seed, epochs, width, say)
            t0 = time.perf_counter()
            final = evaluate(model, data, setup, device, say) if setup.final.final_attacks else None
            rec["final_eval_time"] = time.perf_counter() - t0
            acc = {a["name"]: a["accuracy"] for a in final["attacks"]} if final else {}
            row = Row(ref.name, ref.label.replace(f"{ref.epochs} ep", f"{epochs} ep"), ref.model, epochs,
                      ref.batch_size, rec["precision"], rec["train_time"], rec["images_per_second"],
                      final["n"] if final else 0, final["clean"] if final else None, acc,
                      final["worst_case"] if final else None, "none (not in the published loop)")
            report["references"].setdefault(ref.name, []).append({**rec, "final": final})
            curve_rows.append(dict(recipe=ref.name, epochs=epochs, train_s=round(row.train_time, 3), clean=row.clean,
                                   **acc, worst_case=row.worst_case))
            pts.append((row.train_time, row.robust, f"{epochs} ep"))
            if epochs == (args.reference_epochs or (1 if args.quick else ref.epochs)):
                rows.append(row)
        series[ref.label.split(" (")[0]] = pts

    table = table_rows(rows, base)
    report["table"] = table
    if tickets:
        report["ticket_verdict"] = overall_verdict(verdicts, args.quick)
        say(report["ticket_verdict"].replace("**", ""))
    where = {"device": device_name(env), "dry_run": args.quick}
    atomic_write_text(out / "table.csv", csv_text([{**r, **where} for r in table]))
    atomic_write_text(out / "table.md", to_markdown(table, env, setup, args.quick, verdicts))
    atomic_write_text(out / "curve.csv", csv_text([{**r, **where} for r in curve_rows]))
    metric = "AutoAttack" if "autoattack" in setup.final.final_attacks else "worst case over the attacks"
    plot_curve(series, out / "curve.png", f"{metric} accuracy vs training seconds on {device_name(env)}"
               + (" (dry run)" if args.quick else ""), ylabel=f"robust accuracy ({metric})")
    atomic_write_json(out / "speedrun_bench.json", report)
    print((out / "table.md").read_text())
    say(f"wrote {out / 'table.md'}, table.csv, curve.csv, curve.png, speedrun_bench.json")
    log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
