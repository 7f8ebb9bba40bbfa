"""Run directories: named by a config hash, written atomically, self-describing.

A run directory holds `config.yaml` (the resolved hyperparameters), `env.json` (seed, library versions,
git commit, device), `metrics.jsonl` (one JSON object per logged event) and results files. Stages check
for their results on disk and skip work already done.
"""
from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from . import __version__
from .config import dump_yaml

DEFAULT_ROOT = "runs"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def git_commit() -> Optional[str]:
    """The commit of the robustlth source tree (with '+dirty' when it has local changes), if any."""
    src = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=src,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: Optional[torch.device] = None) -> dict:
    import numpy
    env = {
        "robustlth": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        import torchvision
        env["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover
        pass
    if device is not None:
        env["device"] = str(device)
        if device.type == "cuda":
            env["device_name"] = torch.cuda.get_device_name(device)
        else:
            env["device_name"] = platform.processor() or platform.machine()
    return env


class RunDir:
    """One run's directory. Creating it records the config and environment once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def create(cls, root: str | Path, kind: str, run_hash: str, config: dict,
               device: Optional[torch.device] = None, seed: Optional[int] = None) -> "RunDir":
        run = cls(Path(root) / f"{kind}_{run_hash}")
        if not (run.path / "config.yaml").exists():
            atomic_write_text(run.path / "config.yaml", dump_yaml(config))
        env = environment(device)
        env["seed"] = seed
        env["hash"] = run_hash
        atomic_write_json(run.path / "env.json", env)
        return run

    def file(self, name: str) -> Path:
        return self.path / name

    def log(self, record: dict) -> None:
        """Append one JSON line to metrics.jsonl (a line is written whole, then flushed)."""
        with open(self.path / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record, default=_json_default) + "\n")
            fh.flush()

    def metrics(self) -> list[dict]:
        return read_jsonl(self.path / "metrics.jsonl")

    def truncate_metrics(self, keep: Callable[[dict], bool]) -> None:
        """Drop metric lines written after the last checkpoint, so a resumed run does not log twice."""
        records = [r for r in self.metrics() if keep(r)]
        atomic_write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))

    def write_json(self, name: str, obj: Any) -> Path:
        atomic_write_json(self.path / name, obj)
        return self.path / name

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text())


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut off by a crash ends the log
    return out
