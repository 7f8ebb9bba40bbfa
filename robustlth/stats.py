"""Spread of results: t-intervals over seeds, paired intervals over images, bootstrap, and Holm's correction.

Every difference between two arms is paired: over the images both were evaluated on when there is one run
(`paired_interval`: d_i = a_i - b_i per image, its mean, SE = sd(d) / sqrt(n), t with n - 1 df), over seeds when
there are several (`paired_difference`: same seed, same θ0 and data order). `difference_interval` picks the one
that applies. A table that tests several intervals controls the family with Holm's step-down (`holm`,
`holm_verdicts`, `holm_intervals`): a verdict holds only if the correction keeps it.

No scipy: the Student-t quantile is computed from the regularised incomplete beta function (a continued
fraction) by bisection, which is exact to far more digits than an accuracy needs. Per-image correctness flags
are stored as strings of 0/1 in result files, so a single run can be re-analysed later.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
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


def normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (e.g. t_quantile(0.975, 2) = 4.303); df = inf: the normal quantile."""
    if not 0 < p < 1 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    cdf = normal_cdf if math.isinf(df) else (lambda t: t_cdf(t, df))
    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


@dataclass(frozen=True)
class Interval:
    """A mean with its spread at `level`. `method`: t (over seeds), paired-images (per image, one run),
    bootstrap (over images of one run), bound (an upper bound on the paired SE from the two accuracies alone, for
    runs that stored no per-image verdicts) or none. `se`: one standard error of the mean; `df`: its degrees of
    freedom (inf: normal)."""
    mean: float
    lo: float
    hi: float
    n: int  # seeds (t) or images (paired-images, bootstrap, bound)
    std: float = float("nan")
    method: str = "t"
    se: float = float("nan")
    df: float = float("nan")
    level: float = LEVEL

    @property
    def half(self) -> float:
        return (self.hi - self.lo) / 2

    def p_value(self) -> float:
        """Two-sided p-value of 'the mean is zero' (t with `df`; normal for df = inf); nan without an SE."""
        if math.isnan(self.se) or math.isnan(self.mean) or math.isnan(self.df):
            return float("nan")
        if self.se == 0:
            return 1.0 if self.mean == 0 else 0.0
        z = abs(self.mean) / self.se
        tail = 1 - normal_cdf(z) if math.isinf(self.df) else 1 - t_cdf(z, self.df)
        return min(1.0, 2 * tail)

    def at_level(self, level: float) -> "Interval":
        """The same mean and SE at another confidence level (e.g. a Holm or Bonferroni step); unchanged without
        an SE."""
        if math.isnan(self.se) or math.isnan(self.df):
            return self
        half = t_quantile(0.5 + level / 2, self.df) * self.se
        return replace(self, lo=self.mean - half, hi=self.mean + half, level=level)

    def shifted(self, by: float) -> "Interval":
        """The interval of (value + by): a non-inferiority margin, or a ratio's distance from 1, tested against 0."""
        return replace(self, mean=self.mean + by, lo=self.lo + by, hi=self.hi + by)

    def excludes_zero(self) -> bool:
        """The interval lies on one side of zero: the difference is distinguishable from zero."""
        return bool(self.lo > 0 or self.hi < 0)

    def to_dict(self) -> dict:
        """Plain values for JSON and CSV (an infinite df, the normal case, is written as null)."""
        d = asdict(self)
        d["df"] = None if math.isinf(self.df) else self.df
        return {**d, "half": self.half}

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
    se = std / math.sqrt(v.size)
    half = t_quantile(0.5 + level / 2, v.size - 1) * se
    return Interval(mean, mean - half, mean + half, int(v.size), std, "t", se, float(v.size - 1), level)


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
    se = float(boot.std(ddof=1))
    return Interval(mean, float(lo), float(hi), n, se * math.sqrt(n), "bootstrap", se, math.inf, level)


def binomial_se(p: float, n: int) -> float:
    """One standard error of an accuracy p measured on n images (nan for n = 0)."""
    return float(math.sqrt(max(p * (1 - p), 0.0) / n)) if n else float("nan")


