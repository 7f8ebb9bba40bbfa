"""Spread of results: t-intervals over seeds, bootstrap over test images, paired differences.

No scipy: the Student-t quantile is computed from the regularised incomplete beta function (a continued
fraction) by bisection, which is exact to far more digits than an accuracy needs. Per-image correctness flags
are stored as strings of 0/1 in result files, so a single run can be bootstrapped later.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

LEVEL = 0.95
N_BOOTSTRAP = 2000


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (e.g. t_quantile(0.975, 2) = 4.303)."""
    if not 0 < p < 1 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


@dataclass(frozen=True)
class Interval:
    """A mean with its spread. `method`: t (over seeds), bootstrap (over images of one run) or none."""
    mean: float
    lo: float
    hi: float
    n: int  # seeds (t) or images (bootstrap)
    std: float = float("nan")
    method: str = "t"

    @property
    def half(self) -> float:
        return (self.hi - self.lo) / 2

    def excludes_zero(self) -> bool:
        """The interval lies on one side of zero: the difference is distinguishable from zero."""
        return bool(self.lo > 0 or self.hi < 0)

    def to_dict(self) -> dict:
        return {**asdict(self), "half": self.half}

    def fmt(self, scale: float = 100, digits: int = 1) -> str:
        """'23.4 ± 1.2' (percentage points by default); a plain mean when there is no spread."""
        if math.isnan(self.lo):
            return f"{self.mean * scale:.{digits}f}"
        return f"{self.mean * scale:.{digits}f} ± {self.half * scale:.{digits}f}"


def t_interval(values: Iterable[float], level: float = LEVEL) -> Interval:
    """Mean and the t-interval over independent replicates (seeds); nan bounds for fewer than 2 values."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if v.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, method="none")
    mean = float(v.mean())
    if v.size < 2:
        return Interval(mean, float("nan"), float("nan"), 1, method="none")
    std = float(v.std(ddof=1))
    half = t_quantile(0.5 + level / 2, v.size - 1) * std / math.sqrt(v.size)
    return Interval(mean, mean - half, mean + half, int(v.size), std, "t")


def bootstrap_interval(flags: Sequence[bool], level: float = LEVEL, n_boot: int = N_BOOTSTRAP,
                       seed: int = 0) -> Interval:
    """Accuracy of one run and its percentile bootstrap interval over the evaluated images."""
    f = np.asarray(flags, dtype=float)
    if f.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, method="none")
    idx = np.random.default_rng(seed).integers(0, f.size, size=(n_boot, f.size))
    return _percentile(float(f.mean()), f[idx].mean(1), level, f.size)


def paired_bootstrap_interval(a: Sequence[bool], b: Sequence[bool], level: float = LEVEL,
                              n_boot: int = N_BOOTSTRAP, seed: int = 0) -> Interval:
    """acc(a) - acc(b) on the same images, resampling images jointly (the pairing removes image difficulty)."""
    fa, fb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if fa.shape != fb.shape:
        raise ValueError(f"paired flags need the same images: {fa.size} vs {fb.size}")
    d = fa - fb
    if d.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, method="none")
    idx = np.random.default_rng(seed).integers(0, d.size, size=(n_boot, d.size))
    return _percentile(float(d.mean()), d[idx].mean(1), level, d.size)


def _percentile(mean: float, boot: np.ndarray, level: float, n: int) -> Interval:
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return Interval(mean, float(lo), float(hi), n, float(boot.std(ddof=1)), "bootstrap")


def paired_difference(a: dict, b: dict, level: float = LEVEL) -> Interval:
    """t-interval of a[seed] - b[seed] over the seeds both have (same seed: same θ0 and data order)."""
    seeds = sorted(set(a) & set(b))
    return t_interval([a[s] - b[s] for s in seeds if a[s] is not None and b[s] is not None], level)


def pack_flags(flags) -> str:
    """Per-image flags (a bool tensor, array or list) as a compact '0101…' string for JSON files."""
    values = flags.tolist() if hasattr(flags, "tolist") else list(flags)
    return "".join("1" if v else "0" for v in values)


def unpack_flags(text: Optional[str]) -> np.ndarray:
    return np.frombuffer((text or "").encode(), dtype=np.uint8) == ord("1")


def verdict_word(diff: Interval) -> str:
    """How a difference reads: above zero, below zero, or not distinguishable from zero."""
    if diff.method == "none" or math.isnan(diff.lo):
        return "no interval (one replicate)"
    if diff.lo > 0:
        return "above zero"
    if diff.hi < 0:
        return "below zero"
    return "not distinguishable from zero"
