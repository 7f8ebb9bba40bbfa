"""The results ledger: plans, records, resume, budget, stale cells, rendering; the GPU protocol's CPU dry run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robustlth.ledger import EXPERIMENTS, Machine, load_records, run_pending
from robustlth.ledger.cells import Cell, pack_verdicts, portable, record_path, unpack_verdicts
from robustlth.ledger.__main__ import main as ledger_main

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data" / "cifar10_exact_subset.npz"
needs_data = pytest.mark.skipif(not SHARED.is_file(), reason="needs ../shared/data/cifar10_exact_subset.npz")


def quiet(_msg: str) -> None:
    pass


def test_verdicts_pack_and_unpack_exactly():
    flags = "".join(np.random.default_rng(0).choice(["0", "1"], 1001))
    packed = pack_verdicts(flags)
    assert packed.startswith("b64:1001:") and len(packed) < len(flags) / 4
    assert "".join("1" if f else "0" for f in unpack_verdicts(packed)) == flags
    assert unpack_verdicts("0110").tolist() == [False, True, True, False]


def test_a_cell_is_the_same_cell_wherever_its_data_lives():
    exp = EXPERIMENTS["natural_claims"]("full")
    cell = exp.cells([0])[0]
    moved = Cell(cell.name, cell.kind, cell.arm,
                 cell.setup.replace(data=cell.setup.data.replace(data="cifar10-jpeg:/elsewhere/cifar10_jpeg.npz")),
                 cell.device, cell.cost, cell.tags)
    assert moved.cell_id() == cell.cell_id()
    assert portable(moved.setup)["data"]["data"] == "cifar10-jpeg:cifar10_jpeg.npz"
    other = Cell(cell.name, cell.kind, cell.arm, cell.setup.with_seed(1), cell.device, cell.cost, cell.tags)
    assert other.cell_id() != cell.cell_id()


def test_the_natural_plan_keeps_the_papers_step_counts_and_shares_its_searches():
    exp = EXPERIMENTS["natural_claims"]("full")
    cells = exp.cells([0, 1, 2])
    assert len({c.name for c in cells}) == len(cells) == 96
    assert len({c.cell_id() for c in cells}) == len(cells)
    for c in cells:
        s = c.setup
        assert (s.data.val_size, s.data.n_train, s.train.batch_size) == (5000, None, 128)  # 45,000 / 128 per epoch
        assert s.model.model == "vgg16" and c.device == "cpu"
    # Every arm's search is one of the plan's search cells: tickets at other ratios reuse them.
    searches = {c.search_stage().hash() for c in cells if c.kind == "search"}
    assert all(c.search_stage().hash() in searches for c in cells if c.kind == "arm" and c.arm != "dense")
    assert len(searches) == 3 * 8
    # About four hours of two single-thread workers on this CPU (the plan's estimate; see the results README).
    assert 600 < sum(c.cost for c in cells) < 800


def test_the_gpu_protocol_plans_cells_that_fit_ten_minutes():
    cells = EXPERIMENTS["pgd_claims_gpu"]("full").cells([0])
    assert {c.name for c in cells} == {"search_fgsm.s0", "dense_30.s0", "dense_15.s0", "ticket_15.s0",
                                       "reinit_15.s0", "fast_at_15.s0", "ticket_fast_15.s0"}
    assert all(c.device == "cuda" for c in cells)
    for c in cells:
        f = c.setup.final
        assert f.final_n == 1000 and c.setup.data.test_data.endswith("cifar10_exact_subset.npz")
        assert ("autoattack" in f.final_attacks) == (c.name in ("dense_30.s0", "ticket_15.s0", "ticket_fast_15.s0"))
    assert max(c.cost for c in cells) <= 30  # units of one PGD-10 epoch: dense 30 is the largest, ~5 H100 minutes


def test_cells_for_another_device_are_left_for_it(tmp_path):
    out = run_pending("pgd_claims_gpu", "full", (0,), tmp_path / "res", tmp_path / "cache", None, Machine("cpu"),
                      log=quiet, render=False)
    assert out["ran"] == [] and len(out["elsewhere"]) == 7


@needs_data
@pytest.mark.extended
def test_natural_quick_plan_runs_records_resumes_and_renders(tmp_path):
    res, cache = tmp_path / "res", tmp_path / "cache"
    out = run_pending("natural_claims", "quick", (0,), res, cache, None, Machine("cpu"), log=quiet)
    folder = res / "natural_claims-quick"
    records = load_records(folder)
    assert set(out["ran"]) == set(records) and len(records) == 10
    r = records["ticket_lr0.01.s0"]
    assert r.environment["torch"] and r.device["type"] == "cpu" and r.cpu_seconds > 0
    assert r.result["final"]["flags"]["clean"].startswith("b64:50:")
    assert {"cells.csv", "../ledger_claims-quick.md", "boost_curves.png", "factors.png",
            "budget_sweep.png"} <= set(out["files"])
    table = (res / "ledger_claims-quick.md").read_text()
    assert table.count("| natural_claims | (") == 5 and "Holm" in table
    # A second run repeats nothing; a record from another plan (stale) is run again, alone.
    before = {p.name: p.read_bytes() for p in (folder / "cells").iterdir()}
    assert run_pending("natural_claims", "quick", (0,), res, cache, None, Machine("cpu"), log=quiet,
                       render=False)["ran"] == []
    path = record_path(folder, "dense.s0")
    stale = json.loads(path.read_text())
    stale["cell_id"] = "000000000000"
    path.write_text(json.dumps(stale))
    again = run_pending("natural_claims", "quick", (0,), res, cache, None, Machine("cpu"), log=quiet, render=False)
    assert again["ran"] == ["dense.s0"]
    assert {p.name: p.read_bytes() for p in (folder / "cells").iterdir() if p.name != "dense.s0.json"} == \
        {k: v for k, v in before.items() if k != "dense.s0.json"}


@needs_data
@pytest.mark.extended
def test_gpu_protocol_dry_run_on_cpu(tmp_path):
    """The paper-lite PGD-AT protocol end to end at the quick scale (`--device cpu --scale quick`)."""
    rc = ledger_main(["run", "pgd_claims_gpu", "--scale", "quick", "--seeds", "0", "--device", "cpu",
                      "--results", str(tmp_path / "res"), "--cache", str(tmp_path / "cache")])
    assert rc == 0
    folder = tmp_path / "res" / "pgd_claims_gpu-quick"
    records = load_records(folder)
    assert len(records) == 7
    assert records["ticket_1.s0"].result["search_time"] > 0
    assert {a["name"] for a in records["dense_2.s0"].result["final"]["attacks"]} == {"pgd2", "cw2"}
    assert "Time: the ticket pipeline" in (tmp_path / "res" / "ledger_claims-quick.md").read_text()


def test_ledger_cli_refuses_bad_input_in_one_line(capsys):
    assert ledger_main(["status", "no_such_experiment"]) == 2
    assert "experiment" in capsys.readouterr().err
    assert ledger_main(["status", "natural_claims", "--seeds", "0,0"]) == 2
    with pytest.raises(SystemExit):
        ledger_main(["run", "natural_claims", "--budget-s", "-1"])


def test_a_budget_too_small_for_any_cell_runs_none(tmp_path):
    out = run_pending("natural_claims", "full", (0,), tmp_path / "res", tmp_path / "cache", 1.0, Machine("cpu"),
                      log=quiet, render=False)
    assert out["ran"] == [] and len(out["skipped"]) == 32


@needs_data
@pytest.mark.faults
def test_killing_the_runner_mid_cell_loses_nothing_and_repeats_no_cell(tmp_path):
    """kill -9 of the whole runner (its worker too) in the middle of a cell; the rerun finishes the plan, keeps
    every record written before the kill byte for byte and runs none of those cells again."""
    res, cache = tmp_path / "res", tmp_path / "cache"
    folder = res / "natural_claims-quick"
    cmd = [sys.executable, "-m", "robustlth.ledger", "run", "natural_claims", "--scale", "quick", "--seeds", "0",
           "--results", str(res), "--cache", str(cache), "--workers", "2", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # some cells recorded, and one in progress (its stage directory exists)
        done = list((folder / "cells").glob("*.json")) if (folder / "cells").is_dir() else []
        partial = [p for p in cache.glob("arm-*") if not (p / "result.json").exists()]
        if len(done) >= 3 and partial:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.read_bytes() for p in (folder / "cells").glob("*.json")}
    assert 3 <= len(before) < 10
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    ran = set(json.loads(second.stdout)["ran"])
    assert not ran & {name[:-5] for name in before}
    after = {p.name: p.read_bytes() for p in (folder / "cells").glob("*.json")}
    assert len(after) == 10 and all(after[k] == v for k, v in before.items())


def test_verdicts_need_several_seeds_and_survive_holm():
    from robustlth.ledger.report import _verdicts
    from robustlth.stats import paired_interval, t_interval
    clear = t_interval([0.10, 0.11, 0.12])                # far from zero over 3 seeds
    marginal = t_interval([0.01, 0.05, 0.09])             # p ~ 0.1 alone
    one_seed = paired_interval([1] * 900 + [0] * 100, [0] * 1000)  # huge per image, but one seed
    rows = _verdicts([{"tests": [{"what": "a", "interval": clear, "sign": 1}]},
                      {"tests": [{"what": "b", "interval": clear, "sign": -1}]},
                      {"tests": [{"what": "c", "interval": marginal, "sign": 1}]},
                      {"tests": [{"what": "d", "interval": one_seed, "sign": 1}]}])
    assert [r["verdict"] for r in rows] == ["reproduced", "contradicted", "inconclusive", "inconclusive"]
    assert rows[0]["family"] == 3 and "one seed: not tested" in rows[3]["why"]


def test_the_budget_follows_this_runs_own_pace(tmp_path, monkeypatch):
    """After each finished cell the estimate is this run's seconds per unit, not the first guess (nor earlier days'
    load): on a machine 100x faster than guessed, a budget that first fits one 8-unit search fits the whole plan."""
    from robustlth.ledger import runner
    machine = Machine("cpu", workers=1, threads=1)
    guess = EXPERIMENTS["natural_claims"].unit_seconds
    template = json.loads((REPO / "benchmarks/results/natural_claims/cells/ticket_lr0.01.s0.json").read_text())
    device = runner._device_record(runner._torch_device(machine), 1)

    def fast_cell(cell, *_args):
        return {**template, "cell": cell.name, "cell_id": cell.cell_id(), "seed": cell.seed,
                "seconds": cell.cost * guess / 100, "device": device}

    monkeypatch.setattr(runner, "run_cell", fast_cell)
    out = run_pending("natural_claims", "full", (0,), tmp_path / "res", tmp_path / "cache", 8.5 * guess, machine,
                      log=quiet, render=False)
    assert out["ran"][0] == "search_lr0.01.s0" and out["skipped"] == [] and "ticket_lr0.1_b16.s0" in out["ran"]