def proportion_interval(p: float, n: int, level: float = LEVEL) -> Interval:
    """An accuracy p on n images with its normal-approximation interval (± z · binomial SE), for one run whose
    per-image verdicts are not at hand."""
    if not n or p is None or math.isnan(p):
        return Interval(float("nan") if p is None else p, float("nan"), float("nan"), int(n or 0), method="none")
    se = binomial_se(p, n)
    half = t_quantile(0.5 + level / 2, math.inf) * se
    return Interval(p, p - half, p + half, int(n), se * math.sqrt(n), "binomial", se, math.inf, level)


def paired_interval(a: Sequence[bool], b: Sequence[bool], level: float = LEVEL) -> Interval:
    """acc(a) - acc(b) on the same n images: d_i = a_i - b_i, mean(d) ± t(n - 1) · sd(d) / sqrt(n) (sample sd).
    The pairing removes how hard each image is: two arms that agree image by image differ by exactly 0 ± 0,
    which the standard error of one accuracy alone would never show."""
    fa, fb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if fa.shape != fb.shape:
        raise ValueError(f"paired flags need the same images: {fa.size} vs {fb.size}")
    n = int(fa.size)
    if n < 2:
        return Interval(float((fa - fb).mean()) if n else float("nan"), float("nan"), float("nan"), n, method="none")
    d = fa - fb
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    half = t_quantile(0.5 + level / 2, n - 1) * se
    return Interval(mean, mean - half, mean + half, n, sd, "paired-images", se, float(n - 1), level)


def paired_se_bound(p_a: float, p_b: float, n: int) -> float:
    """The largest standard error the paired difference p_a - p_b on n images can have, from the two accuracies
    alone (for runs that stored no per-image verdicts): the two arms disagree on as many images as their
    accuracies allow (min(A, n - B) + min(B, n - A) images for A and B correct)."""
    if n < 2:
        return float("nan")
    A, B = round(p_a * n), round(p_b * n)
    discordant = min(A, n - B) + min(B, n - A)
    var = max(discordant - (A - B) ** 2 / n, 0.0) / (n - 1)
    return math.sqrt(var / n)


def bounded_paired_interval(p_a: float, p_b: float, n: int, level: float = LEVEL) -> Interval:
    """p_a - p_b on the same n images with the widest interval the two accuracies allow (`paired_se_bound`):
    conservative, for runs whose per-image verdicts were not stored."""
    se = paired_se_bound(p_a, p_b, n)
    if math.isnan(se):
        return Interval(p_a - p_b, float("nan"), float("nan"), int(n), method="none")
    half = t_quantile(0.5 + level / 2, n - 1) * se
    return Interval(p_a - p_b, p_a - p_b - half, p_a - p_b + half, int(n), se * math.sqrt(n), "bound", se,
                    float(n - 1), level)


def paired_difference(a: dict, b: dict, level: float = LEVEL) -> Interval:
    """t-interval of a[seed] - b[seed] over the seeds both have (same seed: same θ0 and data order)."""
    seeds = sorted(set(a) & set(b))
    return t_interval([a[s] - b[s] for s in seeds if a[s] is not None and b[s] is not None], level)


def difference_interval(a: dict, b: dict, flags_a: Optional[dict] = None, flags_b: Optional[dict] = None,
                        n_images: Optional[int] = None, level: float = LEVEL) -> Interval:
    """a - b paired, by the rule every report follows: over seeds when both have several seeds in common
    (`paired_difference`), per image when there is one common seed and both stored its per-image verdicts
    (`paired_interval`; `flags_*`: seed -> flags, packed strings or arrays), else, for one seed with `n_images`,
    the conservative `bounded_paired_interval`. `a`, `b`: seed -> value."""
    seeds = sorted(s for s in set(a) & set(b) if a[s] is not None and b[s] is not None)
    if len(seeds) > 1:
        return paired_difference({s: a[s] for s in seeds}, {s: b[s] for s in seeds}, level)
    if len(seeds) == 1:
        s = seeds[0]
        fa, fb = (flags_a or {}).get(s), (flags_b or {}).get(s)
        if fa is not None and fb is not None and len(fa) and len(fb):
            fa, fb = (unpack_flags(f) if isinstance(f, str) else np.asarray(f, dtype=bool) for f in (fa, fb))
            return paired_interval(fa, fb, level)
        if n_images:
            return bounded_paired_interval(a[s], b[s], n_images, level)
        return Interval(a[s] - b[s], float("nan"), float("nan"), 1, method="none")
    return Interval(float("nan"), float("nan"), float("nan"), 0, method="none")


