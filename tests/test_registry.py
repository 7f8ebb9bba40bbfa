"""Names in one style: pruning strategies, attacks, models and datasets are registries; the configs, the
--help texts and every lookup read them, so a registered name is accepted everywhere and an unknown one is one
ConfigError line listing the names there are."""
import argparse
import subprocess
import sys

import pytest
import torch

from robustlth.attacks import ATTACKS, TRAINING_ATTACKS, attack_from_spec, training_attack
from robustlth.config import AttackConfig, ConfigError, DataConfig, PruneConfig, add_config_args
from robustlth.datasets import CIFAR10, DATASET_SPECS, DatasetSpec
from robustlth.models import MODELS, build_model, check_model_name, model_names
from robustlth.pruning.masks import dense_mask
from robustlth.pruning.strategies import STRATEGIES, GlobalMagnitude, make_strategy
from robustlth.registry import Registry
from faults import REPO, env


def _fresh(monkeypatch, registry: Registry) -> Registry:
    """`registry`, its entries restored when the test ends (so a test may register names of its own)."""
    monkeypatch.setattr(registry, "_items", dict(registry.items()))
    return registry


def test_each_registry_lists_its_names():
    assert set(STRATEGIES.names()) == {"global_normalized", "global", "layerwise", "random", "movement"}
    assert TRAINING_ATTACKS.names() == ("none", "fgsm", "fgsm_rs", "nfgsm", "pgd")
    assert set(ATTACKS.names()) == {"fgsm", "fgsm_rs", "nfgsm", "pgd", "cw"}
    assert DATASET_SPECS.names() == ("cifar10", "cifar100", "svhn")
    assert set(MODELS.names()) == {"vgg11", "vgg13", "vgg16", "vgg19", "resnet18", "preactresnet18", "conv2", "conv4",
                                   "conv6", "cnn6", "lenet300", "fcn"}
    assert model_names() == [*MODELS.names(), "wrn-16-4", "wrn-28-10", "wrn-34-10"]


def _one_line(e: pytest.ExceptionInfo, names) -> str:
    text = str(e.value)
    assert "\n" not in text
    for name in names:
        assert name in text
    return text


@pytest.mark.parametrize("registry", [STRATEGIES, TRAINING_ATTACKS, ATTACKS, MODELS, DATASET_SPECS],
                         ids=lambda r: r.what)
def test_unknown_name_is_one_line_listing_the_names(registry):
    with pytest.raises(ConfigError) as e:
        registry["nosuch"]
    assert _one_line(e, registry.names()).startswith(f"unknown {registry.what} 'nosuch': expected one of ")


@pytest.mark.parametrize("make,registry,field", [
    (lambda: PruneConfig(strategy="nosuch"), STRATEGIES, "strategy"),
    (lambda: make_strategy("nosuch"), STRATEGIES, None),
    (lambda: AttackConfig(attack="nosuch"), TRAINING_ATTACKS, "attack"),
    (lambda: DataConfig(dataset="nosuch"), DATASET_SPECS, "dataset"),
    (lambda: DataConfig(data="nosuch"), DATASET_SPECS, "data"),
    (lambda: check_model_name("nosuch"), MODELS, "model"),
    (lambda: attack_from_spec("nosuch", 8 / 255), ("fgsm", "fgsm_rs", "nfgsm", "pgdK", "cw"), None),
])
def test_configs_and_lookups_refuse_unknown_names_in_one_line(make, registry, field):
    with pytest.raises(ConfigError) as e:
        make()
    text = _one_line(e, registry)
    if field:
        assert f"{field}='nosuch'" in text


def _help(cls) -> str:
    p = argparse.ArgumentParser()
    add_config_args(p, cls)
    return " ".join(p.format_help().split())  # argparse's line breaks undone


def test_help_texts_list_the_registries():
    assert f"training attack: {TRAINING_ATTACKS.help()} (default: none)" in _help(AttackConfig)
    assert f"pruning criterion: {STRATEGIES.help()} (default: global_normalized)" in _help(PruneConfig)
    assert f"--data DATA {DATASET_SPECS.help()} (torchvision" in _help(DataConfig)


class KeepFirst(GlobalMagnitude):
    """Scores by position: the first weights of each layer survive (a strategy a user might add)."""

    def scores(self, model, mask, init_state):
        return {n: -torch.arange(m.numel(), dtype=torch.float).view_as(m) for n, m in mask.items()}


def test_a_registered_strategy_is_accepted_everywhere(monkeypatch):
    registry = _fresh(monkeypatch, STRATEGIES)
    with pytest.raises(ConfigError):
        PruneConfig(strategy="keep_first")
    registry.register("keep_first")(KeepFirst)
    assert PruneConfig(strategy="keep_first").strategy == "keep_first"
    assert "keep_first" in _help(PruneConfig)
    strategy = make_strategy("keep_first", dense_layers=())
    assert isinstance(strategy, KeepFirst)
    model = build_model("fcn", 0.25, CIFAR10)
    mask = strategy.prune(model, dense_mask(model), 0.5)
    first = next(iter(mask))
    assert bool(mask[first].flatten()[0]) and not bool(mask[first].flatten()[-1])


def test_registration_is_undone_after_a_test():
    assert "keep_first" not in STRATEGIES
    with pytest.raises(ValueError, match="registered twice"):
        STRATEGIES.register("global")(KeepFirst)


def test_a_registered_training_attack_and_dataset_are_accepted(monkeypatch):
    attacks = _fresh(monkeypatch, TRAINING_ATTACKS)
    attacks.register("fgsm_half")(lambda cfg: ATTACKS["fgsm"](cfg.eps / 2, model_mode=cfg.attack_model_mode))
    atk = training_attack(AttackConfig(attack="fgsm_half", eps=0.1))
    assert atk.step_size == pytest.approx(0.05)
    specs = _fresh(monkeypatch, DATASET_SPECS)
    specs.register("gray10", DatasetSpec("gray10", 10, (0.5,) * 3, (0.25,) * 3))
    assert DataConfig(data="synthetic", dataset="gray10").dataset == "gray10"


def test_a_registered_model_builds_and_shrinkability_follows_its_builder(monkeypatch):
    from robustlth.models import shrinkable_models
    assert {"cnn6", "vgg16", "resnet18", "preactresnet18"} <= set(shrinkable_models())
    assert not {"fcn", "lenet300", "conv2"} & set(shrinkable_models())
    models = _fresh(monkeypatch, MODELS)
    models.register("tiny", lambda width, num_classes: torch.nn.Sequential(torch.nn.Flatten(),
                                                                        torch.nn.Linear(3 * 32 * 32, num_classes)))
    check_model_name("tiny")
    assert build_model("tiny", 1.0, CIFAR10)(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="no channel override"):
        build_model("tiny", 1.0, CIFAR10, channels=[1])


def test_models_command_lists_the_models():
    r = subprocess.run([sys.executable, "-m", "robustlth", "models"], capture_output=True, text=True, env=env(),
                       cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in model_names():
        assert name in r.stdout
