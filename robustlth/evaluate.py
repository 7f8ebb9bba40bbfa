"""Robustness evaluation: clean accuracy, PGD/CW, AutoAttack (reference implementation), torchattacks.

Robust accuracy is per-sample: a point counts as robust only if it is classified correctly on the clean
input and under every attack run. By default each attack runs only on the points still robust (as
AutoAttack does), so the cost falls as attacks succeed; `independent=True` runs every attack on all
clean-correct points and also reports each attack's own accuracy, which enables more sanity checks.
"""
from __future__ import annotations

import contextlib
import re
import time
import warnings
from typing import TYPE_CHECKING, Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attacks import Attack, attack_from_spec
from .config import ConfigError
from .device import autocast, synchronize
from .progress import Progress, format_seconds
from .stats import pack_flags

if TYPE_CHECKING:  # the trainer imports this module; the context is only a type here
    from .training.context import RunContext

DEFAULT_ATTACKS = ("pgd20", "pgd100", "cw", "autoattack")


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[0] != y.shape[0]:
        raise ValueError(f"expected images (N, C, H, W) and N labels, got {tuple(x.shape)} and {tuple(y.shape)}")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"inputs must lie in [0, 1] (normalisation belongs inside the model); got [{lo:.3f}, {hi:.3f}]")


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
            precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """(correct flags, summed cross-entropy) in eval mode."""
    correct, loss = [], torch.zeros((), device=x.device)
    with eval_mode(model), autocast(x.device, precision):
        for i in range(0, x.shape[0], batch_size):
            out = model(x[i:i + batch_size]).float()
            correct.append(out.argmax(1) == y[i:i + batch_size])
            loss += F.cross_entropy(out, y[i:i + batch_size], reduction="sum")
    return torch.cat(correct), loss


def robust_flags(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
                 generator: Optional[torch.Generator] = None, precision: str = "fp32") -> torch.Tensor:
    """Per-sample flags: still classified correctly after `attack` (attack generated in eval mode)."""
    flags = []
    with eval_mode(model):
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            with autocast(x.device, precision):
                x_adv = attack(model, xb, yb, generator)
                with torch.no_grad():
                    flags.append(model(x_adv).argmax(1) == yb)
    return torch.cat(flags) if flags else torch.zeros(0, dtype=torch.bool, device=x.device)


class Autocast(nn.Module):
    """Runs a model under the evaluation's autocast and hands float32 logits to attacks written for fp32."""

    def __init__(self, model: nn.Module, precision: str):
        super().__init__()
        self.model, self.precision = model, precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(x.device, self.precision):
            return self.model(x).float()


