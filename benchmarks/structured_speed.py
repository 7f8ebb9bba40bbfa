"""Per-step speed of structured tickets: the trainer's PGD-10 step on the dense model and on shrunk models
keeping a fraction of every prunable channel group, measured interleaved in one process (dense, shrunk, dense,
...) so a shared machine's load hits both alike. One JSON line per (model, keep) with the median speed-up.

Example: python benchmarks/structured_speed.py --device cpu --threads 1 --precision fp32 \\
             --case cnn6:1.0:0.7,0.45,0.3 --case vgg11:0.5:0.45 --case resnet18:0.25:0.3
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from robustlth.datasets import CIFAR10
from robustlth.device import resolve_device, synchronize
from robustlth.models import build_model
from robustlth.models.shrink import channel_counts, count_macs
from robustlth.runs import environment
from throughput import robustlth_step


def seconds_per_step(step, x, y, device) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    step(x, y)
    synchronize(device)
    return time.perf_counter() - t0


def measure(model: str, width: float, keeps: list[float], batch_size: int, rounds: int, device, precision: str,
            attack: str) -> list[dict]:
    full = build_model(model, width, CIFAR10)  # timing on random images: CIFAR-10's shape and classes
    counts = {k: [max(1, round(k * c)) for c in channel_counts(full)] for k in keeps}
    steps = {"dense": robustlth_step(model, width, batch_size, device, precision, False, attack)}
    for k in keeps:
        steps[k] = robustlth_step(model, width, batch_size, device, precision, False, attack, channels=counts[k])
    times = {name: [] for name in steps}
    for name, (step, x, y) in steps.items():  # warm-up
        step(x, y)
    for _ in range(rounds):
        for k in keeps:  # dense then shrunk, alternating: each ratio is a pair measured back to back
            for name in ("dense", k):
                step, x, y = steps[name]
                times[name].append(seconds_per_step(step, x, y, device))
    dense_macs = count_macs(full)
    out = []
    for k in keeps:
        pairs = [d / s for d, s in zip(times["dense"][keeps.index(k)::len(keeps)], times[k])]
        macs = count_macs(build_model(model, width, CIFAR10, channels=counts[k]))
        out.append({"model": model, "width": width, "keep": k, "channels": counts[k],
                    "macs_removed": round(1 - macs / dense_macs, 4), "batch_size": batch_size, "attack": attack,
                    "dense_s_per_step": round(statistics.median(times["dense"]), 4),
                    "shrunk_s_per_step": round(statistics.median(times[k]), 4),
                    "speedup_median_of_pairs": round(statistics.median(pairs), 3),
                    "speedup_min_pair": round(min(pairs), 3), "pairs": len(pairs)})
    return out


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", action="append", required=True, help="MODEL:WIDTH:KEEP[,KEEP...]")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=4, help="timed dense/shrunk pairs per keep fraction")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--attack", default="pgd", help="training attack of the step (pgd: PGD-10)")
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    env = environment(device)
    rows = []
    for case in args.case:
        model, width, keeps = case.split(":")
        for row in measure(model, float(width), [float(k) for k in keeps.split(",")], args.batch_size,
                           args.rounds, device, args.precision, args.attack):
            row.update(device=str(device), device_name=env.get("device_name"), threads=torch.get_num_threads(),
                       precision=args.precision, torch=torch.__version__)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
