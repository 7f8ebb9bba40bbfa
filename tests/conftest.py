import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EXACT = SHARED / "cifar10_exact_subset.npz"
JPEG = SHARED / "cifar10_jpeg.npz"


@pytest.fixture
def exact_npz():
    if not EXACT.exists():
        pytest.skip(f"{EXACT} not present")
    return EXACT


@pytest.fixture
def jpeg_npz():
    if not JPEG.exists():
        pytest.skip(f"{JPEG} not present")
    return JPEG


@pytest.fixture(scope="session")
def synthetic_data():
    from robustlth.config import DataConfig
    from robustlth.data import load_dataset
    return load_dataset(DataConfig(data="synthetic", n_train=1000, n_test=200))
