"""Helpers of the data-parallel tests: start N processes with the environment torchrun gives them (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) on the gloo backend, running the CLI or a worker."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# One PGD training run over synthetic data, in a process of a group (or alone); saves what the tests compare.
WORKER = """
import json, os, sys
import torch
from robustlth.config import AttackConfig, DataConfig, TrainConfig
from robustlth.data import load_dataset
from robustlth.distributed import start, stop
from robustlth.datasets import CIFAR10
from robustlth.models import build_model
from robustlth.training import train
out, masked = sys.argv[1], sys.argv[2] == "mask"
torch.set_num_threads(1)
ctx = start("cpu", timeout_s=60)
data = load_dataset(DataConfig(data="synthetic", n_train=192, n_test=64))
torch.manual_seed(0)
model = build_model("cnn6", 0.25, CIFAR10)
mask = None
if masked:
    g = torch.Generator().manual_seed(1)
    mask = {n: torch.rand(p.shape, generator=g) < 0.5 for n, p in model.named_parameters() if p.dim() > 1}
cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, schedule="constant", eval_n=32, eval_steps=1,
                  lr_reference_batch=None)
result = train(model, data, cfg, AttackConfig(attack="pgd", attack_steps=2), ctx=ctx, mask=mask)
torch.save({"state": model.state_dict(), "mask": mask, "loss": [r["loss"] for r in result.history],
            "history": result.history}, os.path.join(out, f"rank{ctx.rank}.pt"))
stop()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(rank: int, world: int, port: int) -> dict:
    env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return env


def launch(argv: list, world: int, **popen) -> list[subprocess.Popen]:
    """`world` processes of `python argv...`, as torchrun would start them on one node."""
    port = free_port()
    return [subprocess.Popen([sys.executable, *map(str, argv)], env=env_for(r, world, port), cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
            for r in range(world)]


def finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout, stderr))
    return out
