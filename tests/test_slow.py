"""Real-data checks on the exact CIFAR-10 subset (minutes on CPU): `python -m pytest -m slow`."""
import pytest
import torch

from robustlth.config import AttackConfig, DataConfig, TrainConfig
from robustlth.data import load_dataset
from robustlth.datasets import CIFAR10
from robustlth.models import build_model
from robustlth.training import train

pytestmark = pytest.mark.slow


def test_pgd_at_on_real_cifar_gives_real_robustness(exact_npz):
    data = load_dataset(DataConfig(data=f"npz:{exact_npz}"))
    torch.manual_seed(0)
    model = build_model("cnn6", 1.0, CIFAR10)
    cfg = TrainConfig(epochs=3, lr=0.05, eval_n=512, precision="bf16", channels_last=True)
    final = train(model, data, cfg, AttackConfig(attack="pgd"), torch.device("cpu")).final
    assert 0.15 < final["eval_pgd"] < final["eval_clean"]
