"""`sparsity-sweep`: IMP nested through the sparsities, the random arm is RST's pick untransformed, resume."""
import pytest
import torch

from robustlth.config import DataConfig, ModelConfig, TrainConfig
from robustlth.datasets import CIFAR10
from robustlth.pruning import load_ticket
from robustlth.sweep import FINETUNE_DEFAULTS, PRESETS, SweepConfig, run_sweep
from robustlth.sweep import experiment

CPU = torch.device("cpu")


def test_sweep_arms_masks_and_resume(tmp_path, monkeypatch):
    p = PRESETS["smoke"]
    cfg = SweepConfig.from_dict({**p["sweep"], "methods": ["imp", "random", "rst"], "rst_iterations": 6})
    data_cfg = DataConfig.from_dict({**p["data"], "n_train": 150})
    model_cfg, train_cfg = ModelConfig.from_dict(p["model"]), TrainConfig.from_dict({**FINETUNE_DEFAULTS, **p["train"]})
    results, run = run_sweep(cfg, data_cfg, model_cfg, train_cfg, CPU, tmp_path)
    rows = results["rows"]
    assert [(r["method"], r["target_sparsity"]) for r in rows] == [
        ("imp", 0.5), ("imp", 0.9), ("random", 0.5), ("rst", 0.5), ("random", 0.9), ("rst", 0.9)]
    for r in rows:
        assert r["sparsity"] == pytest.approx(r["target_sparsity"], abs=2e-3)  # ends dense, overall matched
    seed = tmp_path / "sweep-train" / "cnn6" / "seed_0"
    half, tenth = (load_ticket(next(seed.glob(f"imp_{s}_*")) / "ticket.pt").mask for s in ("0.5", "0.9"))
    assert all(bool((tenth[n] <= half[n]).all()) for n in half)  # IMP: pruned from the previous ticket
    rst = [r for r in rows if r["method"] == "rst"]
    assert all(0 <= r["squeezed_rms_ratio"] < 1 and r["transform_time"] > 0 for r in rst)
    searches = [load_ticket(d / "ticket.pt") for d in tmp_path.glob("ticket_*")]  # RST's, shared with find-ticket
    (rst_ticket,) = [t for t in searches if t.meta.ratio == pytest.approx(experiment.layer_sparsity(
        experiment.build_model("cnn6", 0.125, CIFAR10), 0.9, t.meta.dense_layers))]
    rst_mask = rst_ticket.mask
    first, last = list(rst_mask)[0], list(rst_mask)[-1]
    assert bool(rst_mask[first].all()) and bool(rst_mask[last].all())
    for name in ("sweep.csv", "tables.md", "sweep_accuracy.png"):
        assert (run.path / name).exists()
    monkeypatch.setattr(experiment, "train", lambda *a, **k: pytest.fail("a finished stage was retrained"))
    assert run_sweep(cfg, data_cfg, model_cfg, train_cfg, CPU, tmp_path)[0]["rows"] == rows
    # A sweep that needs some of these fine-tunings (the first sparsity only) trains nothing.
    fewer = run_sweep(cfg.replace(sparsities=(0.5,)), data_cfg, model_cfg, train_cfg, CPU, tmp_path)[0]["rows"]
    assert fewer == [r for r in rows if r["target_sparsity"] == 0.5]


@pytest.mark.parametrize("args,needle", [
    (["sparsity-sweep", "--sparsities", "0.9,0.5"], "increasing fractions"),
    (["sparsity-sweep", "--methods", "dense,magic"], "invalid methods='magic'"),
    (["lth", "--rate-scale", "9"], "keeps the conv rate below 1"),
    (["lth", "--preset", "smoke", "--val-size", "0"], "needs a validation split"),
    (["lth", "--models", "conv5"], "expected one of conv2, conv4, conv6"),
])
def test_bad_experiment_input_is_one_line_before_any_file(tmp_path, capsys, args, needle):
    from robustlth.cli import main
    assert main([*args, "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
