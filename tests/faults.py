"""Helpers of the fault-injection tests: run the CLI in a subprocess, kill it with SIGKILL (at a delay, or
from inside a chosen file write), and compare run directories exactly with timings left out."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
# A train run of a few seconds on CPU, for tests that need one (append --out).
TINY_TRAIN = ["--model", "cnn6", "--width", "0.25", "--data", "synthetic", "--n-train", "100", "--n-test", "50",
              "--epochs", "1", "--eval-n", "20", "--eval-steps", "1", "--batch-size", "50", "--device", "cpu",
              "--no-progress"]
TINY_SEARCH = ["--model", "cnn6", "--width", "0.25", "--data", "synthetic", "--n-train", "100", "--n-test", "50",
               "--search-epochs", "1", "--search-batch-size", "50", "--search-eval-n", "20", "--device", "cpu",
               "--no-progress"]
TIMING = re.compile(r"time|wall_clock|_s$|load_avg")  # keys whose values are measured (seconds, load), not computed
SKIP_FILES = {"env.json", ".lock", "run.log"}  # run.log: time-stamped lines, a resumed run says so
SKIP_SUFFIXES = {".png", ".md", ".csv"}  # renderings of results.json that print timings

# Runs the CLI and kills itself with SIGKILL at the n-th os.replace onto a path ending in `target`: the
# temporary file is complete, the rename has not happened (a kill inside an atomic write).
KILL_IN_WRITE = """
import os, signal, sys
target, nth = sys.argv[1], int(sys.argv[2])
real_replace, seen = os.replace, [0]
def replace(src, dst, *args, **kwargs):
    if str(dst).endswith(target):
        seen[0] += 1
        if seen[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *args, **kwargs)
os.replace = replace
from robustlth.cli import main
sys.exit(main(sys.argv[3:]))
"""


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def cli(*args, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "robustlth", *map(str, args)], capture_output=True, text=True,
                       env=env(), cwd=REPO)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def timed_cli(*args) -> float:
    t0 = time.perf_counter()
    cli(*args)
    return time.perf_counter() - t0


def kill_after(delay: float, *args) -> bool:
    """Start the CLI, SIGKILL it after `delay` seconds; True if it was still running (a real kill)."""
    p = subprocess.Popen([sys.executable, "-m", "robustlth", *map(str, args)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=env(), cwd=REPO)
    try:
        p.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return True


def kill_in_write(target: str, nth: int, *args) -> int:
    """Run the CLI until the n-th atomic write onto `target`, killed between the temporary file and its rename."""
    r = subprocess.run([sys.executable, "-c", KILL_IN_WRITE, target, str(nth), *map(str, args)], capture_output=True,
                       text=True, env=env(), cwd=REPO)
    return r.returncode


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not TIMING.search(str(k)) and k != "environment"}
    if isinstance(obj, (list, tuple)):
        return [_strip(v) for v in obj]
    return obj


def _equal(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, sorted(set(a) ^ set(b)))
        for k in a:
            _equal(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def _content(path: Path):
    if path.suffix == ".pt":
        return _strip(torch.load(path, map_location="cpu", weights_only=True))
    if path.suffix == ".json":
        return _strip(json.loads(path.read_text()))
    if path.suffix == ".jsonl":
        return [_strip(json.loads(line)) for line in path.read_text().splitlines()]
    if path.suffix == ".yaml":
        return yaml.safe_load(path.read_text())
    return path.read_bytes()


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file())


def assert_same_runs(ref: Path, other: Path) -> int:
    """Same files, same contents (weights, optimiser and RNG states, histories, results) up to timings."""
    names = files(ref)
    assert names == files(other), sorted(set(names) ^ set(files(other)))
    assert not [n for n in names if n.endswith(".tmp")]
    compared = 0
    for name in names:
        if Path(name).name in SKIP_FILES or Path(name).suffix in SKIP_SUFFIXES:
            continue
        _equal(_content(Path(ref) / name), _content(Path(other) / name), name)
        compared += 1
    return compared
