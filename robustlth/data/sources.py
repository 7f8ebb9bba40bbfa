"""Dataset sources, chosen by one `--data` value, all returning uint8 NCHW tensors with int64 labels.

Every source is validated on load (shape, dtype, label range, sizes), so a bad file fails with its name,
the key and what was expected, never deep inside training.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..config import DataConfig
from ..datasets import CIFAR10, DATASET_SPECS, DatasetSpec
from ..errors import RobustLTHError

IMAGE_SHAPE = (32, 32, 3)
# CIFAR-10's values, kept for callers that predate dataset specs.
NUM_CLASSES = CIFAR10.num_classes
CIFAR10_MEAN, CIFAR10_STD = CIFAR10.mean, CIFAR10.std


class DataError(RobustLTHError, ValueError):
    """A data source is missing, unreadable or malformed; the message says which and how to fix it."""


@dataclass
class Split:
    x: torch.Tensor  # uint8, (N, 3, 32, 32)
    y: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class Dataset:
    train: Split
    test: Split
    val: Optional[Split]
    source: str
    spec: DatasetSpec = CIFAR10


def data_root() -> Path:
    return Path(os.environ.get("ROBUSTLTH_DATA", Path.home() / ".cache" / "robustlth"))


# ----------------------------------------------------------------------------------------------------
# Validation.

def validate_arrays(where: str, key_x: str, x: np.ndarray, key_y: str, y: np.ndarray,
                    num_classes: Optional[int] = NUM_CLASSES) -> None:
    """Checks images and labels; `num_classes=None` accepts any label >= 0 (a custom dataset)."""
    if x.dtype != np.uint8:
        raise DataError(f"{where}: key {key_x!r} has dtype {x.dtype}, expected uint8 images")
    if x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
        raise DataError(f"{where}: key {key_x!r} has shape {tuple(x.shape)}, expected (N, 32, 32, 3) (NHWC)")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: key {key_y!r} has shape {tuple(y.shape)} and dtype {y.dtype}, "
                        "expected a 1-D integer label array")
    if y.shape[0] != x.shape[0]:
        raise DataError(f"{where}: key {key_y!r} has {y.shape[0]} labels but {key_x!r} has {x.shape[0]} images")
    if x.shape[0] == 0:
        raise DataError(f"{where}: key {key_x!r} holds no images; every split needs at least one (N >= 1)")
    if y.size and (y.min() < 0 or (num_classes is not None and y.max() >= num_classes)):
        top = "" if num_classes is None else num_classes - 1
        raise DataError(f"{where}: key {key_y!r} has labels in [{y.min()}, {y.max()}], expected 0..{top}")


def _to_split(x_nhwc: np.ndarray, y: np.ndarray) -> Split:
    x = torch.from_numpy(np.ascontiguousarray(x_nhwc)).permute(0, 3, 1, 2).contiguous()
    return Split(x, torch.from_numpy(y.astype(np.int64)))


def _open_npz(path: Path, keys: tuple[str, ...]) -> dict:
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {', '.join(missing)}; expected keys {', '.join(keys)} "
                                f"(found {', '.join(f.files) or 'none'})")
            return {k: f[k] for k in keys}
    except DataError:
        raise
    except Exception as e:  # zip/format errors from numpy
        raise DataError(f"{path}: not a readable .npz file ({e})") from None


# ----------------------------------------------------------------------------------------------------
# Sources.

def load_npz(path: Path) -> tuple[Split, Split]:
    """uint8 NHWC arrays x_train, y_train, x_test, y_test (the exact-subset format)."""
    a = _open_npz(path, ("x_train", "y_train", "x_test", "y_test"))
    for part in ("train", "test"):  # the class count is checked against the dataset spec in load_dataset
        validate_arrays(str(path), f"x_{part}", a[f"x_{part}"], f"y_{part}", a[f"y_{part}"], num_classes=None)
    return _to_split(a["x_train"], a["y_train"]), _to_split(a["x_test"], a["y_test"])


def _decode_jpegs(path: Path, blob: np.ndarray, offsets: np.ndarray, key: str) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_jpeg
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != blob.size \
            or np.any(np.diff(offsets) <= 0):
        raise DataError(f"{path}: key 'offsets_{key}' must be increasing offsets from 0 to len(jpeg_{key})")
    if offsets.size < 2:
        raise DataError(f"{path}: key 'jpeg_{key}' holds no images; every split needs at least one (N >= 1)")
    data = torch.from_numpy(blob)
    chunks = [data[offsets[i]:offsets[i + 1]] for i in range(offsets.size - 1)]
    try:
        images = decode_jpeg(chunks, mode=ImageReadMode.RGB)
    except RuntimeError as e:
        raise DataError(f"{path}: key 'jpeg_{key}' holds an undecodable JPEG ({e})") from None
    x = torch.stack(images)
    if tuple(x.shape[1:]) != (3, 32, 32):
        raise DataError(f"{path}: key 'jpeg_{key}' decodes to images of shape {tuple(x.shape[1:])}, expected 3x32x32")
    return x


def load_cifar10_jpeg(path: Path) -> tuple[Split, Split]:
    """The JPEG-bytes copy: jpeg_{train,test} blobs with offsets_{train,test} and labels."""
    keys = ("jpeg_train", "offsets_train", "y_train", "jpeg_test", "offsets_test", "y_test")
    a = _open_npz(path, keys)
    splits = []
    for part in ("train", "test"):
        if a[f"jpeg_{part}"].dtype != np.uint8 or a[f"jpeg_{part}"].ndim != 1:
            raise DataError(f"{path}: key 'jpeg_{part}' must be a 1-D uint8 array of JPEG bytes")
        x = _decode_jpegs(path, a[f"jpeg_{part}"], a[f"offsets_{part}"].astype(np.int64), part)
        y = a[f"y_{part}"]
        validate_arrays(str(path), f"jpeg_{part}", x.permute(0, 2, 3, 1).numpy(), f"y_{part}", y)
        splits.append(Split(x.contiguous(), torch.from_numpy(y.astype(np.int64))))
    return splits[0], splits[1]


_TORCHVISION = {"cifar10": ("CIFAR10", "CIFAR-10", "cifar-10-batches-py"),
                "cifar100": ("CIFAR100", "CIFAR-100", "cifar-100-python"),
                "svhn": ("SVHN", "SVHN", "train_32x32.mat and test_32x32.mat")}


def _torchvision_sets(name: str, download: bool) -> list:
    import torchvision.datasets as tvd
    cls = getattr(tvd, _TORCHVISION[name][0])
    root = str(data_root())
    if name == "svhn":
        return [cls(root, split=s, download=download) for s in ("train", "test")]
    return [cls(root, train=t, download=download) for t in (True, False)]


def load_torchvision(name: str) -> tuple[Split, Split]:
    """torchvision's CIFAR-10, CIFAR-100 or SVHN, downloaded once into the cache directory."""
    if name not in _TORCHVISION:  # a dataset registered (DATASET_SPECS) with no download of its own
        raise DataError(f"dataset {name} has no download: pass its images as --data npz:PATH --dataset {name}")
    cls_name, title, files = _TORCHVISION[name]
    root = data_root()
    try:
        sets = _torchvision_sets(name, download=False)
    except RuntimeError:
        try:
            root.mkdir(parents=True, exist_ok=True)
            sets = _torchvision_sets(name, download=True)
        except Exception as e:
            how = "split='train'" if name == "svhn" else "train=True"
            raise DataError(
                f"{title} is not in {root} and could not be downloaded ({type(e).__name__}: {e}). "
                "Download it on a machine with internet (python -c \"import torchvision; "
                f"torchvision.datasets.{cls_name}('{root}', {how}, download=True)\" and the test split) and copy "
                f"it there, set ROBUSTLTH_DATA to a folder that holds {files}, or use --data npz:PATH for a "
                "local copy.") from None
    out = []
    for s in sets:
        if name == "svhn":  # stored NCHW with labels 0..9
            x, y = np.asarray(s.data).transpose(0, 2, 3, 1), np.asarray(s.labels, dtype=np.int64)
        else:
            x, y = np.asarray(s.data), np.asarray(s.targets, dtype=np.int64)
        validate_arrays(f"{root}/{files}", "data", x, "targets", y, DATASET_SPECS[name].num_classes)
        out.append(_to_split(x, y))
    return out[0], out[1]


