"""RST and RST-Iter: the penalty, the η schedule, the random ticket, the stages and their exact resume."""
import pytest
import torch

from robustlth.config import AttackConfig, DataConfig, ModelConfig, PruneConfig, TrainConfig
from robustlth.data import TrainLoader
from robustlth.datasets import CIFAR10
from robustlth.models import build_model
from robustlth.pruning import (TRANSFORM_DEFAULTS, EtaSchedule, RSTConfig, RSTPenalty, SearchSpec, count,
                               cycle_sparsities, dense_mask, find_ticket, make_strategy, prunable_weights,
                               random_pick)
from robustlth.pruning.rst import end_layers, penalized_weights
from robustlth.safety import safe_torch_load

CPU = torch.device("cpu")


def _model(name="cnn6", width=0.25, seed=0):
    torch.manual_seed(seed)
    return build_model(name, width, CIFAR10)


def test_eta_schedule_grows_by_steps_then_holds():
    s = EtaSchedule(eta_max=1.0, eta_step=1e-4, eta_every=5, hold_iterations=40_000)  # the paper's (docs/rst.md)
    assert (s.ramp_iterations, s.total_iterations) == (50_000, 90_000)
    assert [s.at(i) for i in (0, 4, 5, 9, 10)] == [0.0, 0.0, pytest.approx(1e-4), pytest.approx(1e-4),
                                                   pytest.approx(2e-4)]
    assert s.at(25_000) == pytest.approx(0.5)
    assert s.at(49_999) < 1.0 and s.at(50_000) == 1.0 and s.at(89_999) == 1.0
    assert RSTConfig().schedule() == s
    small = RSTConfig(iterations=900).schedule()  # a CPU budget: 1 % of the paper's, same proportions
    assert (small.ramp_iterations, small.hold_iterations, small.eta_every) == (500, 400, 5)
    assert small.eta_step == pytest.approx(0.01) and small.at(500) == 1.0 and small.at(250) == pytest.approx(0.5)


def test_random_strategy_honours_dense_layers_in_layerwise_mode():
    model = _model("resnet18", 0.125)
    first, last = end_layers(model)
    mask = make_strategy("random", dense_layers=[first, last]).prune(model, dense_mask(model), 0.9)
    layerwise = random_pick(model, None, 0.0, 0.9, seed=3, dense_layers=[first, last])
    for m in (mask, layerwise):
        assert bool(m[first].all()) and bool(m[last].all())
    for n, m in layerwise.items():  # every other layer at the target ratio, uniformly at random
        if n not in (first, last):
            assert int(m.sum()) == m.numel() - round(0.9 * m.numel()), n
    with pytest.raises(ValueError, match="not prunable"):
        random_pick(model, None, 0.0, 0.5, seed=0, dense_layers=["nope.weight"])


def test_rst_iter_sparsity_schedule_and_new_picks_among_survivors():
    p = 0.95
    s = cycle_sparsities(p, 5)
    assert s[-1] == pytest.approx(p) and s[0] == pytest.approx(1 - 0.05 ** 0.2)
    model = _model()
    mask, previous = None, 0.0
    for c, target in enumerate(s):
        new = random_pick(model, mask, previous, target, seed=c)
        remaining, total = count(new)
        assert abs((1 - remaining / total) - target) < len(new) / total  # per-layer rounding only
        if mask is not None:
            assert all(bool((new[n] <= mask[n]).all()) for n in new)  # picks among the survivors
        mask, previous = new, target


def test_penalty_touches_only_the_weights_to_be_masked():
    model = _model()
    keep = random_pick(model, None, 0.0, 0.7, seed=1)
    squeezed = penalized_weights(dense_mask(model), keep)
    hook = RSTPenalty(model, squeezed, EtaSchedule(1.0, 0.5, 1, 0), CPU)
    assert hook.extra_loss(model).item() == 0.0  # η starts at 0
    hook.on_iteration(None, 0)  # after the first step (0-based): η for the second one
    loss = hook.extra_loss(model)
    weights = prunable_weights(model)
    expected = 0.5 * 0.5 * sum(float((w.detach()[squeezed[n]] ** 2).sum()) for n, w in weights.items())
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    for name, p in model.named_parameters():
        if name in squeezed:
            assert torch.equal(p.grad[~squeezed[name]], torch.zeros_like(p.grad[~squeezed[name]])), name
            assert torch.allclose(p.grad[squeezed[name]], 0.5 * p.detach()[squeezed[name]]), name
        else:  # biases, BatchNorm: untouched
            assert p.grad is None or not p.grad.any(), name
    assert hook.state_dict() == {"iteration": 1, "eta": 0.5}


def _spec(method="rst", iterations=12, ratio=0.8, **rst):
    return SearchSpec(data=DataConfig(data="synthetic", n_train=100, n_test=50, augment=False),
                      model=ModelConfig(model="cnn6", width=0.25),
                      search=TrainConfig(**{**TRANSFORM_DEFAULTS, "epochs": 1, "batch_size": 25, "eval_n": 50,
                                            "lr": 0.01}),
                      attack=AttackConfig(), prune=PruneConfig(ratio=ratio, prune_seed=2),
                      rst=RSTConfig(method=method, iterations=iterations, eta_max=5.0, eta_every=1,
                                    **rst))