class _CountCalls(nn.Module):
    """The model, counting its forward calls into the current attack's progress (AutoAttack's attacks have no
    callback of their own; a call is one step of theirs)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.progress = model, None
        self.training = model.training  # so eval_mode(wrapper) restores the model's own mode, not a fresh module's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.progress is not None and self.progress.done < self.progress.total - 1:  # an estimate: never past it
            self.progress.update(1)
        return self.model(x)


# AutoAttack standard's attacks in its order, with about how many model calls each makes per batch of images
# (measured: the checks and clean pass, then APGD-CE 1 x 100 iterations, APGD-T 9 targets x 100, FAB-T 9 targets x
# 100 with two calls per iteration, Square up to 5,000 queries; attacks stop early once every image is fooled).
AUTOATTACK_STANDARD = (("apgd-ce", 111), ("apgd-t", 928), ("fab-t", 1850), ("square", 5010))


def autoattack_flags(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int = 0,
                     batch_size: int = 256, precision: str = "fp32", log=None, progress: bool = False) -> torch.Tensor:
    """AutoAttack, standard version (APGD-CE, APGD-T, FAB-T, Square), reference implementation, run on the
    model in the evaluation's precision (as every other attack is).

    Its four attacks run one at a time (the reference `attacks_to_run`), each on the images still robust after
    the ones before, in the same batches and with the same seed as one `run_standard_evaluation` call: the
    verdicts are standard AutoAttack's. Between them each attack reports how many images it ran on and fooled,
    and while it runs its progress (model calls, with an ETA) goes to stderr."""
    from pyautoattack import AutoAttack
    robust = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    with eval_mode(model):
        target = model if precision == "fp32" else Autocast(model, precision).eval()
        counted = _CountCalls(target)
        adversary = AutoAttack(counted, eps=eps, norm="Linf", version="standard", seed=seed, device=x.device)
        adversary.verbose = False
        with torch.no_grad():  # AutoAttack starts from the clean-correct points
            robust &= predict(target, x, y, batch_size)[0]
        before = {"clean": float(robust.float().mean())}
        t_all = time.perf_counter()
        for i, (name, calls) in enumerate(AUTOATTACK_STANDARD):
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                if log:
                    log(f"autoattack {name} ({i + 1}/4): no image left to attack")
                continue
            batches = -(-idx.numel() // batch_size)
            if log:
                log(f"autoattack {name} ({i + 1}/4): on {idx.numel()} images still robust, {batches} "
                    f"batch{'es' if batches > 1 else ''} (about {calls * batches:,} model calls at most)")
            adversary.attacks_to_run = [name]
            t0 = time.perf_counter()
            with Progress(f"autoattack {name}", calls * batches, enabled=progress, unit="model calls") as bar:
                counted.progress = bar
                try:
                    _, y_adv = adversary.run_standard_evaluation(x[idx], y[idx], batch_size=batch_size)
                finally:
                    counted.progress = None
            fooled = y_adv.to(y.device) != y[idx]
            robust[idx[fooled]] = False
            before[name] = float(robust.float().mean())
            if log:
                log(f"autoattack {name} ({i + 1}/4): fooled {int(fooled.sum())} of {idx.numel()} in "
                    f"{format_seconds(time.perf_counter() - t0)}; {int(robust.sum())} of {x.shape[0]} still robust "
                    f"({format_seconds(time.perf_counter() - t_all)} so far)")
        drop = min(v for k, v in before.items() if k != "square") - before.get("square", 1.0)
        if "square" in before and drop > 0.002:  # the reference's check_square_sr, worded as its warning
            warnings.warn(f"AutoAttack: Square (black-box) lowered robust accuracy by {drop:.2%} after the gradient "
                          "attacks: this may indicate gradient masking; the evaluation may be unreliable",
                          RuntimeWarning, stacklevel=2)
    return robust


# torchattacks' L-inf attacks that take `eps` (available with the `attacks` extra).
TORCHATTACKS_LINF = {"fgsm": "FGSM", "pgd": "PGD", "tpgd": "TPGD", "mifgsm": "MIFGSM", "difgsm": "DIFGSM",
                     "eotpgd": "EOTPGD", "apgd": "APGD", "apgdt": "APGDT", "fab": "FAB", "square": "Square",
                     "autoattack": "AutoAttack"}


def _check_torchattacks(name: str) -> None:
    """`name` (after ta-) is one of torchattacks' L-inf attacks: else one line listing them."""
    if name not in TORCHATTACKS_LINF:
        raise ConfigError(f"unknown torchattacks attack ta-{name}: expected one of "
                          + ", ".join("ta-" + k for k in TORCHATTACKS_LINF))


def torchattacks_flags(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                       batch_size: int = 256) -> torch.Tensor:
    try:
        import torchattacks
    except ImportError:
        raise ConfigError(f"attack ta-{name} needs torchattacks: pip install 'robustlth[attacks]'") from None
    _check_torchattacks(name)
    atk = getattr(torchattacks, TORCHATTACKS_LINF[name])(model, eps=eps)
    flags = []
    with eval_mode(model):
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            x_adv = atk(xb, yb)
            with torch.no_grad():
                flags.append(model(x_adv).argmax(1) == yb)
    return torch.cat(flags)


