import numpy as np
import pytest
import torch

from robustlth.config import DataConfig
from robustlth.data import DataError, Split, TrainLoader, balanced_indices, load_dataset


def _write_npz(path, **overrides):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), "y_train": np.arange(40) % 10,
              "x_test": rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), "y_test": np.arange(20) % 10}
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_npz_roundtrip_and_layout(tmp_path):
    p = _write_npz(tmp_path / "d.npz")
    d = load_dataset(DataConfig(data=f"npz:{p}"))
    raw = np.load(p)
    assert d.train.x.dtype == torch.uint8 and d.train.x.shape == (40, 3, 32, 32)
    assert torch.equal(d.train.x.permute(0, 2, 3, 1), torch.from_numpy(raw["x_train"]))
    assert d.test.y.dtype == torch.int64


@pytest.mark.parametrize("override,match", [
    ({"x_train": np.zeros((4, 32, 32, 3), np.float32)}, "'x_train' has dtype float32"),
    ({"x_train": np.zeros((40, 3, 32, 32), np.uint8)}, "'x_train' has shape \\(40, 3, 32, 32\\)"),
    ({"y_train": np.arange(40) % 12}, "'y_train' has labels in \\[0, 11\\]"),
    ({"y_test": np.arange(19) % 10}, "'y_test' has 19 labels"),
    ({"y_test": None}, "missing key\\(s\\) y_test"),
])
def test_npz_validation_errors_name_file_and_key(tmp_path, override, match):
    p = _write_npz(tmp_path / "bad.npz", **override)
    with pytest.raises(DataError, match=match) as e:
        load_dataset(DataConfig(data=f"npz:{p}"))
    assert str(p) in str(e.value)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(DataConfig(data=f"npz:{tmp_path}/nope.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(DataConfig(data=f"npz:{tmp_path}/junk.npz"))


def test_torchvision_offline_error_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTLTH_DATA", str(tmp_path / "empty"))
    import torchvision.datasets

    def no_network(*a, **k):
        raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")

    class Offline:
        def __init__(self, root, train=True, download=False):
            if download:
                raise OSError("network unreachable")
            no_network()
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(DataError, match="ROBUSTLTH_DATA") as e:
        load_dataset(DataConfig(data="cifar10"))
    assert "npz:PATH" in str(e.value) and str(tmp_path / "empty") in str(e.value)


def test_balanced_subset_and_validation_split(exact_npz):
    d = load_dataset(DataConfig(data=f"npz:{exact_npz}", n_train=1000, n_test=200, val_size=500, data_seed=3))
    assert len(d.train) == 1000 and len(d.test) == 200 and len(d.val) == 500
    assert torch.bincount(d.train.y, minlength=10).tolist() == [100] * 10
    assert torch.bincount(d.val.y, minlength=10).tolist() == [50] * 10
    again = load_dataset(DataConfig(data=f"npz:{exact_npz}", n_train=1000, n_test=200, val_size=500, data_seed=3))
    assert torch.equal(d.train.x, again.train.x)
    # No image is in both train and validation.
    tr = {bytes(x.numpy()) for x in d.train.x}
    assert not any(bytes(x.numpy()) in tr for x in d.val.x)


def test_balanced_indices_handles_remainders():
    y = torch.tensor([0] * 50 + [1] * 3 + [2] * 50)
    idx = balanced_indices(y, 31, np.random.default_rng(0))
    counts = torch.bincount(y[torch.from_numpy(idx)], minlength=3).tolist()
    assert sum(counts) == 31 and counts[1] == 3 and abs(counts[0] - counts[2]) <= 1


def _split(n=64):
    x = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 3, 32, 32).contiguous()
    return Split(x, torch.arange(n) % 10)


def test_loader_deterministic_and_epoch_dependent():
    s = Split(torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8), torch.arange(64) % 10)
    a = [b for b in TrainLoader(s, 16, torch.device("cpu"), seed=1).epoch(0)]
    b = [b for b in TrainLoader(s, 16, torch.device("cpu"), seed=1).epoch(0)]
    c = [b for b in TrainLoader(s, 16, torch.device("cpu"), seed=1).epoch(1)]
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    assert len(a) == 4 and a[0][0].dtype == torch.float32 and 0 <= a[0][0].min() and a[0][0].max() <= 1


def test_augmentation_is_crop_and_flip_of_the_image():
    """Every augmented image equals some 4-pixel-padded crop, possibly flipped, of its source image."""
    torch.manual_seed(0)
    x = torch.randint(1, 256, (32, 3, 32, 32), dtype=torch.uint8)
    s = Split(x, torch.arange(32) % 10)
    loader = TrainLoader(s, 32, torch.device("cpu"), seed=0)
    xb, yb = next(loader.epoch(0))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4)).float() / 255
    flips = 0
    for img, label in zip(xb, yb):
        found = False
        for i in torch.nonzero(s.y == label).flatten():
            for dy in range(9):
                for dx in range(9):
                    crop = padded[i, :, dy:dy + 32, dx:dx + 32]
                    if torch.equal(crop, img):
                        found = True
                    elif torch.equal(crop.flip(-1), img):
                        found, flips = True, flips + 1
        assert found
    assert 4 <= flips <= 28  # about half the images are flipped


def test_loader_without_augmentation_returns_exact_pixels():
    s = Split(torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8), torch.arange(20) % 10)
    xb, yb = next(TrainLoader(s, 20, torch.device("cpu"), seed=0, augment=False).epoch(0))
    for img, label in zip(xb, yb):
        assert any(torch.equal(img, s.x[j].float() / 255) for j in range(20) if s.y[j] == label)


def test_synthetic_is_class_separable(synthetic_data):
    d = synthetic_data
    means = torch.stack([d.train.x[d.train.y == c].float().mean(0) for c in range(10)])
    pred = torch.cdist(d.test.x.float().flatten(1), means.flatten(1)).argmin(1)
    assert (pred == d.test.y).float().mean() > 0.9


def test_jpeg_source_matches_exact_subset_roughly(exact_npz, jpeg_npz):
    d = load_dataset(DataConfig(data=f"cifar10-jpeg:{jpeg_npz}"))
    assert len(d.train) == 50000 and len(d.test) == 10000
    e = load_dataset(DataConfig(data=f"npz:{exact_npz}"))
    assert torch.equal(d.test.y[:1017], e.test.y)
    diff = (d.test.x[:1017].float() - e.test.x.float()).abs().mean()
    assert diff < 10
