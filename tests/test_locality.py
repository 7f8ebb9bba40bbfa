import dataclasses
import json

import pytest
import torch

from robustlth.cli import main
from robustlth.config import ConfigError, DataConfig, ModelConfig, TrainConfig
from robustlth.data import load_dataset
from robustlth.locality import (ImpRun, LocalityConfig, coverage, dense_histograms, displacement_histograms,
                                in_degree, locality_scores, merge_labels, run_imp, shuffle_units, stop_reason,
                                superclass_map, train_fraction)
from robustlth.locality import imp as imp_mod
from robustlth.locality.analysis import window_fraction
from robustlth.locality.imp import connected_fractions
from robustlth.locality.removal import removal_accuracy
from robustlth.datasets import CIFAR10
from robustlth.models import build_model
from robustlth.pruning import dense_mask, prunable_weights
from robustlth.training import RunContext


def brute_force(mask):
    """Ordered pairs of distinct connections of each unit, by displacement, one pair at a time."""
    units, channels, h, w = mask.shape
    sc = torch.zeros(2 * h - 1, 2 * w - 1, dtype=torch.long)
    dc = torch.zeros_like(sc)
    for u in range(units):
        points = mask[u].nonzero().tolist()
        for a in points:
            for b in points:
                if a != b:
                    (sc if a[0] == b[0] else dc)[b[1] - a[1] + h - 1, b[2] - a[2] + w - 1] += 1
    return sc, dc


@pytest.mark.parametrize("seed,shape,density", [(0, (4, 3, 5, 6), 0.3), (1, (3, 3, 8, 8), 0.6), (2, (6, 2, 7, 4), 0.1),
                                                (3, (2, 3, 32, 32), 0.02)])
def test_displacement_histograms_match_brute_force(seed, shape, density):
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < density
    s_sc, s_dc = displacement_histograms(mask, chunk=2)  # several chunks
    b_sc, b_dc = brute_force(mask)
    assert torch.equal(s_sc, b_sc) and torch.equal(s_dc, b_dc)
    assert torch.equal(s_sc, s_sc.flip(0, 1))  # ordered pairs: symmetric


def test_dense_unit_has_the_triangular_profile():
    s_sc, s_dc = dense_histograms()
    d = 32 - torch.arange(-31, 32).abs()
    tri = d[:, None] * d[None, :]
    expected_sc = 3 * tri
    expected_sc[31, 31] = 0  # a connection is not paired with itself
    assert torch.equal(s_sc, expected_sc) and torch.equal(s_dc, 6 * tri)


