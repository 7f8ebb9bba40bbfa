"""Training throughput (images/s) of natural, FGSM and PGD-10 steps, as one JSON line.

Runs the trainer's own step function, so it measures exactly what `robustlth train` does per batch.
Example: python benchmarks/throughput.py --model vgg16 --batch-size 64 --device cpu --precision bf16
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from robustlth.attacks import training_attack
from robustlth.config import AttackConfig
from robustlth.device import memory_format, resolve_device, synchronize
from robustlth.models import build_model
from robustlth.runs import environment
from robustlth.training import MaskEnforcer, make_step


def measure(model_name: str, width: float, batch_size: int, device: torch.device, precision: str,
            channels_last: bool, compile_: bool, attack: str, iters: int, warmup: int) -> float:
    torch.manual_seed(0)
    fmt = memory_format(channels_last)
    model = build_model(model_name, width).to(device=device, memory_format=fmt).train()
    step_model = torch.compile(model) if compile_ else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    atk = training_attack(AttackConfig(attack=attack, attack_steps=10))
    step = make_step(step_model, opt, atk, MaskEnforcer(model, None), device, precision)
    x = torch.rand(batch_size, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch_size,), device=device)
    for _ in range(warmup):
        step(x, y)
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        step(x, y)
    synchronize(device)
    return iters * batch_size / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cnn6")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--iters", type=int, default=5, help="timed natural steps; attacks use fewer (same wall-time)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    common = dict(model_name=args.model, width=args.width, batch_size=args.batch_size, device=device,
                  precision=args.precision, channels_last=args.channels_last, compile_=args.compile,
                  warmup=args.warmup)
    natural = measure(attack="none", iters=args.iters * 4, **common)
    fgsm = measure(attack="fgsm", iters=args.iters * 2, **common)
    pgd = measure(attack="pgd", iters=args.iters, **common)
    env = environment(device)
    result = {"model": args.model, "width": args.width, "batch_size": args.batch_size, "device": str(device),
              "device_name": env.get("device_name"), "threads": torch.get_num_threads(),
              "precision": args.precision, "channels_last": args.channels_last, "compile": args.compile,
              "natural_img_s": round(natural, 1), "fgsm_img_s": round(fgsm, 1), "pgd10_img_s": round(pgd, 1),
              "fgsm_over_natural_time": round(natural / fgsm, 2), "pgd10_over_natural_time": round(natural / pgd, 2),
              "torch": torch.__version__}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
