import json

import pandas as pd
import pytest

from robustlth.ablate import AblateConfig, expand
from robustlth.bench import BenchSetup
from robustlth.cli import main
from robustlth.config import ModelConfig

SMOKE = ["--preset", "smoke", "--device", "cpu", "--no-progress"]


def _grid_dir(out):
    (grid,) = [p for p in out.iterdir() if p.name.startswith("ablate_")]
    return grid


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablate")
    assert main(["ablate", *SMOKE, "--out", str(out)]) == 0
    return _grid_dir(out)


def test_expand_is_the_cartesian_product_with_budget_rescaling():
    cells = expand(AblateConfig(search_lr=(0.01, 0.1), ratio=(0.5, 0.8), budget=(2, 4)),
                   BenchSetup(model=ModelConfig(model="cnn6")))
    assert len(cells) == 8 and len({c["id"] for c in cells}) == 8
    assert {c["setup"]["bench"]["ticket_epochs"] for c in cells} == {2, 4}
    assert all(c["axes"]["width"] == 1.0 for c in cells)


@pytest.mark.extended
def test_smoke_grid_csv_tables_plots(smoke):
    df = pd.read_csv(smoke / "ablation.csv")
    assert len(df) == 16  # 2 x 2 x 2 cells, ticket and reinit
    assert set(df["arm"]) == {"ticket", "reinit"} and (df["status"] == "ok").all()
    for col in ("search_lr", "ratio", "width", "epoch1_pgd", "epoch1_clean", "final_pgd", "early_stop_epoch",
                "search_s", "train_s", "sparsity"):
        assert col in df, col
    assert sorted(set(df["sparsity"].round(3))) == [0.5, 0.8]
    md = (smoke / "tables.md").read_text()
    assert "## epoch1_pgd" in md and "| search_lr | ratio | width | reinit | ticket |" in md  # arms as columns
    for png in ("early_accuracy_vs_ratio.png", "epoch1_vs_width.png", "accuracy_vs_search_lr.png",
                "ticket_vs_reinit.png"):
        assert (smoke / png).stat().st_size > 0, png
    # Cells that share a search configuration share its training: one per (search LR, width).
    assert len(list(smoke.glob("search_*"))) == 4


@pytest.mark.extended
def test_rerun_skips_finished_cells_and_failed_cell_is_recorded(smoke, tmp_path):
    cells = json.loads((smoke / "cells.json").read_text())
    victim = smoke / f"cell_{cells[0]['id']}"
    ticket_arm = json.loads((victim / "result.json").read_text())["arms"]["ticket"]
    (victim / "result.json").unlink()
    (arm,) = [p for p in smoke.glob("arm-ticket_*") if json.loads((p / "result.json").read_text()) == ticket_arm]
    (arm / "result.json").write_text("{corrupt")  # this cell now fails
    out = smoke.parent
    assert main(["ablate", *SMOKE, "--out", str(out)]) == 0
    df = pd.read_csv(smoke / "ablation.csv")
    failed = df[df["status"] == "failed"]
    assert len(failed) == 1 and failed["cell"].iloc[0] == cells[0]["id"]
    assert isinstance(failed["error"].iloc[0], str) and failed["error"].iloc[0]
    assert (df["status"] == "ok").sum() == 14
    assert "failed" in (smoke / "tables.md").read_text()


@pytest.mark.extended
def test_submitit_local_executor(tmp_path):
    pytest.importorskip("submitit")
    args = ["ablate", *SMOKE, "--out", str(tmp_path), "--grid-search-lr", "0.01", "--grid-ratio", "0.8",
            "--grid-width", "0.25", "--grid-budget", "1,2", "--no-grid-controls", "--launcher", "submitit",
            "--cluster", "local", "--timeout-min", "10"]
    assert main(args) == 0
    grid = _grid_dir(tmp_path)
    df = pd.read_csv(grid / "ablation.csv")
    assert len(df) == 2 and (df["status"] == "ok").all() and sorted(df["epochs"]) == [1, 2]
    assert (grid / "submitit").is_dir()
    assert (grid / "accuracy_vs_budget.png").exists()


def test_search_groups_ignore_ratio_and_budget():
    from robustlth.ablate import _search_key
    cells = expand(AblateConfig(search_lr=(0.01, 0.1), ratio=(0.5, 0.8), budget=(2, 4)),
                   BenchSetup(model=ModelConfig(model="cnn6")))
    assert len({_search_key(c) for c in cells}) == 2  # one search training per search LR


def test_launcher_limits_local_concurrency_and_refuses_missing_slurm(monkeypatch):
    pytest.importorskip("submitit")
    import shutil
    from robustlth.ablate import Launcher
    from robustlth.config import ConfigError
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="SLURM is not available"):
        Launcher("submitit", cluster="slurm")
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert Launcher("submitit", cluster="local", cpus_per_job=2).concurrency() == 4
    assert Launcher("submitit", cluster="local", cpus_per_job=16).concurrency() == 1
    assert Launcher("serial").concurrency() == 1


@pytest.mark.extended
def test_cells_record_time_and_concurrency_and_open_with_eval(smoke, capsys):
    df = pd.read_csv(smoke / "ablation.csv")
    ok = df[df["status"] == "ok"]
    assert (ok["cell_s"] > 0).all() and (ok["concurrent_jobs"] == 1).all() and (ok["torch_threads"] >= 1).all()
    assert "cell 1/" in (smoke / "run.log").read_text()
    arm = next(smoke.glob("arm-ticket_*"))
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(arm), "--attacks", "pgd2", "--device", "cpu",
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 60  # the grid's own test set
