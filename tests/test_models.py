import pytest
import torch

from robustlth.config import ConfigError
from robustlth.datasets import CIFAR10
from robustlth.models import MODELS, build_model, check_model_name, count_parameters, model_names

# Reference parameter counts (CIFAR-10, width 1).
EXPECTED = {"resnet18": 11_173_962, "wrn-34-10": 46_160_474, "wrn-28-10": 36_479_194, "vgg16": 14_987_722,
            "cnn6": 288_746, "lenet300": 953_010, "conv2": 4_301_642, "conv4": 2_425_930, "conv6": 2_262_602,
            "fcn": 5_266_442}


@pytest.mark.parametrize("name", [n for n in model_names() if n not in ("wrn-28-10", "wrn-34-10")])
def test_forward_shape_and_grad(name):
    model = build_model(name, 0.25 if name.startswith(("vgg", "resnet", "preact", "wrn")) else 1.0, CIFAR10)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 10)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name,count", sorted(EXPECTED.items()))
def test_parameter_counts(name, count):
    assert count_parameters(build_model(name, 1.0, CIFAR10)) == count


def test_width_multiplier_scales_capacity():
    small, big = (count_parameters(build_model("cnn6", w, CIFAR10)) for w in (0.5, 2.0))
    assert small < count_parameters(build_model("cnn6", 1.0, CIFAR10)) < big


def test_normalisation_inside_model():
    model = build_model("cnn6", 1.0, CIFAR10)
    assert torch.allclose(model.mean.flatten(), torch.tensor([0.4914, 0.4822, 0.4465]))
    assert "mean" in model.state_dict() and "std" in model.state_dict()


def test_unknown_model_lists_names():
    with pytest.raises(ConfigError) as e:
        check_model_name("nosuch")
    for name in MODELS:
        assert name in str(e.value)
    with pytest.raises(ConfigError, match="6n\\+4"):
        build_model("wrn-33-10", 1.0, CIFAR10)


def test_build_model_needs_the_data_spec():
    with pytest.raises(TypeError, match="spec"):
        build_model("cnn6", 1.0)  # no silent CIFAR-10: the caller names the data's spec
    with pytest.raises(TypeError, match="DatasetSpec"):
        build_model("cnn6", 1.0, [1, 2, 3])