def make_synthetic(n_train: int = 2000, n_test: int = 500, seed: int = 1234,
                   num_classes: int = NUM_CLASSES) -> tuple[Split, Split]:
    """Class-separable 32x32x3 images: grey plus a faint blocky class template plus pixel noise.

    The template amplitude (0.25) is small enough that a naturally trained network is not robust at
    ε = 8/255, so adversarial training has something to show even on this data.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1, 1, size=(num_classes, 3, 4, 4))
    templates = coarse.repeat(8, axis=2).repeat(8, axis=3)  # (C, 3, 32, 32)

    def sample(n: int) -> Split:
        y = np.arange(n) % num_classes
        rng.shuffle(y)
        x = 0.5 + 0.25 * templates[y] + rng.normal(0, 0.2, size=(n, 3, 32, 32))
        x = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
        return Split(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)))
    return sample(n_train), sample(n_test)


# ----------------------------------------------------------------------------------------------------
# Subsetting and splitting.

def balanced_indices(y: torch.Tensor, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` indices with classes as balanced as possible, chosen at random, returned sorted."""
    labels = y.numpy()
    classes = np.unique(labels)
    if n > labels.size:
        raise DataError(f"asked for {n} images but the split has only {labels.size}")
    per_class = {c: np.flatnonzero(labels == c) for c in classes}
    # Deal the quota round-robin, skipping classes that have run out, so counts differ by at most one
    # among the classes that still have images.
    sizes = np.array([per_class[c].size for c in classes])
    quota = np.zeros(len(classes), dtype=int)
    remaining = n
    while remaining:
        open_ = np.flatnonzero(quota < sizes)
        give = open_[:remaining]
        quota[give] += 1
        remaining -= give.size
    quota = dict(zip(classes, quota))
    picked = [rng.choice(per_class[c], size=quota[c], replace=False) for c in classes]
    return np.sort(np.concatenate(picked))