def _attack_flags(spec: str, model, x, y, eps, batch_size, seed, precision, progress: bool = False,
                  log=None) -> torch.Tensor:
    if spec == "autoattack":
        return autoattack_flags(model, x, y, eps, seed=seed, batch_size=batch_size, precision=precision, log=log,
                                progress=progress)
    if spec.startswith("ta-"):
        return torchattacks_flags(spec[3:], model, x, y, eps, batch_size)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    attack = attack_from_spec(spec, eps)
    # Progress by model call, so a long batch (PGD-100 on a CPU) shows life: per batch, each restart's steps and
    # its check, then the verdict.
    per_batch = getattr(attack, "restarts", 1) * (getattr(attack, "steps", 1) + 1) + 1
    with Progress(f"final attack {spec}", -(-x.shape[0] // batch_size) * per_batch, enabled=progress,
                  unit="model calls") as bar:
        counted = _CountCalls(model)
        counted.progress = bar
        return robust_flags(counted, attack, x, y, batch_size, gen, precision)


# Iterative attacks beyond these are typos (pgd2000000 would run for days), not evaluations.
MAX_ATTACK_STEPS, MAX_ATTACK_RESTARTS = 100_000, 1_000


def validate_attack_names(names: Iterable[str], eps: float = 8 / 255) -> list[str]:
    """The attack names of a list (--attacks, final_attacks), each checked: no empty item, none twice, every
    name known and its steps and restarts in range."""
    given = [n.strip() for n in names]
    names = [n for n in given if n]
    if not names:
        raise ConfigError("no attacks given: expected e.g. pgd20,pgd100,cw,autoattack")
    if len(names) != len(given):
        raise ConfigError(f"invalid attack list {','.join(given)!r}: an empty item between commas (expected "
                          "comma-separated names, e.g. pgd20,cw)")
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise ConfigError(f"invalid attack list {','.join(names)!r}: {twice!r} is given twice (each attack once)")
    for n in names:
        if n == "autoattack":
            continue
        if n.startswith("ta-"):
            _check_torchattacks(n[3:])
            continue
        attack = attack_from_spec(n, eps)  # the registered attacks (robustlth.attacks.ATTACKS), pgdK[xR], cw[K][xR]
        steps, restarts = getattr(attack, "steps", 1), getattr(attack, "restarts", 1)
        if steps > MAX_ATTACK_STEPS or restarts > MAX_ATTACK_RESTARTS:
            raise ConfigError(f"invalid attack {n!r}: {steps} steps x {restarts} restarts; expected at most "
                              f"{MAX_ATTACK_STEPS:,} steps and {MAX_ATTACK_RESTARTS:,} restarts")
    return names


def zero_gradient_fraction(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of points whose input gradient of the loss is exactly zero (a sign of gradient masking)."""
    with eval_mode(model), torch.enable_grad():
        x = x.clone().requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x).float(), y, reduction="sum"), x)
    return float((grad.flatten(1).abs().amax(1) == 0).float().mean())


def _steps(spec: str) -> Optional[int]:
    m = re.match(r"^pgd(\d+)", spec)
    return int(m.group(1)) if m else None


def sanity_warnings(clean: float, results: list[dict], zero_grad: float, n: int) -> list[str]:
    """Signs of a broken evaluation, as readable sentences."""
    out = []
    if zero_grad > 0.1:
        out.append(f"{zero_grad:.0%} of the evaluated points have an exactly zero input gradient: gradient "
                   "masking or a broken model; gradient attacks will overestimate robustness")
    own = {r["name"]: r["accuracy"] for r in results if r.get("accuracy") is not None}
    pgds = sorted((s, a) for name, a in own.items() if (s := _steps(name)) is not None)
    for (s1, a1), (s2, a2) in zip(pgds, pgds[1:]):
        if s2 > s1 and a2 > a1 + 0.01:
            out.append(f"PGD-{s2} accuracy {a2:.4f} is above PGD-{s1} accuracy {a1:.4f}: more steps should not "
                       "help the defender; check step size and gradients")
    if "fgsm" in own and pgds and own["fgsm"] < min(a for _, a in pgds) - 0.01:
        out.append(f"FGSM accuracy {own['fgsm']:.4f} is below PGD accuracy {min(a for _, a in pgds):.4f}: a "
                   "single step should not beat PGD; suspect gradient masking")
    for r in results:
        if n >= 100 and r.get("accuracy") is not None and clean > 0 and r["accuracy"] >= clean and r["name"] != "fgsm":
            out.append(f"{r['name']} did not change a single prediction: the attack is not working")
    return out


def evaluate_robustness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Iterable[str],
                        eps: float = 8 / 255, batch_size: int = 256, seed: int = 0, independent: bool = False,
                        precision: str = "fp32", limits: Optional[dict[str, int]] = None, log=None,
                        progress: bool = False, ctx: Optional[RunContext] = None) -> dict:
    """Clean and robust accuracy per attack and per-sample worst case, with sanity warnings.

    `limits` maps an attack to a number K: it runs only on the first K images (for costly attacks such as
    AutoAttack); the result then also gives the worst case over those K images, where every attack ran.
    Under data parallelism (`ctx` of several processes, each holding the same model and all of `x`) every
    process classifies and attacks its share of the images (of those still robust, so the costly attacks
    split evenly) and the per-image verdicts are gathered: every process returns the same result.
    """
    limits = limits or {}
    attacks = validate_attack_names(attacks, eps)
    check_inputs(x, y)
    n = x.shape[0]
    mine = _share(torch.arange(n, device=x.device), ctx)
    correct = torch.ones(n, dtype=torch.bool, device=x.device)
    correct[mine] = predict(model, x[mine], y[mine], batch_size, precision)[0]
    correct = _gather(correct, ctx)
    robust = correct.clone()
    clean = float(correct.float().mean())
    results = []
    per_image = {"clean": pack_flags(correct)}  # kept so a single run can be bootstrapped over images
    for spec in attacks:
        pool = correct if independent else robust
        if spec in limits:
            pool = pool & (torch.arange(n, device=x.device) < limits[spec])
        idx = pool.nonzero().squeeze(1)
        t0 = time.perf_counter()
        flags = correct.clone()  # points the attack does not run on keep their clean verdict
        k = min(limits.get(spec, n), n)  # a limited attack's own accuracy is over the images it covered
        if log:
            log(f"final attack {spec}: running on {idx.numel()} images (those of the first {k} still robust)")
        idx = _share(idx, ctx)
        if idx.numel():
            flags[idx] = _attack_flags(spec, model, x[idx], y[idx], eps, batch_size, seed, precision, progress, log)
        flags = _gather(flags, ctx)  # the images of the pool are all clean-correct: True where not attacked here
        synchronize(x.device)
        robust &= flags
        per_image[spec] = pack_flags(robust)  # cumulative, as robust_after
        r = {"name": spec, "robust_after": float(robust.float().mean()),
             "accuracy": float(flags[:k].float().mean()) if (independent or not results) else None,
             "time_s": round(time.perf_counter() - t0, 3), "n": k}
        results.append(r)
        if log:
            log(f"final attack {spec}: done in {r['time_s']:.1f} s; robust after all attacks so far (cumulative, "
                f"{n} images) {r['robust_after']:.4f}")
    idx = correct.nonzero().squeeze(1)[:batch_size]
    zero = zero_gradient_fraction(model, x[idx], y[idx]) if idx.numel() else 0.0
    warns = sanity_warnings(clean, results, zero, n)
    for w in warns:
        warnings.warn(w, RuntimeWarning, stacklevel=2)
    out = {"n": n, "eps": eps, "worst_case": float(robust.float().mean()), "clean": clean, "attacks": results,
           "independent": independent, "warnings": warns, "flags": per_image,
           "note": "worst_case: per-sample worst case over all attacks; attacks[].robust_after: cumulative (robust "
                   "to that attack and every one before it); attacks[].accuracy: that attack's own accuracy on its "
                   "n images (independent runs only, or the first attack); flags: packed per-image verdicts (clean, then "
                   "cumulative after each attack), for bootstrap intervals"}
    for spec, k in limits.items():
        if spec in attacks:
            out[f"worst_case_first_{min(k, n)}"] = float(robust[:k].float().mean())
    return out


def _share(idx: torch.Tensor, ctx: Optional[RunContext]) -> torch.Tensor:
    """The images of `idx` this process evaluates: all of them, or its strided share of several processes'."""
    return idx if ctx is None else idx[ctx.shard(idx.numel())]


def _gather(flags: torch.Tensor, ctx: Optional[RunContext]) -> torch.Tensor:
    """Every process's verdicts on its own images, where each left the images of the others True."""
    return flags if ctx is None else ctx.all_true(flags)


def summary_line(result: dict) -> str:
    """One readable line, the per-sample worst case first."""
    parts = [f"worst case over all attacks {result['worst_case']:.4f} on {result['n']} images",
             f"clean {result['clean']:.4f}"]
    parts += [f"after {a['name']} (cumulative) {a['robust_after']:.4f}" for a in result["attacks"]]
    parts += [f"worst case on the first {k[len('worst_case_first_'):]} (every attack) {v:.4f}"
              for k, v in result.items() if k.startswith("worst_case_first_")]
    return "; ".join(parts)
