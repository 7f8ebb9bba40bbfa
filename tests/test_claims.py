"""benchmarks/claims.py: the verdict logic on constructed per-seed results, and (slow) the tiny scale end to end."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _claims_module():
    spec = importlib.util.spec_from_file_location("claims", ROOT / "benchmarks" / "claims.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _arm(clean, pgd, search_time=10.0, epoch_s=10.0, final=None):
    curve = [{"epoch": e + 1, "clean": c, "pgd20": p, "wall_clock": search_time + epoch_s * (e + 1)}
             for e, (c, p) in enumerate(zip(clean, pgd))]
    return {"arm": "x", "curve": curve, "search_time": search_time, "train_time": epoch_s * len(curve),
            "total_time": search_time + epoch_s * len(curve), "epochs": len(curve), "final": final}


def test_verdicts_follow_the_intervals():
    c = _claims_module()
    assert c.verdict(c.t_interval([0.05, 0.06, 0.07])) == "reproduced"
    assert c.verdict(c.t_interval([-0.05, -0.06, -0.07])) == "contradicted"
    assert c.verdict(c.t_interval([-0.05, 0.06, 0.01])) == "inconclusive"
    assert c.verdict(c.t_interval([0.05])) == "inconclusive"  # one seed decides nothing
    assert c.verdict(c.t_interval([-0.05, -0.06, -0.07]), sign=-1) == "reproduced"


def test_plan_shares_the_centre_point_and_claims_read_constructed_runs():
    c = _claims_module()
    scale = c.SCALES["tiny"]
    jobs = c.plan(scale, [0, 1, 2], aa_seeds=0, data_cfg={"data": "synthetic", **scale["data"]})
    keys = {j["name"]: j["key"] for j in jobs if j["seed"] == 0}
    # The centre of every natural sweep is one training: LR 0.01 = ratio 0.8 = width 0.25 = budget 5.
    assert keys["nat_ticket_lr0.01"] == keys["nat_ticket_ratio0.8"] == keys["nat_ticket_width0.25"] \
        == keys["nat_ticket_budget5"]
    assert keys["nat_ticket_lr0.1"] == keys["nat_winning_budget5"]
    assert keys["adv_dense"] != keys["adv_dense_long"]
    assert len({j["key"] for j in jobs}) < len(jobs)
    # Constructed results: the ticket is 5 points ahead of everything at epoch 1 in every seed.
    runs = {}
    for j in jobs:
        good = j["arm"] == "ticket" and "winning" not in j["name"] and "lr0.1" not in j["name"]
        base = 0.30 + 0.01 * j["seed"] + (0.05 if good else 0.0)
        runs.setdefault(j["name"], {})[j["seed"]] = _arm([base] * 5, [base - 0.1] * 5,
                                                         search_time=0.0 if j["arm"] == "dense" else 10.0,
                                                         final={"clean": base, "n": 100, "attacks": [
                                                             {"name": "pgd20", "robust_after": base - 0.1}]})
    rows = {r["claim"]: r for r in c.claims(runs, scale, aa_seeds=0)}
    assert len(rows) == 9
    boost_nat = next(r for k, r in rows.items() if k.startswith("Boost exists (natural)"))
    assert boost_nat["verdict"] == "reproduced" and "boosting − winning 5.0 ± 0.0" in boost_nat["ours"]
    lr = next(r for k, r in rows.items() if k.startswith("Smaller search LR"))
    assert lr["verdict"] == "reproduced"
    ratio = next(r for k, r in rows.items() if k.startswith("Boost strongest"))
    assert ratio["verdict"] == "inconclusive"  # the same boost at every ratio: no difference, zero spread
    fgsm = next(r for k, r in rows.items() if k.startswith("FGSM search"))
    assert fgsm["verdict"] == "reproduced"  # equal accuracies are within the 3-point margin
    time_row = next(r for k, r in rows.items() if k.startswith("Time ratio"))
    # The ticket reaches the long dense run's final PGD-20 after its first epoch: (10 s search + 10 s) / 50 s.
    assert "0.400" in time_row["ours"] and time_row["verdict"] == "reproduced"


@pytest.mark.slow
def test_tiny_scale_end_to_end(tmp_path, exact_npz):
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "claims.py"), "--scale", "tiny", "--seeds", "0,1", "--workers",
           "2", "--data", f"npz:{exact_npz}", "--cache", str(tmp_path / "cache"), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # worker processes import the script as __main__'s module
    assert subprocess.run(cmd, env=env, timeout=900).returncode == 0
    claims = json.loads((out / "claims.json").read_text())
    assert len(claims["claims"]) == 9
    assert all(r["verdict"] in ("reproduced", "contradicted", "inconclusive") for r in claims["claims"])
    for f in ("claims.md", "claims.csv", "runs.csv", "boost_curves.png", "boost_factors.png", "budget_sweep.png"):
        assert (out / f).stat().st_size > 0
    arm_files = sorted((tmp_path / "cache").rglob("arm-*/result.json"))
    assert arm_files
    stamps = [p.stat().st_mtime_ns for p in arm_files]
    assert subprocess.run(cmd, env=env, timeout=300).returncode == 0  # a second call only re-renders
    assert [p.stat().st_mtime_ns for p in arm_files] == stamps