def _local_mask(units=256, size=3, seed=0):
    """Every unit sees one size x size patch (all channels) at a random position: a CNN-like receptive field."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(units, 3, 32, 32, dtype=torch.bool)
    pos = torch.randint(0, 32 - size + 1, (units, 2), generator=g)
    for u, (y, x) in enumerate(pos.tolist()):
        mask[u, :, y:y + size, x:x + size] = True
    return mask


def test_local_mask_peaks_at_small_displacement_random_mask_is_broad():
    local = _local_mask()
    density = local.float().mean()
    random = torch.rand(local.shape, generator=torch.Generator().manual_seed(1)) < density
    loc, rnd = locality_scores(local, radius=3), locality_scores(random, radius=3)
    # A 3x3 field has every pair within |Δ| <= 2, so all its pairs fall in the window.
    s_sc, s_dc = displacement_histograms(local)
    assert window_fraction(s_sc, 2) == 1.0 and window_fraction(s_dc, 2) == 1.0
    dense_fraction = window_fraction(dense_histograms()[0], 3)
    assert loc["locality_sc"] == pytest.approx(1 / dense_fraction)
    assert loc["locality_sc"] > 10 and loc["locality_dc"] > 10 and loc["mean_dist_sc"] < 2
    assert rnd["locality_sc"] == pytest.approx(1.0, abs=0.1) and rnd["locality_dc"] == pytest.approx(1.0, abs=0.1)
    assert rnd["mean_dist_sc"] == pytest.approx(locality_scores(torch.ones(1, 3072, dtype=torch.bool))["mean_dist_sc"],
                                                rel=0.05)


def test_shuffle_across_units_keeps_coverage_and_removes_receptive_fields():
    local = _local_mask()
    shuffled = shuffle_units(local, seed=0)
    assert torch.equal(coverage(shuffled), coverage(local))
    # What remains comes from the coverage map (patches cover the border less): far from the fields' ~24.
    assert 1.0 < locality_scores(shuffled)["locality_sc"] < 1.35 < 20 < locality_scores(local)["locality_sc"]
    # All connections in one corner: the shuffle keeps that concentration, so its pairs stay close.
    corner = torch.zeros(64, 3, 32, 32, dtype=torch.bool)
    corner[:, :, :8, :8] = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.5
    assert locality_scores(shuffle_units(corner))["locality_sc"] > 5


def test_in_degree_and_coverage():
    mask = _local_mask(units=10, size=2)
    assert in_degree(mask).tolist() == [12] * 10
    cov = coverage(mask.flatten(1))  # (units, inputs) form too
    assert cov.shape == (3, 32, 32) and int(cov.sum()) == 120


def _fcn_mask(width=1 / 128):
    model = build_model("fcn", width, CIFAR10)  # 8 units per hidden layer
    return model, dense_mask(model)


def test_stopping_rule_counts_units_with_inputs_and_outputs():
    model, mask = _fcn_mask()
    names = list(prunable_weights(model))
    assert stop_reason(model, mask, 0.2) is None
    assert all(f == 1.0 for f in connected_fractions(model, mask).values())
    mask[names[1]][:, 2:] = False  # units 2..7 of hidden layer 1 lose every outgoing connection
    assert connected_fractions(model, mask)[names[0]] == 0.25
    assert stop_reason(model, mask, 0.2) is None
    mask[names[0]][1] = False  # unit 1 loses every input: 1 of 8 units connected
    assert connected_fractions(model, mask)[names[0]] == 0.125
    assert "12.5% of its units connected" in stop_reason(model, mask, 0.2)


def _imp(root, data, **loc):
    cfg = TrainConfig(epochs=1, batch_size=50, momentum=0.0, weight_decay=0.0, schedule="constant", eval_steps=0)
    return ImpRun(DataConfig(data="synthetic", n_train=200, n_test=100, val_size=50, augment=False),
                  ModelConfig(model="fcn", width=1 / 128), cfg, LocalityConfig(**loc), {}, "imp", data, root)


def test_imp_stops_by_the_rule_and_resumes(tmp_path, monkeypatch):
    imp = _imp(tmp_path, load_dataset(DataConfig(data="synthetic", n_train=200, n_test=100, val_size=50,
                                                 augment=False)), ratio=0.9, max_rounds=8, rewind_iteration=1)
    ctx = RunContext(torch.device("cpu"))
    rounds = [s for _, s in run_imp(imp, ctx)]
    assert len(rounds) - 1 < imp.loc.max_rounds
    assert "units connected" in rounds[-1].stopped
    assert [r.round for r in rounds] == list(range(len(rounds)))
    assert rounds[1].first_layer_density == pytest.approx(0.1, abs=1e-3)
    dirs = sorted(tmp_path.glob("locality-train/imp/round_*"))
    assert len(dirs) == len(rounds)  # the stopping mask is not trained
    assert all((d / "result.json").exists() and (d / "ticket.pt").exists() for d in dirs)
    gentle = dataclasses.replace(imp, loc=imp.loc.replace(ratio=0.3, max_rounds=2))
    longer = [s for _, s in run_imp(gentle, ctx)]
    assert longer[-1].stopped == "max_rounds=2 reached"
    monkeypatch.setattr(imp_mod, "train", lambda *a, **k: pytest.fail("a finished round was retrained"))
    assert [s for _, s in run_imp(imp, ctx)] == rounds  # every round is read back from disk
    # IMP runs that differ only in max_rounds share their rounds; the last one says why it stopped.
    shorter = [s for _, s in run_imp(dataclasses.replace(gentle, loc=gentle.loc.replace(max_rounds=1)), ctx)]
    assert shorter[0] == longer[0] and shorter[1] == dataclasses.replace(longer[1], stopped="max_rounds=1 reached")


@pytest.mark.faults  # four CLI runs: kept out of the default run
def test_locality_killed_inside_its_writes_resumes_identically(tmp_path):
    from faults import assert_same_runs, cli, kill_in_write
    args = ["locality", "--preset", "smoke", "--width", "0.0078125", "--n-train", "200", "--epochs", "1",
            "--max-rounds", "2", "--rewind-iteration", "1", "--data-fraction", "0", "--superclasses", "0",
            "--remove-units", "2,4", "--gallery", "4", "--device", "cpu", "--threads", "1", "--no-progress"]
    cli(*args, "--out", tmp_path / "ref")
    out = tmp_path / "killed"
    assert kill_in_write("trained.pt", 2, *args, "--out", out) == -9  # round 1: its ticket written, trained
    assert kill_in_write("result.json", 2, *args, "--out", out) == -9  # round 2: trained, not committed
    cli(*args, "--out", out)
    assert assert_same_runs(tmp_path / "ref", out) >= 15


def test_superclasses_and_data_fraction():
    mapping = superclass_map(2, seed=3)
    assert sorted(torch.bincount(mapping).tolist()) == [5, 5]
    assert not torch.equal(mapping, superclass_map(2, seed=4))
    data = load_dataset(DataConfig(data="synthetic", n_train=300, n_test=100, val_size=50))
    merged = merge_labels(data, 3)
    assert torch.equal(merged.test.y, superclass_map(3)[data.test.y]) and int(merged.train.y.max()) == 2
    sub = train_fraction(data, 0.3)
    assert len(sub.train) == 90 and torch.bincount(sub.train.y).min() == 9 and sub.val is data.val


def test_removal_skips_k_beyond_the_connected_units():
    model, mask = _fcn_mask()
    names = list(prunable_weights(model))
    mask[names[0]][:4] = False
    data = load_dataset(DataConfig(data="synthetic", n_train=20, n_test=40))
    before = prunable_weights(model)[names[1]].detach().clone()
    out = removal_accuracy(model.eval(), mask, data, [2, 4, 6])
    assert out["connected"] == 4 and out["k"] == [2, 4]
    assert all(0 <= a <= 1 for a in out["most"] + out["least"])
    assert torch.equal(prunable_weights(model)[names[1]], before)  # the model is left intact


def test_locality_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="superclasses"):
        LocalityConfig(superclasses=11)
    with pytest.raises(ConfigError, match="stop_units"):
        LocalityConfig(stop_units=1.5)


@pytest.mark.parametrize("args,needle", [(["--model", "vgg11"], "--model must be fcn"),
                                         (["--ratio", "1.2"], "ratio=1.2"),
                                         (["--rewind-iteration", "500"], "rewind_iteration=500")])
def test_cli_bad_input_is_one_line(args, needle, tmp_path, capsys):
    assert main(["locality", "--preset", "smoke", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_cli_end_to_end_writes_report(tmp_path, capsys):
    rc = main(["locality", "--preset", "smoke", "--out", str(tmp_path), "--no-progress", "--width", "0.0078125",
               "--n-train", "200", "--epochs", "1", "--max-rounds", "1", "--rewind-iteration", "1",
               "--remove-units", "2,4", "--gallery", "4"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run = tmp_path / out["run_dir"].split("/")[-1]
    results = json.loads((run / "results.json").read_text())
    arms = [a for a in results["arms"] if a != "dense"]
    assert arms == (["imp"] if results["best_round"] == 0 else ["imp", "oneshot", "random"])
    sparse = ["unit_removal.png"] if results["best_round"] else []  # no removal test of the dense network
    for name in ["report.md", "locality.csv", "rounds.png", "displacement_maps.png", "displacement_profiles.png",
                 "in_degree.png", "coverage.png"] + sparse + [f"gallery_{a}.png" for a in arms]:
        assert (run / name).exists(), name
    csv = (run / "locality.csv").read_text()
    assert "data_0.5" in csv and "superclasses_2" in csv