# ----------------------------------------------------------------------------------------------------------
# Several intervals at once: Holm's step-down.

def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order: the i-th smallest of m p-values times (m - i + 1), made
    non-decreasing along that order and capped at 1. A nan p-value (an interval without an SE) stays nan and is
    not counted in m. A test holds at level alpha when its adjusted p-value is below alpha."""
    ps = [float("nan") if p is None else float(p) for p in pvalues]
    order = sorted((i for i, p in enumerate(ps) if not math.isnan(p)), key=lambda i: ps[i])
    m = len(order)
    out = [float("nan")] * len(ps)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * ps[i]))
        out[i] = running
    return out


def holm_verdicts(intervals: Sequence[Interval], alpha: float = 1 - LEVEL) -> list[dict]:
    """For a family of intervals (e.g. every difference a table tests): each one's p-value, Holm-adjusted
    p-value, the family size m, whether it holds (distinguishable from zero after the correction) and its
    verdict in words (`verdict_word`)."""
    ps = [iv.p_value() for iv in intervals]
    adj = holm(ps)
    m = sum(not math.isnan(p) for p in ps)
    return [{"p": p, "p_holm": q, "m": m, "holds": bool(not math.isnan(q) and q < alpha),
             "verdict": verdict_word(iv, holds=not math.isnan(q) and q < alpha, m=m)}
            for iv, p, q in zip(intervals, ps, adj)]


def holm_intervals(intervals: Sequence[Interval], alpha: float = 1 - LEVEL) -> list[tuple[Interval, bool]]:
    """The interval-level view of Holm: the k-th smallest p-value's interval at level 1 - alpha / (m - k)
    (k = 0, 1, ...), with whether it holds; once one fails, every later one fails too (step-down), whatever its
    own widened interval says. Intervals without an SE come back unchanged and not holding."""
    ps = [iv.p_value() for iv in intervals]
    order = sorted((i for i, p in enumerate(ps) if not math.isnan(p)), key=lambda i: ps[i])
    m = len(order)
    out: list[tuple[Interval, bool]] = [(iv, False) for iv in intervals]
    going = True
    for k, i in enumerate(order):
        wide = intervals[i].at_level(1 - alpha / (m - k))
        going = going and wide.excludes_zero()
        out[i] = (wide, going)
    return out


def pack_flags(flags) -> str:
    """Per-image flags (a bool tensor, array or list) as a compact '0101…' string for JSON files."""
    values = flags.tolist() if hasattr(flags, "tolist") else list(flags)
    return "".join("1" if v else "0" for v in values)


def unpack_flags(text: Optional[str]) -> np.ndarray:
    return np.frombuffer((text or "").encode(), dtype=np.uint8) == ord("1")


def verdict_word(diff: Interval, holds: Optional[bool] = None, m: int = 1) -> str:
    """How a difference reads: above zero, below zero, or not distinguishable from zero. With `holds` (the
    verdict of a multiple-comparison correction over m intervals), an interval that excludes zero on its own but
    not after the correction reads "not distinguishable from zero after Holm over m"."""
    if diff.method == "none" or math.isnan(diff.lo):
        return "no interval (one replicate)"
    if holds is not None and m > 1:
        if not holds:
            return (f"not distinguishable from zero after Holm over {m}" if diff.excludes_zero()
                    else "not distinguishable from zero")
        return ("above zero" if diff.mean > 0 else "below zero") + f" (holds after Holm over {m})"
    if diff.lo > 0:
        return "above zero"
    if diff.hi < 0:
        return "below zero"
    return "not distinguishable from zero"
