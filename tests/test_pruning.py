import pytest
import torch

from robustlth.config import AttackConfig, DataConfig, ModelConfig, PruneConfig, TrainConfig
from robustlth.datasets import CIFAR10
from robustlth.models import build_model
from robustlth.pruning import (STRATEGIES, SearchSpec, Ticket, TicketError, apply_mask,
                               conv_bn_pairs, count, dense_mask, find_ticket, full_mask, load_ticket, make_control,
                               make_strategy, output_layer, prunable_weights, save_ticket, search_checkpoint,
                               sparsity_report, ticket_model)

CPU = torch.device("cpu")
FAMILIES = ["vgg11", "resnet18", "preactresnet18", "wrn-16-4", "conv2", "lenet300", "fcn", "cnn6"]


def _model(name="cnn6", width=0.25, seed=0):
    torch.manual_seed(seed)
    return build_model(name, width, CIFAR10)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_on_every_family_is_exact(family, strategy):
    model = _model(family, 0.25 if family not in ("lenet300", "fcn", "conv2") else 0.5)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for w in prunable_weights(model).values():
            w.add_(torch.randn_like(w) * 0.01)  # "trained" weights for the movement criterion
    mask = dense_mask(model)
    remaining, total = count(mask)
    new = make_strategy(strategy).prune(model, mask, 0.8, init_state=init)
    if strategy == "layerwise":  # output layer at half rate
        out = output_layer(model)
        for n, m in new.items():
            rate = 0.4 if n == out else 0.8
            assert int(m.sum()) == m.numel() - round(rate * m.numel()), n
    else:
        assert count(new)[0] == total - round(0.8 * total)
        assert abs(sparsity_report(new)["sparsity"] - 0.8) < 1 / total + 1e-12


def test_global_normalized_scores_layers_by_their_mean():
    model = _model()
    with torch.no_grad():
        for i, w in enumerate(prunable_weights(model).values()):
            w.mul_(10 ** i)  # wildly different layer scales
    new = make_strategy("global_normalized").prune(model, dense_mask(model), 0.5)
    dens = [float(m.float().mean()) for m in new.values()]
    assert min(dens) > 0.2  # no layer wiped out despite its small scale
    plain = make_strategy("global").prune(model, dense_mask(model), 0.5)
    assert float(list(plain.values())[0].float().mean()) == 0.0  # plain global kills the small-scale first layer


def test_ties_are_exact_and_deterministic():
    model = _model()
    with torch.no_grad():
        for w in prunable_weights(model).values():
            w.fill_(0.5)
    a = make_strategy("global").prune(model, dense_mask(model), 0.3)
    b = make_strategy("global").prune(model, dense_mask(model), 0.3)
    total = count(dense_mask(model))[1]
    assert count(a)[0] == total - round(0.3 * total)
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_iterative_pruning_of_remaining_weights():
    model = _model()
    mask = dense_mask(model)
    total = count(mask)[1]
    expect = total
    for _ in range(3):
        mask = make_strategy("global").prune(model, mask, 0.2)
        expect -= round(0.2 * expect)
        assert count(mask)[0] == expect
    assert abs(count(mask)[0] / total - 0.512) < 3 / total


def test_dense_layers_are_left_alone():
    model = _model()
    keep = output_layer(model)
    new = make_strategy("global", dense_layers=[keep]).prune(model, dense_mask(model), 0.9)
    assert bool(new[keep].all())
    with pytest.raises(ValueError, match="not prunable"):
        make_strategy("global", dense_layers=["nope.weight"]).prune(model, dense_mask(model), 0.5)


def test_random_control_keeps_per_layer_sparsity():
    model = _model()
    mask = make_strategy("global_normalized").prune(model, dense_mask(model), 0.8)
    t = Ticket(mask, model.state_dict(), {"model": "cnn6", "width": 0.25})
    ctrl = make_control(t, "random_layerwise", seed=3)
    for n in mask:
        assert int(ctrl.mask[n].sum()) == int(mask[n].sum())
    assert any(not torch.equal(ctrl.mask[n], mask[n]) for n in mask)
    glob = make_control(t, "random_global", seed=3)
    assert count(glob.mask) == count(mask)
    ri = make_control(t, "reinit", seed=9)
    assert all(torch.equal(ri.mask[n], mask[n]) for n in mask)
    assert not torch.equal(ri.state_dict[output_layer(model)], t.state_dict[output_layer(model)])
    noisy = make_control(t, "noise", seed=1, k=0.5)
    w0, w1 = t.state_dict[output_layer(model)], noisy.state_dict[output_layer(model)]
    ratio = float((w1 - w0).std() / w0.std())
    assert 0.4 < ratio < 0.6


