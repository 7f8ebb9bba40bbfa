"""The LTH experiment: the early-stopping evaluator, layer-wise rates, rounds and controls, resume, Adam."""
import json
from pathlib import Path

import pytest
import torch

from robustlth.config import DataConfig, TrainConfig
from robustlth.lth import PRESETS, TRAIN_DEFAULTS, EarlyStopEvaluator, LTHConfig, run_lth
from robustlth.lth import evaluator as evaluator_mod
from robustlth.datasets import CIFAR10
from robustlth.lth import experiment
from robustlth.models import build_model
from robustlth.pruning import count, load_ticket

CPU = torch.device("cpu")


def test_early_stopping_iteration_is_the_minimum_validation_loss(monkeypatch):
    model = build_model("conv2", 0.125, CIFAR10)
    losses = iter([3.0, 2.0, 2.5, 1.5, 1.8])
    monkeypatch.setattr(evaluator_mod, "predict",
                        lambda m, x, y: (torch.ones(4, dtype=torch.bool), torch.tensor(next(losses) * 4)))
    hook = EarlyStopEvaluator(model, torch.zeros(4, 3, 32, 32), torch.zeros(4, dtype=torch.long), every=10)
    name, w = next(iter(model.named_parameters()))
    for it in range(50):  # the trainer's 0-based step index
        with torch.no_grad():
            w.fill_(it + 1)  # the weights after it + 1 steps
        hook.on_iteration(None, it)
    assert [r["iteration"] for r in hook.records] == [10, 20, 30, 40, 50]
    assert hook.best_iteration == 40 and hook.best()["val_loss"] == 1.5
    assert float(hook.best_state[name].flatten()[0]) == 40.0
    hook.finish(50)  # already evaluated: no second record
    assert len(hook.records) == 5
    copy = EarlyStopEvaluator(model, hook.x, hook.y, every=10)
    copy.load_state_dict(hook.state_dict())
    assert copy.best_iteration == 40 and copy.records == hook.records


def test_layerwise_rates_follow_the_paper_with_output_at_half_rate():
    cfg = LTHConfig()
    assert cfg.rates("conv2") == {"conv": 0.10, "fc": 0.2, "output": 0.1}
    assert cfg.rates("conv6")["conv"] == 0.15
    model = build_model("conv4", 0.125, CIFAR10)
    rates = experiment.layer_rates(model, cfg.replace(rate_scale=2.0), "conv4")
    names = list(rates)
    assert [rates[n] for n in names] == [0.2] * 4 + [0.4, 0.4, 0.2]
    with pytest.raises(ValueError, match="rate_scale"):
        LTHConfig(rate_scale=7.0)


def _smoke(**lth):
    p = PRESETS["smoke"]
    return (LTHConfig.from_dict({**p["lth"], "rounds": 1, **lth}), DataConfig.from_dict(p["data"]),
            TrainConfig.from_dict({**TRAIN_DEFAULTS, **p["train"], "epochs": 1}))


@pytest.mark.extended
def test_lth_rounds_controls_and_resume(tmp_path, monkeypatch):
    cfg, data_cfg, train_cfg = _smoke(robust_eps=(2 / 255,), robust_n=20, robust_steps=2)
    results, run = run_lth(cfg, data_cfg, train_cfg, CPU, tmp_path)
    rows = results["rows"]
    assert [(r["seed"], r["round"], r["arm"]) for r in rows] == [
        (s, r, arm) for s in (0, 1) for r, arm in ((0, "ticket"), (1, "ticket"), (1, "reinit"), (1, "random"))]
    r1 = [r for r in rows if r["round"] == 1]
    assert len({round(r["remaining_pct"], 6) for r in r1}) == 1  # controls at the ticket's sparsity
    assert 55 < r1[0]["remaining_pct"] < 65  # FC 40 %, output 20 %, conv 20 % of conv2 (FC-dominated)
    for r in rows:
        assert r["early_stop_iteration"] in (3, 6) and r["iterations"] == 6
        assert 0 <= r["pgd_acc_eps2"] <= 1  # on the first 20 test images
    for name in ("lth.csv", "tables.md", "lth_early_stop.png", "lth_accuracy.png", "summary.json"):
        assert (run.path / name).exists(), name
    assert set(results["summary"]["headline"]["conv2"]) >= {"vs_reinit", "vs_random", "vs_dense"}
    for seed in (0, 1):  # each round's ticket arm holds the next round's ticket, pruned from what it trained
        (nxt,) = tmp_path.glob(f"lth-train/conv2/seed_{seed}/round_0/ticket_*/next_ticket.pt")
        assert 100 * count(load_ticket(nxt).mask)[0] / count(load_ticket(nxt).mask)[1] == pytest.approx(
            next(r["remaining_pct"] for r in rows if (r["seed"], r["round"], r["arm"]) == (seed, 1, "ticket")))
    monkeypatch.setattr(experiment, "train", lambda *a, **k: pytest.fail("a finished stage was retrained"))
    again, _ = run_lth(cfg, data_cfg, train_cfg, CPU, tmp_path)
    assert again["rows"] == rows
    # Another experiment that needs some of these trainings (one seed, one control) trains nothing.
    fewer, other = run_lth(cfg.replace(seeds=(1,), controls=("reinit",)), data_cfg, train_cfg, CPU, tmp_path)
    assert other.path != run.path
    assert fewer["rows"] == [r for r in rows if r["seed"] == 1 and r["arm"] != "random"]


