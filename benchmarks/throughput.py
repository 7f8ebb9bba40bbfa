"""Training throughput (images/s) of natural, FGSM and PGD-10 steps, as one JSON line.

Runs the trainer's own step (eager or CUDA graph), so it measures exactly what `robustlth train` does per
batch. Example: python benchmarks/throughput.py --model vgg16 --batch-size 64 --device cpu --precision bf16
Under torchrun (`torchrun --nproc_per_node 2 benchmarks/throughput.py ...`) every process steps its share of the
global batch through DistributedDataParallel, and the primary prints the images/s of all processes together.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Callable, Optional

import torch

from robustlth.attacks import training_attack
from robustlth.config import AttackConfig
from robustlth.datasets import CIFAR10
from robustlth.device import (memory_format, resolve_channels_last, resolve_cuda_graphs, resolve_device,
                              resolve_precision, synchronize, tune_for_static_shapes)
from robustlth.models import build_model
from robustlth.runs import environment
from robustlth.training import RunContext, make_step


def images_per_second(step: Callable, x: torch.Tensor, y: torch.Tensor, device: torch.device, warmup: int,
                      iters: int = 0, min_time: float = 0.0) -> float:
    """Images/s of `step(x, y)`: `iters` timed calls, or as many as fill about `min_time` seconds (the count
    estimated from two timed calls, so no host synchronisation happens inside the timed loop)."""
    for _ in range(warmup):
        step(x, y)
    synchronize(device)
    if not iters:
        t0 = time.perf_counter()
        for _ in range(2):
            step(x, y)
        synchronize(device)
        iters = max(3, int(min_time / max((time.perf_counter() - t0) / 2, 1e-6)))
    t0 = time.perf_counter()
    for _ in range(iters):
        step(x, y)
    synchronize(device)
    return iters * x.shape[0] / (time.perf_counter() - t0)


def robustlth_step(model_name: str, width: float, batch_size: int, device: torch.device, precision: str,
                   channels_last: bool, attack: str, compile_: bool = False, cuda_graphs: bool = False,
                   ctx: Optional[RunContext] = None, channels=None):
    """(step, x, y) for the trainer's step on random inputs (this process's share of the batch under `ctx`;
    `channels`: a shrunk structured ticket's counts)."""
    torch.manual_seed(0)
    fmt = memory_format(channels_last)
    tune_for_static_shapes(device)
    model = build_model(model_name, width, CIFAR10, channels=channels).to(device=device, memory_format=fmt).train()
    step_model = torch.compile(model) if compile_ else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    atk = training_attack(AttackConfig(attack=attack, attack_steps=10))
    forward = ctx.wrap(step_model) if ctx is not None else step_model
    step = make_step(forward, opt, atk, device, precision, cuda_graphs=cuda_graphs,
                     attack_model=step_model if forward is not step_model else None)
    if ctx is not None:
        batch_size //= ctx.world_size
    x = torch.rand(batch_size, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch_size,), device=device)
    return step, x, y


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cnn6")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on for CUDA")
    p.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on for CUDA with fp32/bf16")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--iters", type=int, default=5, help="timed natural steps; attacks use fewer (same wall-time)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun
        from robustlth.distributed import start
        ctx = start(args.device)
        device = ctx.device
    else:
        device = resolve_device(args.device)
    precision = resolve_precision(device, args.precision)
    channels_last = resolve_channels_last(device, args.channels_last)
    graphs = resolve_cuda_graphs(device, args.cuda_graphs, precision, args.compile) and ctx is None
    rates = {}
    for attack, iters in (("none", args.iters * 4), ("fgsm", args.iters * 2), ("pgd", args.iters)):
        step, x, y = robustlth_step(args.model, args.width, args.batch_size, device, precision, channels_last,
                                    attack, args.compile, graphs, ctx)
        rate = images_per_second(step, x, y, device, args.warmup, iters)
        if ctx is not None:  # all processes together: their number times the harmonic mean of their rates
            rate = ctx.sum(torch.tensor([1.0 / rate]))[0].item() / ctx.world_size
            rate = ctx.world_size / rate
        rates[attack] = rate
    natural, fgsm, pgd = rates["none"], rates["fgsm"], rates["pgd"]
    env = environment(device)
    result = {"model": args.model, "width": args.width, "batch_size": args.batch_size, "device": str(device),
              "device_name": env.get("device_name"), "threads": torch.get_num_threads(),
              "precision": precision, "channels_last": channels_last, "compile": args.compile,
              "cuda_graphs": graphs,
              "natural_img_s": round(natural, 1), "fgsm_img_s": round(fgsm, 1), "pgd10_img_s": round(pgd, 1),
              "fgsm_over_natural_time": round(natural / fgsm, 2), "pgd10_over_natural_time": round(natural / pgd, 2),
              "processes": ctx.world_size if ctx is not None else 1, "torch": torch.__version__}
    if ctx is None or ctx.is_primary:
        print(json.dumps(result))
    if ctx is not None:
        from robustlth.distributed import stop
        stop()
    return result


if __name__ == "__main__":
    main()