def test_batchnorm_channel_of_pruned_filter_is_zeroed():
    model = _model("vgg11", 0.25)
    pairs = conv_bn_pairs(model)
    first_conv = next(iter(prunable_weights(model)))
    assert pairs[first_conv] == "net.features.1"
    mask = dense_mask(model)
    mask[first_conv][3] = False  # the whole filter of channel 3
    fm = full_mask(model, mask)
    assert fm["net.features.1.weight"].tolist().count(False) == 1 and not fm["net.features.1.bias"][3]
    apply_mask(model, mask)
    bn = model.net.features[1]
    assert bn.weight[3] == 0 and bn.bias[3] == 0 and bn.weight[2] != 0
    # Pre-activation blocks: a BatchNorm after a residual sum is not paired with a conv.
    pre = conv_bn_pairs(_model("preactresnet18"))
    assert all(not bn.endswith("bn1") or "layers.0" in bn for bn in pre.values())


def test_ticket_roundtrip_and_errors(tmp_path):
    model = _model()
    mask = make_strategy("global").prune(model, dense_mask(model), 0.5)
    path = save_ticket(tmp_path / "t.pt", Ticket(mask, model.state_dict(), {"model": "cnn6", "width": 0.25}))
    t = load_ticket(path)
    assert torch.load(path, weights_only=True)["format"] == "robustlth-ticket-v1"
    assert all(torch.equal(t.mask[n], mask[n]) for n in mask) and t.meta.sparsity == pytest.approx(0.5, abs=1e-4)
    m = ticket_model(t)
    assert all(torch.all(w[~mask[n]] == 0) for n, w in prunable_weights(m).items())
    with pytest.raises(TicketError, match="does not exist"):
        load_ticket(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(TicketError, match="not a readable ticket"):
        load_ticket(tmp_path / "bad.pt")
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(TicketError, match="not a robustlth ticket"):
        load_ticket(tmp_path / "other.pt")
    wrong = Ticket(mask, model.state_dict(), {"model": "cnn6", "width": 0.5})
    with pytest.raises(TicketError, match="does not fit cnn6 at width 0.5"):
        ticket_model(wrong)


def test_ticket_metadata_is_typed_and_other_versions_files_load(tmp_path):
    model = _model()
    old = {"model": "cnn6", "width": 0.25, "search_time": 1.5, "a_later_key": [1, 2]}
    file = {"format": "robustlth-ticket-v1", "mask": dense_mask(model), "state_dict": model.state_dict(), "meta": old}
    torch.save(file, tmp_path / "old.pt")
    t = load_ticket(tmp_path / "old.pt")
    assert (t.meta.model, t.meta.search_time, t.meta.search_lr, t.meta.extra) == ("cnn6", 1.5, None, {"a_later_key": [1, 2]})
    resaved = torch.load(save_ticket(tmp_path / "re.pt", t), weights_only=True)["meta"]
    assert resaved == {**old, "sparsity": 0.0}  # a plain dict: the fields that are set, unknown keys kept
    torch.save({**file, "meta": {"width": 0.25}}, tmp_path / "no_model.pt")
    with pytest.raises(TicketError, match="lacks 'model'"):
        load_ticket(tmp_path / "no_model.pt")


def _spec(**prune):
    return SearchSpec(data=DataConfig(data="synthetic", n_train=200, n_test=50),
                      model=ModelConfig(model="cnn6", width=0.25),
                      search=TrainConfig(epochs=1, lr=0.01, batch_size=50, eval_n=20, eval_steps=1),
                      attack=AttackConfig(attack="fgsm"), prune=PruneConfig(**prune))


def test_find_ticket_resets_to_theta0(tmp_path):
    ticket, run = find_ticket(_spec(ratio=0.8), CPU, tmp_path)
    theta0 = _model().state_dict()
    for n, v in theta0.items():
        assert torch.equal(ticket.state_dict[n], v), n
    assert ticket.sparsity()["sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert ticket.meta.search_time > 0 and ticket.meta.search_lr == 0.01
    assert (run.path / "round_1" / "result.json").exists() and search_checkpoint(_spec(ratio=0.8), tmp_path).exists()


@pytest.mark.extended
def test_imp_three_rounds_and_resume(tmp_path, monkeypatch):
    spec = _spec(ratio=0.2, rounds=3, strategy="global")
    from robustlth.pruning import finder
    real = finder.train
    calls = {"n": 0}

    def crash_on_round_three(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(finder, "train", crash_on_round_three)
    with pytest.raises(KeyboardInterrupt):
        find_ticket(spec, CPU, tmp_path)
    monkeypatch.setattr(finder, "train", real)
    trained = []
    monkeypatch.setattr(finder, "train", lambda *a, **k: trained.append(1) or real(*a, **k))
    ticket, run = find_ticket(spec, CPU, tmp_path)
    assert len(trained) == 1  # rounds 1 and 2 were on disk
    remaining, total = count(ticket.mask)
    assert abs(remaining / total - 0.512) < 3 / total
    assert run.read_json("result.json")["rounds"][2]["round"] == 3


def test_rewinding_to_theta_k(tmp_path):
    ticket, _ = find_ticket(_spec(ratio=0.5, rewind_iteration=2), CPU, tmp_path)
    theta0 = _model().state_dict()
    w = output_layer(_model())
    assert not torch.equal(ticket.state_dict[w], theta0[w])
    ticket0, _ = find_ticket(_spec(ratio=0.5, rewind_iteration=0), CPU, tmp_path)
    assert torch.equal(ticket0.state_dict[w], theta0[w])
