"""Where commands find data files: the one rule, documented in docs/data.md.

A path you give (`--data npz:PATH`, `--archive PATH`, ...) is used as given, relative to the current directory. A
file that a preset names (the exact CIFAR-10 subset) is looked for by name in the data folders, in this order:

1. the data folder: `$ROBUSTLTH_DATA` when set, else `~/.cache/robustlth` (where `robustlth data build` writes and
   `--data cifar10` downloads);
2. `../shared/data` beside the robustlth source tree (this project's offline copies), never the current directory.

The first folder that holds the file wins; a missing file is one line naming the folders and `robustlth data build`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from .config import ConfigError, DataConfig
from .data.sources import data_root

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EXACT_SUBSET_NAME = "cifar10_exact_subset.npz"
JPEG_NAME = "cifar10_jpeg.npz"


def data_folders() -> list[Path]:
    """The folders searched for a named data file, in order (see the module docstring)."""
    folders = [data_root().expanduser(), SHARED_DATA]
    return [f for i, f in enumerate(folders) if f not in folders[:i]]


def find_data_file(name: str) -> Optional[Path]:
    """The first data folder's `name`, or None when no folder holds it."""
    return next((f / name for f in data_folders() if (f / name).is_file()), None)


def named_data_file(name: str) -> Path:
    """Where a preset reads `name`: the file found by the rule, else where `robustlth data build` puts it."""
    return find_data_file(name) or data_root().expanduser() / name


EXACT_SUBSET = named_data_file(EXACT_SUBSET_NAME)  # resolved when the presets are built (at import)
EXACT_SUBSET_SOURCE = f"npz:{EXACT_SUBSET}"


def check_preset_data(command: str, preset: str, preset_source: str | None, data: DataConfig) -> None:
    """The preset's own data file must exist; the user's own `--data` is checked (and named) by the loader."""
    if data.data != preset_source or data.file() is None or data.file().is_file():
        return
    where = " or ".join(str(f) for f in data_folders())
    raise ConfigError(f"`robustlth {command} --preset {preset}` reads the exact CIFAR-10 subset (5,085 train / 1,017 "
                      f"test images), {data.file().name}, from the data folders ({where}; see docs/data.md), and none "
                      "holds it: build it with `robustlth data build` (from the official CIFAR-10 archive), pass "
                      "--data npz:PATH to a copy (uint8 NHWC arrays x_train, y_train, x_test, y_test), or --data "
                      "cifar10 (torchvision download)")
