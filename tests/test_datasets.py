"""Datasets as specs: CIFAR-100- and SVHN-shaped runs end to end, a user's npz with any class count, the same
offline error for every torchvision dataset, and the spec recorded with the run."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from robustlth.config import DataConfig
from robustlth.data import DataError, Split, TrainLoader, load_dataset
from robustlth.datasets import CIFAR100, SVHN, DatasetSpec
from robustlth.models import build_model
from faults import REPO, env

TINY = ["--model", "cnn6", "--width", "0.25", "--data", "synthetic", "--n-train", "200", "--n-test", "100",
        "--epochs", "1", "--eval-n", "50", "--eval-steps", "1", "--batch-size", "50", "--attack", "pgd",
        "--attack-steps", "1", "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("dataset,classes,flips", [("cifar100", 100, True), ("svhn", 10, False)])
def test_cifar100_and_svhn_shaped_runs_end_to_end(tmp_path, dataset, classes, flips):
    out = subprocess.run([sys.executable, "-m", "robustlth", "train", *TINY, "--dataset", dataset,
                          "--out", str(tmp_path)], env=env(), cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    (run,) = tmp_path.glob("train_*")
    spec = DatasetSpec.from_dict(json.loads((run / "result.json").read_text())["data_spec"])
    assert (spec.name, spec.num_classes, spec.flips) == (dataset, classes, flips)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["data_spec"]["num_classes"] == classes
    assert ckpt["model"]["net.classifier.2.weight"].shape[0] == classes
    assert 0 <= json.loads(out.stdout)["eval_clean"] <= 1


def test_svhn_spec_never_flips():
    ramp = torch.arange(1, 33, dtype=torch.uint8).repeat(64, 3, 32, 1)  # brightness rises left to right
    split = Split(ramp, torch.zeros(64, dtype=torch.long))
    for flips, monotone in ((False, True), (True, False)):
        batches = TrainLoader(split, 64, torch.device("cpu"), seed=0, flips=flips).epoch(0)
        x = next(batches)[0][:, 0, 0]  # first row of each image, zeros where the crop padded
        rising = [bool((row[row > 0].diff() > 0).all()) for row in x]
        assert all(rising) == monotone
    assert load_dataset(DataConfig(data="synthetic", n_train=20, n_test=10, dataset="svhn")).spec == SVHN


def test_own_npz_with_twenty_classes(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"x_{p}": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for p, n in (("train", 60), ("test", 20))}
    arrays |= {"y_train": np.arange(60) % 20, "y_test": np.arange(20) % 20}
    np.savez(tmp_path / "own.npz", **arrays)
    data = load_dataset(DataConfig(data=f"npz:{tmp_path}/own.npz", dataset="custom"))
    assert data.spec.name == "custom" and data.spec.num_classes == 20
    assert data.spec.mean == pytest.approx(tuple(arrays["x_train"].mean((0, 1, 2)) / 255), abs=1e-6)
    assert build_model("cnn6", 0.25, data.spec)(torch.rand(2, 3, 32, 32)).shape == (2, 20)
    with pytest.raises(DataError, match=r"expected 0..9 for dataset cifar10; .* --dataset custom"):
        load_dataset(DataConfig(data=f"npz:{tmp_path}/own.npz"))  # auto: a file is CIFAR-10 unless told
    assert load_dataset(DataConfig(data="synthetic", n_train=200, n_test=100, dataset="cifar100")).spec == CIFAR100


@pytest.mark.parametrize("name,cls", [("cifar100", "CIFAR100"), ("svhn", "SVHN")])
def test_torchvision_offline_error_is_the_same_for_every_dataset(tmp_path, monkeypatch, name, cls):
    monkeypatch.setenv("ROBUSTLTH_DATA", str(tmp_path / "empty"))
    import torchvision.datasets

    class Offline:
        def __init__(self, root, download=False, **kwargs):
            if download:
                raise OSError("network unreachable")
            raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
    monkeypatch.setattr(torchvision.datasets, cls, Offline)
    with pytest.raises(DataError, match="ROBUSTLTH_DATA") as e:
        load_dataset(DataConfig(data=name))
    assert "npz:PATH" in str(e.value) and str(tmp_path / "empty") in str(e.value) and cls in str(e.value)
