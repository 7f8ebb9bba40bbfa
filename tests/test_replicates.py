"""Spread of results: the t quantile, intervals, bootstrap, and bench/ablate smoke runs over 2 seeds."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from robustlth.cli import main
from robustlth.stats import (bootstrap_interval, pack_flags, paired_bootstrap_interval, paired_difference,
                             t_cdf, t_interval, t_quantile, unpack_flags)

# Two-sided 95 % critical values of Student's t from printed tables.
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 29: 2.045}


@pytest.mark.parametrize("df,value", sorted(T_TABLE.items()))
def test_t_quantile_matches_the_printed_table(df, value):
    assert t_quantile(0.975, df) == pytest.approx(value, abs=6e-4)


def test_t_quantile_other_levels_and_symmetry():
    assert t_quantile(0.995, 1) == pytest.approx(63.657, abs=1e-3)
    assert t_quantile(0.95, 10) == pytest.approx(1.812, abs=1e-3)
    assert t_quantile(0.975, 10_000) == pytest.approx(1.960, abs=1e-3)  # tends to the normal quantile
    assert t_quantile(0.025, 2) == pytest.approx(-t_quantile(0.975, 2))
    assert t_cdf(t_quantile(0.9, 7), 7) == pytest.approx(0.9, abs=1e-9)
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


def test_t_interval_against_a_hand_computed_value():
    # [0.20, 0.25, 0.30]: mean 0.25, s = 0.05, half-width 4.303 * 0.05 / sqrt(3) = 0.12422
    iv = t_interval([0.20, 0.25, 0.30])
    assert iv.mean == pytest.approx(0.25)
    assert iv.std == pytest.approx(0.05)
    assert iv.half == pytest.approx(4.303 * 0.05 / math.sqrt(3), abs=2e-5)
    assert (iv.n, iv.method) == (3, "t")
    one = t_interval([0.3])
    assert one.mean == 0.3 and math.isnan(one.lo) and one.method == "none"


def test_paired_difference_uses_matching_seeds():
    a = {0: 0.30, 1: 0.32, 2: 0.35}
    b = {0: 0.25, 1: 0.28, 2: 0.29, 3: 0.9}  # seed 3 has no partner: left out
    iv = paired_difference(a, b)
    d = [0.05, 0.04, 0.06]
    assert iv.n == 3 and iv.mean == pytest.approx(0.05)
    assert iv.half == pytest.approx(4.303 * np.std(d, ddof=1) / math.sqrt(3), abs=1e-4)
    assert iv.excludes_zero()


def test_bootstrap_over_images():
    flags = np.array([1] * 300 + [0] * 700, dtype=bool)
    iv = bootstrap_interval(flags, seed=1)
    se = math.sqrt(0.3 * 0.7 / 1000)  # the binomial standard error the bootstrap should reproduce
    assert iv.mean == pytest.approx(0.3) and iv.n == 1000 and iv.method == "bootstrap"
    assert iv.half == pytest.approx(1.96 * se, rel=0.15)
    same = paired_bootstrap_interval(flags, flags)
    assert same.mean == 0 and same.lo == 0 and same.hi == 0  # identical runs: no difference at all
    assert unpack_flags(pack_flags(flags)).tolist() == flags.tolist()


def test_seed_flags_are_checked_first(tmp_path, capsys):
    args = ["bench", "--preset", "smoke", "--device", "cpu", "--out", str(tmp_path)]
    assert main([*args, "--seeds", "0,0"]) == 2
    assert "distinct" in capsys.readouterr().err
    assert main([*args, "--seeds", "0,1", "--replicates", "2"]) == 2
    assert main([*args, "--seeds", "a"]) == 2
    assert not list(tmp_path.iterdir())  # nothing written


# The smoke preset, smaller still: two seeds of it must take seconds.
SMALL_BENCH = ["--preset", "smoke", "--n-train", "200", "--dense-epochs", "1", "--device", "cpu", "--no-progress",
               "--threads", "1"]


@pytest.fixture(scope="module")
def bench_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_seeds")
    assert main(["bench", *SMALL_BENCH, "--replicates", "2", "--out", str(out)]) == 0
    (agg,) = out.glob("benchseeds_*")
    return out, agg


def test_bench_two_seeds_aggregate_matches_the_runs(bench_seeds):
    out, agg_dir = bench_seeds
    agg = json.loads((agg_dir / "aggregate.json").read_text())
    assert agg["seeds"] == [0, 1]
    runs = {int(s): json.loads((out / d / "result.json").read_text()) for s, d in agg["runs"].items()}
    assert {r["config"]["train"]["seed"] for r in runs.values()} == {0, 1}
    # Mean and interval of the ticket's final clean accuracy, recomputed by hand from the two runs.
    vals = [runs[s]["arms"]["ticket"]["final"]["clean"] for s in (0, 1)]
    e = agg["arms"]["ticket"]["test_clean"]
    assert e["mean"] == pytest.approx(np.mean(vals)) and e["n"] == 2 and e["n_images"] == 50
    assert e["half"] == pytest.approx(12.706 * np.std(vals, ddof=1) / math.sqrt(2), abs=1e-3)
    d = agg["differences"]["ticket - dense"]["epoch1_val_pgd20"]
    diffs = [runs[s]["arms"]["ticket"]["curve"][0]["pgd20"] - runs[s]["arms"]["dense"]["curve"][0]["pgd20"]
             for s in (0, 1)]
    assert d["mean"] == pytest.approx(np.mean(diffs)) and d["n_images"] == 50
    assert d["verdict"].startswith(("above zero", "below zero", "not distinguishable from zero"))
    assert d["m"] == sum(len(v) for v in agg["differences"].values())  # Holm over every difference tested
    assert "ticket - reinit" in agg["differences"]
    summary = pd.read_csv(agg_dir / "summary.csv")
    assert {"arm", "metric", "n_images", "mean", "std", "ci_lo", "ci_hi"} <= set(summary.columns)
    md = (agg_dir / "report.md").read_text()
    assert "(n=50)" in md and "t-interval over 2 seeds" in md and "ticket - dense, epoch1_val_pgd20" in md
    # The cost-robustness frontier over the seeds: per-arm means of the two runs' times.
    assert "## Cost-robustness frontier" in md and "means over 2 run(s)" in md
    front = pd.read_csv(agg_dir / "frontier.csv").set_index("arm")
    assert front.loc["ticket", "total_s"] == pytest.approx(np.mean([runs[s]["arms"]["ticket"]["total_time"]
                                                                    for s in (0, 1)]))
    for png in ("accuracy_vs_epoch_seeds.png", "final_test_seeds.png", "frontier.png"):
        assert (agg_dir / png).stat().st_size > 0
    # Per-image flags of the final evaluation are stored: a single run can be bootstrapped.
    flags = runs[0]["arms"]["ticket"]["final"]["flags"]
    assert len(flags["clean"]) == 50 and unpack_flags(flags["clean"]).mean() == pytest.approx(vals[0])


def test_bench_seed_runs_are_cached_and_single_seed_bootstraps(bench_seeds, capsys):
    out, agg_dir = bench_seeds
    arm_files = sorted(out.glob("arm-*/result.json"))
    assert arm_files
    before = [p.stat().st_mtime_ns for p in arm_files]
    # Seed 1 alone reuses the run the replicates made; its single-seed aggregate bootstraps over images.
    assert main(["bench", *SMALL_BENCH, "--seeds", "1", "--out", str(out)]) == 0
    assert len(list(out.glob("bench_*"))) == 2
    assert [p.stat().st_mtime_ns for p in arm_files] == before  # nothing retrained
    aggs = [json.loads((d / "aggregate.json").read_text()) for d in out.glob("benchseeds_*")]
    single = next(a for a in aggs if a["seeds"] == [1])
    e = single["arms"]["ticket"]["test_clean"]
    assert e["method"] == "bootstrap" and e["n"] == 50 and e["lo"] <= e["mean"] <= e["hi"]
    d = single["differences"]["ticket - dense"]["test_clean"]
    assert d["method"] == "paired-images" and d["n"] == 50  # one seed: paired image by image


@pytest.mark.extended
def test_ablate_two_seeds_summary(tmp_path):
    args = ["ablate", "--preset", "smoke", "--device", "cpu", "--no-progress", "--threads", "1", "--out",
            str(tmp_path), "--n-train", "150", "--grid-search-lr", "0.01", "--grid-ratio", "0.5,0.8",
            "--grid-width", "0.25",
            "--seeds", "0,1"]
    assert main(args) == 0
    (grid,) = tmp_path.glob("ablate_*")
    df = pd.read_csv(grid / "ablation.csv")
    assert len(df) == 8 and sorted(set(df["seed"])) == [0, 1] and (df["eval_n"] == 40).all()
    summary = pd.read_csv(grid / "ablation_summary.csv")
    row = summary[(summary.ratio == 0.8) & (summary.arm == "ticket") & (summary.metric == "epoch1_pgd")].iloc[0]
    vals = df[(df.ratio == 0.8) & (df.arm == "ticket")]["epoch1_pgd"]
    assert row["mean"] == pytest.approx(vals.mean()) and row["n_seeds"] == 2 and row["n_images"] == 40
    if vals.std() > 0:
        assert (row["ci_hi"] - row["ci_lo"]) / 2 == pytest.approx(12.706 * vals.std() / math.sqrt(2), rel=1e-3)
    diffs = pd.read_csv(grid / "ablation_differences.csv")
    assert set(diffs["pair"]) == {"ticket - reinit"} and set(diffs["ratio"]) == {0.5, 0.8}
    md = (grid / "tables.md").read_text()
    assert "Over 2 seeds" in md and "ticket - reinit" in md
    assert (grid / "epoch1_pgd_vs_ratio_seeds.png").exists()
    # Rerun: every seed's cells come from disk.
    results = sorted(grid.glob("cell_*/result.json"))
    mtimes = [p.stat().st_mtime_ns for p in results]
    assert main(args) == 0
    assert len(results) == 4 and [p.stat().st_mtime_ns for p in results] == mtimes
