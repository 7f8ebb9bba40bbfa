"""Structured tickets: the shrunk model computes what the masked full model computes, in eval and train mode,
for every supported architecture; channel selection and MACs."""
import json

import pytest
import torch

from robustlth.datasets import CIFAR10, CIFAR100
from robustlth.models import build_model
from robustlth.models.shrink import channel_counts, channel_groups, count_macs, shrink
from robustlth.pruning.masks import apply_mask
from robustlth.pruning.structured import (channel_scores, full_structured_mask, kept_channels, select_channels,
                                          shrunk_model, structured_ticket)
from robustlth.pruning.ticket import load_ticket, save_ticket, ticket_model

ARCHS = [("cnn6", 0.5), ("vgg11", 0.125), ("resnet18", 0.125), ("preactresnet18", 0.125), ("wrn-10-2", 0.5)]


def _trained_like(name, width, seed=0):
    """A model with non-trivial BatchNorm scales and running statistics, as after a search."""
    torch.manual_seed(seed)
    model = build_model(name, width, CIFAR10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.weight.uniform_(0.2, 1.5)
                m.bias.uniform_(-0.3, 0.3)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("name,width", ARCHS)
@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_shrunk_equals_masked_full_model(name, width, scope):
    trained = _trained_like(name, width)
    torch.manual_seed(1)
    theta0 = _trained_like(name, width, seed=2).state_dict()
    ticket = structured_ticket(trained, theta0, {"model": name, "width": width}, keep=0.4, criterion="bn",
                               scope=scope, floor=0.2)
    masked = ticket_model(ticket)  # the full network with the ticket's mask applied
    apply_mask(masked, full_structured_mask(masked, {n: torch.tensor(v) for n, v in
                                                     ticket.meta.structured["kept"].items()}))
    small = shrunk_model(ticket)
    assert channel_counts(small) == ticket.meta.structured["channels"]
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in masked.parameters())
    x = torch.rand(6, 3, 32, 32)
    masked.eval(), small.eval()
    with torch.no_grad():
        assert torch.allclose(masked(x), small(x), atol=1e-5, rtol=1e-4)
    masked.train(), small.train()  # batch statistics: pruned channels are exact zeros, the rest identical
    with torch.no_grad():
        assert torch.allclose(masked(x), small(x), atol=1e-4, rtol=1e-4)


def test_masked_ticket_model_zeroes_the_same_channels_without_explicit_bn_entries():
    """`ticket_model` alone (the ordinary unstructured path) already zeroes the pruned channels' BatchNorm."""
    trained = _trained_like("cnn6", 0.5)
    ticket = structured_ticket(trained, trained.state_dict(), {"model": "cnn6", "width": 0.5}, keep=0.5)
    masked, small = ticket_model(ticket).eval(), shrunk_model(ticket).eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(masked(x), small(x), atol=1e-5, rtol=1e-4)


def test_selection_layerwise_global_and_floor():
    scores = {"a": torch.tensor([4.0, 3.0, 2.0, 1.0]), "b": torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])}
    lw = select_channels(scores, 0.5, "layerwise")
    assert lw["a"].tolist() == [0, 1] and lw["b"].tolist() == [4, 5, 6, 7]
    g = select_channels(scores, 0.5, "global", floor=0.0)  # 6 of 12: all of a's above b's best
    assert g["a"].tolist() == [0, 1, 2, 3] and g["b"].tolist() == [6, 7]
    g = select_channels({"a": scores["a"] * 10, "b": scores["b"]}, 0.25, "global", floor=0.5)
    assert g["a"].tolist() == [0, 1, 2] and g["b"].tolist() == [4, 5, 6, 7]  # b topped up to its floor


def test_criteria_are_layer_normalised_and_differ():
    model = _trained_like("cnn6", 0.5)
    for crit in ("bn", "l1", "l2"):
        s = channel_scores(model, crit)
        assert set(s) == {g.name for g in channel_groups(model)}
        assert all(abs(float(v.mean()) - 1) < 1e-5 for v in s.values())
    assert not torch.equal(channel_scores(model, "bn")["net.features.0"], channel_scores(model, "l1")["net.features.0"])


def test_macs_fall_with_channels():
    full = build_model("cnn6", 1.0, CIFAR10)
    small = build_model("cnn6", 1.0, CIFAR10, channels=[14, 14, 29, 29, 58, 58])
    assert count_macs(small) < 0.25 * count_macs(full)


def test_ticket_file_round_trip(tmp_path):
    trained = _trained_like("resnet18", 0.125)
    ticket = structured_ticket(trained, trained.state_dict(), {"model": "resnet18", "width": 0.125}, keep=0.3,
                               criterion="l2")
    save_ticket(tmp_path / "t.pt", ticket)
    loaded = load_ticket(tmp_path / "t.pt")
    a, b = shrunk_model(ticket).eval(), shrunk_model(loaded).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    json.dumps(loaded.meta.structured)  # plain data


def test_bad_channels_and_models_are_one_clear_error():
    from robustlth.config import ConfigError
    with pytest.raises(ConfigError, match="channels"):
        build_model("cnn6", 1.0, CIFAR10, channels=[1, 2, 3])
    with pytest.raises(ConfigError, match="no channel override"):
        build_model("lenet300", 1.0, CIFAR10, channels=[1])
    with pytest.raises(ConfigError, match="criterion"):
        structured_ticket(build_model("cnn6", 0.25, CIFAR10), {}, {}, keep=0.5, criterion="nope")


def test_shrunk_model_is_built_for_the_tickets_own_data():
    """A ticket found on CIFAR-100 shrinks to a 100-class model with CIFAR-100's normalisation (never a
    CIFAR-10 default)."""
    trained = build_model("cnn6", 0.25, CIFAR100)
    ticket = structured_ticket(trained, trained.state_dict(),
                               {"model": "cnn6", "width": 0.25, "data_spec": CIFAR100.to_dict()}, keep=0.5)
    small = shrunk_model(ticket).eval()
    assert small(torch.rand(2, 3, 32, 32)).shape == (2, 100)
    assert torch.allclose(small.mean.flatten(), torch.tensor(CIFAR100.mean))
    full = build_model("cnn6", 0.25, CIFAR100)
    assert shrink(full, kept_channels(ticket), CIFAR100)(
        torch.rand(1, 3, 32, 32)).shape == (1, 100)