def _take(split: Split, idx: np.ndarray) -> Split:
    t = torch.from_numpy(idx)
    return Split(split.x[t], split.y[t])


def dataset_spec(cfg: DataConfig, train: Optional[Split] = None, test: Optional[Split] = None) -> DatasetSpec:
    """The spec `cfg` names; for `custom` it is measured from the splits: classes from the labels, mean and
    std from the training images."""
    name = cfg.dataset
    if name == "auto":
        name = cfg.data if cfg.data in DATASET_SPECS else "cifar10"
    if name == "custom":
        if train is None:
            raise DataError(f"the spec of custom dataset {cfg.data} needs its images")
        k = max(int(train.y.max()), int(test.y.max()) if test is not None and len(test) else 0) + 1
        x = train.x.double().div_(255)
        spec = DatasetSpec("custom", max(k, 2), tuple(x.mean((0, 2, 3)).tolist()),
                           tuple(x.std((0, 2, 3)).clamp_min(1e-3).tolist()))
    else:
        spec = DATASET_SPECS[name]
    if cfg.flips is not None and cfg.flips != spec.flips:
        spec = DatasetSpec(spec.name, spec.num_classes, spec.mean, spec.std, spec.image_size, spec.channels,
                           cfg.flips)
    for part, split in (("train", train), ("test", test)):
        if split is not None and len(split) and int(split.y.max()) >= spec.num_classes:
            raise DataError(f"{cfg.data}: key 'y_{part}' has labels in [{int(split.y.min())}, {int(split.y.max())}], "
                            f"expected 0..{spec.num_classes - 1} for dataset {spec.name}; for data of your own with "
                            "other classes pass --dataset custom")
    return spec


def load_dataset(cfg: DataConfig) -> Dataset:
    src = cfg.data
    if src in DATASET_SPECS:
        train, test = load_torchvision(src)
    elif src == "synthetic":
        k = dataset_spec(cfg).num_classes if cfg.dataset != "custom" else NUM_CLASSES
        train, test = make_synthetic((cfg.n_train or 2000) + cfg.val_size, cfg.n_test or 500, num_classes=k)
    elif src.startswith("npz:"):
        train, test = load_npz(Path(src[4:]).expanduser())
    elif src.startswith("cifar10-jpeg:"):
        train, test = load_cifar10_jpeg(Path(src[len("cifar10-jpeg:"):]).expanduser())
    else:  # DataConfig validation makes this unreachable
        raise DataError(f"unknown data source {src!r}")
    if cfg.test_data:  # e.g. bit-exact test images beside a JPEG-copy training set
        loader = load_npz if cfg.test_data.startswith("npz:") else load_cifar10_jpeg
        test = loader(cfg.test_file())[1]

    spec = dataset_spec(cfg, train, test)  # from the full splits, so subsetting never changes it
    rng = np.random.default_rng(cfg.data_seed)
    val = None
    if cfg.val_size:
        if cfg.val_size >= len(train):
            raise DataError(f"val_size={cfg.val_size} must be smaller than the {len(train)} training images")
        val_idx = balanced_indices(train.y, cfg.val_size, rng)
        rest = np.setdiff1d(np.arange(len(train)), val_idx)
        val, train = _take(train, val_idx), _take(train, rest)
    if cfg.n_train is not None and cfg.n_train < len(train):
        train = _take(train, balanced_indices(train.y, cfg.n_train, rng))
    elif cfg.n_train is not None and cfg.n_train > len(train):
        raise DataError(f"n_train={cfg.n_train} but {src} has only {len(train)} training images "
                        f"(after holding out {cfg.val_size} for validation)")
    if cfg.n_test is not None and cfg.n_test < len(test):
        test = _take(test, balanced_indices(test.y, cfg.n_test, rng))
    elif cfg.n_test is not None and cfg.n_test > len(test):
        raise DataError(f"n_test={cfg.n_test} but {src} has only {len(test)} test images")
    return Dataset(train=train, test=test, val=val, source=src, spec=spec)
