"""Real-data checks on the exact CIFAR-10 subset (minutes on CPU): `python -m pytest -m slow`."""
import pytest
import torch

from robustlth.config import AttackConfig, DataConfig, TrainConfig
from robustlth.data import load_dataset
from robustlth.datasets import CIFAR10
from robustlth.models import build_model
from robustlth.training import train

pytestmark = pytest.mark.slow


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere torch emulates it, far slower."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def test_pgd_at_on_real_cifar_gives_real_robustness(exact_npz):
    data = load_dataset(DataConfig(data=f"npz:{exact_npz}"))
    torch.manual_seed(0)
    model = build_model("cnn6", 1.0, CIFAR10)
    # bf16 + channels_last as the cpu preset where the CPU has bf16, else fp32: emulated bf16 took over a minute per
    # PGD-10 step of cnn6 on an AVX2-only CPU, hours for this test
    fast = native_bf16()
    # PGD-5 training and a PGD-10 evaluation on 256 images keep it affordable in CI (PGD-10 training and PGD-20 + CW
    # on 512 images took 15 minutes on a loaded 2-core machine)
    cfg = TrainConfig(epochs=3, lr=0.05, eval_n=256, eval_steps=10, precision="bf16" if fast else "fp32",
                      channels_last=fast)
    final = train(model, data, cfg, AttackConfig(attack="pgd", attack_steps=5), torch.device("cpu")).final
    assert 0.15 < final["eval_pgd"] < final["eval_clean"]
