import argparse

import pytest

from robustlth.config import (AttackConfig, ConfigError, DataConfig, ModelConfig, TrainConfig, add_config_args,
                              config_from_args, config_hash, dump_yaml, load_yaml)


@pytest.mark.parametrize("cls,kwargs,field", [
    (TrainConfig, {"lr": -0.1}, "lr"),
    (TrainConfig, {"epochs": 0}, "epochs"),
    (TrainConfig, {"schedule": "cosine"}, "schedule"),
    (TrainConfig, {"milestones": (0.75, 0.5)}, "milestones"),
    (TrainConfig, {"precision": "fp8"}, "precision"),
    (AttackConfig, {"eps": 1.5}, "eps"),
    (AttackConfig, {"eps": -0.01}, "eps"),
    (AttackConfig, {"attack": "bim"}, "attack"),
    (DataConfig, {"data": "imagenet"}, "data"),
    (DataConfig, {"n_train": 0}, "n_train"),
    (ModelConfig, {"model": ""}, "model"),  # names are checked against the registry by models.check_model_name
    (ModelConfig, {"width": 0}, "width"),
])
def test_validation_names_the_field(cls, kwargs, field):
    with pytest.raises(ConfigError, match=f"{field}="):
        cls(**kwargs)


def test_yaml_roundtrip(tmp_path):
    cfg = TrainConfig(lr=0.01, milestones=(0.3, 0.6), epochs=7)
    p = tmp_path / "c.yaml"
    p.write_text(dump_yaml({"train": cfg.to_dict()}))
    assert TrainConfig.from_dict(load_yaml(p)["train"]) == cfg


def test_unknown_yaml_field_is_an_error():
    with pytest.raises(ConfigError, match="unknown field\\(s\\) learning_rate"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_flags_override_yaml_and_parse_types():
    parser = argparse.ArgumentParser()
    add_config_args(parser, TrainConfig)
    add_config_args(parser, TrainConfig, prefix="search-")
    args = parser.parse_args(["--lr", "0.05", "--milestones", "0.4,0.8", "--no-guard", "--search-epochs", "3"])
    cfg = config_from_args(TrainConfig, args, base={"lr": 0.2, "epochs": 9})
    assert cfg.lr == 0.05 and cfg.epochs == 9 and cfg.milestones == (0.4, 0.8) and cfg.guard is False
    assert config_from_args(TrainConfig, args, prefix="search-").epochs == 3
    a2 = argparse.ArgumentParser()
    add_config_args(a2, AttackConfig)
    assert config_from_args(AttackConfig, a2.parse_args(["--attack-step-size", "none"])).attack_step_size is None


def test_every_field_has_a_flag():
    for cls in (DataConfig, ModelConfig, TrainConfig, AttackConfig):
        parser = argparse.ArgumentParser()
        add_config_args(parser, cls)
        flags = {a.dest for a in parser._actions}
        assert {f for f in cls.__dataclass_fields__} <= flags


# Golden hashes: a change here means every existing run directory name changes. Update deliberately
# (schema 2: LR scaling from a reference batch, per-device precision and layout; schema 3: every experiment as
# stages keyed by the sections each uses).
def test_golden_hashes():
    assert config_hash("train", {"data": DataConfig(), "model": ModelConfig(), "train": TrainConfig(),
                                 "attack": AttackConfig(), "mask": None}) == "42d2bc4aed31"
    assert config_hash("train", {"data": DataConfig(data="synthetic"), "model": ModelConfig(model="cnn6"),
                                 "train": TrainConfig(epochs=3, lr=0.01), "attack": AttackConfig(attack="pgd"),
                                 "mask": None}) == "c83ee64fcca2"


def test_hash_ignores_defaults_and_order():
    a = config_hash("train", {"train": TrainConfig(lr=0.1), "model": ModelConfig()})
    b = config_hash("train", {"model": ModelConfig(width=1.0), "train": TrainConfig()})
    assert a == b
    assert a != config_hash("train", {"train": TrainConfig(lr=0.2)})
    assert a != config_hash("search", {"train": TrainConfig()})
