"""The bad-input corpus's parts: a case (argv, the words its one error line must hold, an optional run directory
to prepare) and the fixture files cases point at. tests/test_bad_input.py runs every case of every corpus_*.py."""
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import yaml


@dataclass
class Case:
    id: str
    argv: list
    needle: str
    prepare: Optional[Callable[[Path, Path], None]] = None  # (fixtures, out): a run directory to resume


def _yaml(name, obj):
    return lambda b: (b / name).write_text(obj if isinstance(obj, str) else yaml.safe_dump(obj))


def _npz(name, **arrays):
    def make(b):
        good = {"x_train": np.zeros((20, 32, 32, 3), np.uint8), "y_train": np.arange(20) % 10,
                "x_test": np.zeros((10, 32, 32, 3), np.uint8), "y_test": np.arange(10) % 10}
        good.update(arrays)
        np.savez(b / name, **{k: v for k, v in good.items() if v is not None})
    return make


def _train_run(out: Path) -> Path:
    (run,) = out.glob("train_*")
    return run


def _copy_run(damage: Callable[[Path], None]):
    def prepare(b: Path, out: Path):
        shutil.copytree(b / "runs", out)
        damage(_train_run(out))
    return prepare


def _truncate(run: Path):
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[:len(data) // 2])