def test_rst_ticket_keeps_transformed_survivors_and_squeezes_the_rest(tmp_path):
    ticket, run = find_ticket(_spec(iterations=6), CPU, tmp_path)
    assert ticket.sparsity()["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert ticket.meta.method == "rst" and ticket.meta.retrain_warmup is False
    transformed = safe_torch_load(run.path / "cycle_1" / "checkpoint.pt", "checkpoint")["model"]
    theta0 = _model().state_dict()
    for name, m in ticket.mask.items():
        w = ticket.state_dict[name]
        assert torch.equal(w[m], transformed[name][m]), name  # no reset
        assert not torch.equal(w[m], theta0[name][m]), name
        assert torch.all(w[~m] == 0), name
    summary = run.read_json("cycle_1/result.json")
    assert summary["iterations"] == 8 and summary["eta_final"] == 5.0  # 6 asked: whole epochs of 4 steps
    assert summary["squeezed_rms_after"] < 0.5 * summary["squeezed_rms_before"]
    assert summary["squeezed_rms_after"] < 0.5 * summary["kept_rms_after"]


@pytest.mark.slow
def test_rst_iter_runs_five_cycles_to_the_target(tmp_path):
    ticket, run = find_ticket(_spec("rst-iter", iterations=2, ratio=0.9), CPU, tmp_path)
    cycles = run.read_json("result.json")["cycles"]
    assert [c["cycle"] for c in cycles] == [1, 2, 3, 4, 5]
    for c, s in zip(cycles, cycle_sparsities(0.9, 5)):
        assert c["sparsity"] == pytest.approx(s, abs=0.01)
    assert ticket.sparsity()["sparsity"] == pytest.approx(0.9, abs=0.01)


def test_rst_resumes_exactly_in_the_middle_of_the_transformation(tmp_path, monkeypatch):
    spec = _spec(iterations=12)  # three epochs of 4 steps; η grows throughout the first two
    ref, _ = find_ticket(spec, CPU, tmp_path / "full")
    real_epoch = TrainLoader.epoch

    def crash_in_epoch_two(self, epoch):
        for i, batch in enumerate(real_epoch(self, epoch)):
            if epoch == 1 and i == 2:
                raise KeyboardInterrupt
            yield batch
    monkeypatch.setattr(TrainLoader, "epoch", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        find_ticket(spec, CPU, tmp_path / "resumed")
    monkeypatch.setattr(TrainLoader, "epoch", real_epoch)
    resumed, run = find_ticket(spec, CPU, tmp_path / "resumed")
    assert run.read_json("cycle_1/result.json")["iterations"] == 12
    for name, v in ref.state_dict.items():
        assert torch.equal(v, resumed.state_dict[name]), name
    assert all(torch.equal(ref.mask[n], resumed.mask[n]) for n in ref.mask)


def test_rst_rejects_imp_rounds_before_any_work(tmp_path):
    spec = _spec()
    bad = SearchSpec(spec.data, spec.model, spec.search, spec.attack, PruneConfig(ratio=0.5, rounds=3), spec.rst)
    with pytest.raises(ValueError, match="no IMP rounds"):
        find_ticket(bad, CPU, tmp_path)
    assert not any(tmp_path.iterdir())


def test_rst_bench_arm_trains_the_transformed_random_ticket_under_pgd(tmp_path):
    from robustlth.bench import ArmStage, BenchSetup
    from robustlth.bench.config import merge_sections
    from robustlth.data import load_dataset
    from robustlth.stages import run_stage
    from robustlth.training import RunContext
    s = BenchSetup.from_sections(merge_sections({
        "data": {"data": "synthetic", "n_train": 100, "n_test": 40, "augment": False},
        "model": {"model": "cnn6", "width": 0.25},
        "bench": {"arms": ["dense", "ticket", "rst"], "ticket_epochs": 1, "rst_iterations": 4},
        "train": {"batch_size": 25, "eval_n": 20}, "attack": {"attack_steps": 1}, "prune": {"ratio": 0.7},
        "final": {"final_attacks": ["pgd2"], "final_n": 20}}))
    arm = run_stage(ArmStage("rst", s, load_dataset(s.data)), tmp_path, RunContext(CPU)).to_dict()
    assert arm["sparsity"] == pytest.approx(0.7, abs=0.01) and arm["search_time"] > 0
    assert arm["train_config"]["warmup_epochs"] == 0  # RST fine-tuning: no warm-up
    assert 0 <= arm["final"]["attacks"][0]["robust_after"] <= arm["final"]["clean"]


def test_find_ticket_method_rst_makes_a_ticket_that_train_mask_uses(tmp_path, capsys):
    import json
    from robustlth.cli import main
    common = ["--data", "synthetic", "--n-train", "100", "--n-test", "40", "--model", "cnn6", "--width", "0.25",
              "--out", str(tmp_path), "--no-progress", "--threads", "1"]
    assert main(["find-ticket", "--method", "rst", "--ratio", "0.5", "--iterations", "4", "--search-batch-size",
                 "25", "--search-eval-n", "20", *common]) == 0
    ticket = json.loads(capsys.readouterr().out)["ticket"]
    assert main(["train", "--mask", ticket, "--epochs", "1", "--batch-size", "25", "--eval-n", "20",
                 "--eval-steps", "0", *common[:6], *common[10:]]) == 0
    assert "run_dir" in json.loads(capsys.readouterr().out)
    assert main(["find-ticket", "--eta-max", "2", *common]) == 2
    assert "only for --method rst or rst-iter" in capsys.readouterr().err
    assert main(["find-ticket", "--method", "rst", "--search-epochs", "2", *common]) == 2
    assert "set by the eta schedule" in capsys.readouterr().err
