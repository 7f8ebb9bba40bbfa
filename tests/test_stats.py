"""Paired intervals and Holm's correction against hand computations (robustlth.stats)."""
import math

import numpy as np
import pytest

from robustlth.stats import (Interval, binomial_se, bounded_paired_interval, difference_interval, holm,
                             holm_intervals, holm_verdicts, pack_flags, paired_interval, paired_se_bound, t_cdf,
                             t_interval, t_quantile)

# Ten images, two arms: a is right on 5, b on 3; they disagree on 4 images (3 for a, 1 for b).
A = np.array([1, 1, 0, 0, 1, 0, 1, 1, 0, 0], dtype=bool)
B = np.array([1, 0, 0, 0, 1, 1, 0, 0, 0, 0], dtype=bool)


def test_paired_interval_against_a_hand_computation():
    # d = a - b = [0, 1, 0, 0, 0, -1, 1, 1, 0, 0]: mean 0.2; sample variance (sum d^2 - n mean^2) / (n - 1)
    # = (4 - 10 * 0.04) / 9 = 0.4; SE = sqrt(0.4 / 10) = 0.2; half-width t(0.975, 9) = 2.262 times 0.2.
    iv = paired_interval(A, B)
    assert iv.mean == pytest.approx(0.2)
    assert iv.std == pytest.approx(math.sqrt(0.4))
    assert iv.se == pytest.approx(0.2)
    assert iv.half == pytest.approx(2.2622 * 0.2, abs=1e-4)
    assert (iv.n, iv.df, iv.method) == (10, 9.0, "paired-images")
    # Its p-value is the t tail of 0.2 / 0.2 = 1 with 9 degrees of freedom.
    assert iv.p_value() == pytest.approx(2 * (1 - t_cdf(1.0, 9)))
    # Not the standard error of one accuracy (what the report used to print), nor of two independent ones.
    assert iv.se != pytest.approx(binomial_se(0.5, 10))
    assert iv.se != pytest.approx(math.hypot(binomial_se(0.5, 10), binomial_se(0.3, 10)))


def test_pairing_removes_what_the_images_share():
    same = paired_interval(A, A)
    assert (same.mean, same.lo, same.hi, same.se) == (0, 0, 0, 0) and same.p_value() == 1.0
    # Two arms that agree on 990 of 1,000 images and differ on 10 (all in a's favour): a - b = +1.0 point with a
    # paired SE of about 0.3 points; one accuracy's SE (about 1.5 points) would call it noise.
    a = np.zeros(1000, dtype=bool)
    a[:300] = True
    b = a.copy()
    b[:10] = False
    iv = paired_interval(a, b)
    assert iv.mean == pytest.approx(0.01) and iv.se == pytest.approx(math.sqrt((10 - 1000 * 1e-4) / 999 / 1000))
    assert iv.excludes_zero() and binomial_se(0.3, 1000) > 4 * iv.se
    with pytest.raises(ValueError, match="same images"):
        paired_interval(A, B[:5])


def test_paired_se_bound_by_hand_and_is_a_bound():
    # 6 and 5 right of 10: at most min(6, 5) + min(5, 4) = 9 images disagree, with a - b = 1 image;
    # variance (9 - 1 / 10) / 9, SE sqrt(variance / 10).
    assert paired_se_bound(0.6, 0.5, 10) == pytest.approx(math.sqrt((9 - 0.1) / 9 / 10))
    rng = np.random.default_rng(0)
    for _ in range(50):  # any arrangement of those accuracies has a paired SE no larger than the bound
        a, b = np.zeros(10, bool), np.zeros(10, bool)
        a[rng.permutation(10)[:6]] = True
        b[rng.permutation(10)[:5]] = True
        assert paired_interval(a, b).se <= paired_se_bound(0.6, 0.5, 10) + 1e-12
    iv = bounded_paired_interval(0.6, 0.5, 10)
    assert iv.method == "bound" and iv.mean == pytest.approx(0.1)
    assert iv.se == pytest.approx(paired_se_bound(0.6, 0.5, 10))