def test_lth_runs_with_the_papers_adam(tmp_path, capsys):
    from robustlth.cli import main
    args = ["lth", "--preset", "smoke", "--seeds", "0", "--rounds", "0", "--epochs", "1", "--device", "cpu",
            "--no-progress", "--out", str(tmp_path)]
    assert main([*args, "--optimizer", "adam", "--lr", "2e-4"]) == 0
    run = Path(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"])
    assert "optimizer: adam" in (run / "config.yaml").read_text()
    assert all("optimizer: adam" in f.read_text() for f in tmp_path.glob("lth-train/**/config.yaml"))
    adam = json.loads((run / "results.json").read_text())["rows"]
    assert main(args) == 0  # SGD, the default: other trainings
    sgd = json.loads((Path(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"]) /
                      "results.json").read_text())["rows"]
    assert len(adam) == len(sgd) == 1 and adam[0]["val_loss"] != sgd[0]["val_loss"]


@pytest.mark.faults  # four CLI runs: kept out of the default run
def test_lth_killed_inside_its_writes_resumes_identically(tmp_path):
    from faults import assert_same_runs, cli, kill_in_write
    args = ["lth", "--preset", "smoke", "--seeds", "0", "--rounds", "1", "--epochs", "1", "--device", "cpu",
            "--threads", "1", "--no-progress"]
    cli(*args, "--out", tmp_path / "ref")
    out = tmp_path / "killed"
    assert kill_in_write("next_ticket.pt", 1, *args, "--out", out) == -9  # round 0 trained, its pruning not saved
    (arm,) = out.glob("lth-train/conv2/seed_0/round_0/ticket_*")
    assert not (arm / "result.json").exists() and not (arm / "next_ticket.pt").exists()
    assert kill_in_write("result.json", 2, *args, "--out", out) == -9  # round 1's ticket: trained, not committed
    cli(*args, "--out", out)
    assert assert_same_runs(tmp_path / "ref", out) >= 20


def test_lth_transfer_trains_each_ticket_on_the_other_half(tmp_path):
    cfg, data_cfg, train_cfg = _smoke(seeds=(0,), transfer=True, controls=("reinit",))
    rows = run_lth(cfg, data_cfg, train_cfg, CPU, tmp_path)[0]["rows"]
    assert [(r["round"], r["arm"]) for r in rows] == [(0, "ticket"), (0, "transfer"), (1, "ticket"), (1, "reinit"),
                                                      (1, "transfer"), (1, "transfer_reinit")]
    assert {r["train_images"] for r in rows} == {150}
    a, b = experiment.halves(experiment.load_dataset(data_cfg), 0)
    assert len(a.train) == len(b.train) == 150
    assert not set(map(bytes, a.train.x.numpy())) & set(map(bytes, b.train.x.numpy()))  # disjoint


def test_lth_without_validation_split_is_one_clear_error(tmp_path):
    cfg, data_cfg, train_cfg = _smoke()
    with pytest.raises(ValueError, match="validation split"):
        run_lth(cfg, data_cfg.replace(val_size=0), train_cfg, CPU, tmp_path)
    assert not any(tmp_path.iterdir())
