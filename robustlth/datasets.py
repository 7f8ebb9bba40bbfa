"""What a dataset is, as data: its classes, image size, normalisation and whether flips keep labels valid.

A leaf module (it imports only the registry), so configs, data sources and models can all read a spec
without importing one another. `DATASET_SPECS` names the datasets: `--dataset` accepts them (plus auto and
custom) and `--data` downloads them through torchvision. Tickets and checkpoints record the spec, so a model
is rebuilt for the data it was trained on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from .registry import Registry


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    num_classes: int
    mean: tuple[float, ...]  # per channel, applied inside the model (never in the data pipeline)
    std: tuple[float, ...]
    image_size: int = 32
    channels: int = 3
    flips: bool = True  # horizontal flips keep the label (not for digits: SVHN)

    def __post_init__(self) -> None:
        if self.num_classes < 2 or len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"invalid dataset spec {self}")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "DatasetSpec":
        """A recorded spec; None (files from before specs existed) is CIFAR-10."""
        if d is None:
            return CIFAR10
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})


DATASET_SPECS: Registry[DatasetSpec] = Registry("dataset")


def _spec(spec: DatasetSpec) -> DatasetSpec:
    return DATASET_SPECS.register(spec.name, spec)


# Per-channel statistics of each training set.
CIFAR10 = _spec(DatasetSpec("cifar10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)))
CIFAR100 = _spec(DatasetSpec("cifar100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)))
SVHN = _spec(DatasetSpec("svhn", 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), flips=False))
