"""Where presets find this project's local data files: `../shared/data` from the root of the robustlth source
tree, never from the current directory, and a missing file is one line saying how to get data."""
from __future__ import annotations

from pathlib import Path

from .config import ConfigError, DataConfig

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EXACT_SUBSET = SHARED_DATA / "cifar10_exact_subset.npz"
EXACT_SUBSET_SOURCE = f"npz:{EXACT_SUBSET}"


def check_preset_data(command: str, preset: str, preset_source: str | None, data: DataConfig) -> None:
    """The preset's own data file must exist; the user's own `--data` is checked (and named) by the loader."""
    if data.data != preset_source or data.file() is None or data.file().is_file():
        return
    raise ConfigError(f"`robustlth {command} --preset {preset}` reads the exact CIFAR-10 subset (5,085 train / 1,017 "
                      f"test images) from {data.file()}, which is not there: pass --data npz:PATH to a copy (uint8 "
                      "NHWC arrays x_train, y_train, x_test, y_test), or --data cifar10 (torchvision download)")