def test_difference_interval_picks_images_for_one_run_and_seeds_for_several():
    one = difference_interval({0: 0.5}, {0: 0.3}, {0: pack_flags(A)}, {0: pack_flags(B)})
    assert one.method == "paired-images" and one.se == pytest.approx(0.2)
    unpaired = difference_interval({0: 0.5}, {0: 0.3}, n_images=10)
    assert unpaired.method == "bound"
    seeds = difference_interval({0: 0.30, 1: 0.32, 2: 0.35}, {0: 0.25, 1: 0.28, 2: 0.29, 3: 0.9},
                                {0: A, 1: A, 2: A}, {0: B, 1: B, 2: B})
    d = [0.05, 0.04, 0.06]
    assert seeds.method == "t" and seeds.n == 3 and seeds.mean == pytest.approx(0.05)  # seed 3 has no partner
    assert seeds.se == pytest.approx(np.std(d, ddof=1) / math.sqrt(3))
    assert difference_interval({0: 0.5}, {1: 0.3}).method == "none"


def test_holm_adjusted_p_values_by_hand():
    # sorted 0.01, 0.03, 0.04, 0.20 (m = 4): 0.04, 0.09, max(0.09, 0.08) = 0.09, 0.20; in the input order.
    assert holm([0.01, 0.04, 0.03, 0.20]) == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = holm([0.01, float("nan"), 0.02])  # an interval without an SE is not counted
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


def _iv(mean, se, df=1e6):
    half = t_quantile(0.975, df) * se
    return Interval(mean, mean - half, mean + half, 100, method="t", se=se, df=df)


def test_holm_verdicts_need_the_correction_to_hold():
    strong, weak, null = _iv(0.10, 0.02), _iv(0.042, 0.02), _iv(0.0, 0.02)  # z = 5, 2.1, 0
    assert weak.excludes_zero()  # alone, at 95 %
    v = holm_verdicts([strong, weak, null])
    assert [x["m"] for x in v] == [3, 3, 3]
    assert v[0]["holds"] and v[0]["verdict"] == "above zero (holds after Holm over 3)"
    assert not v[1]["holds"] and v[1]["verdict"] == "not distinguishable from zero after Holm over 3"
    assert v[1]["p_holm"] == pytest.approx(2 * weak.p_value())
    assert not v[2]["holds"] and v[2]["verdict"] == "not distinguishable from zero"
    assert holm_verdicts([weak])[0]["holds"]  # one interval: no correction


def test_holm_intervals_widen_step_by_step_and_stop_at_the_first_failure():
    a, b, c = _iv(0.09, 0.03), _iv(0.07, 0.03), _iv(0.062, 0.03)  # z = 3, 2.33, 2.07
    (wa, ha), (wb, hb), (wc, hc) = holm_intervals([c, a, b])[1], holm_intervals([c, a, b])[2], \
        holm_intervals([c, a, b])[0]
    assert wa.level == pytest.approx(1 - 0.05 / 3) and ha  # the smallest p-value: Bonferroni over 3
    assert wb.level == pytest.approx(1 - 0.05 / 2) and hb
    assert wc.level == pytest.approx(0.95) and hc
    # Once one fails, every later one fails, even if its own interval at its step's level excludes zero:
    # z = 2.2, 2.15, 2.0; the first needs p < 0.05 / 3 and has 0.028, so the last (p = 0.046 < 0.05) fails too.
    x, y, z = _iv(0.044, 0.02), _iv(0.043, 0.02), _iv(0.040, 0.02)
    out = holm_intervals([x, y, z])
    assert [h for _, h in out] == [False, False, False]
    assert out[2][0].level == pytest.approx(0.95) and out[2][0].excludes_zero()
    assert [v["holds"] for v in holm_verdicts([x, y, z])] == [False, False, False]


def test_p_values_and_levels_agree_with_t_intervals():
    iv = t_interval([0.20, 0.25, 0.30, 0.28])
    assert iv.se == pytest.approx(iv.std / 2) and iv.df == 3
    assert iv.at_level(0.95).half == pytest.approx(iv.half)
    wider = iv.at_level(0.99)
    assert wider.half == pytest.approx(t_quantile(0.995, 3) * iv.se) and wider.mean == iv.mean
    # An interval whose 95 % bound touches 0 has p = 0.05.
    edge = _iv(1.959964 * 0.01, 0.01, df=math.inf)
    assert edge.p_value() == pytest.approx(0.05, abs=1e-6)
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)
    assert math.isnan(Interval(0.1, float("nan"), float("nan"), 1, method="none").p_value())
    assert Interval(0.1, 0.0, 0.2, 10, se=0.05, df=math.inf).to_dict()["df"] is None  # JSON: no Infinity
