"""Does a large batch keep its accuracy? PGD-10 AT at each batch size, several seeds, equal epochs.

The LR is given at batch 128 and scaled linearly to each batch (with the trainer's warm-up when scaled up), as
`robustlth train --batch-size B` does. Prints and writes (JSON and Markdown) final clean and PGD-20 test
accuracy per batch size and seed, their mean and standard deviation, and the difference to the first batch
size with a 95 % t-interval over seeds (paired: same seed, same initial weights).

    python benchmarks/large_batch.py --data npz:../shared/data/cifar10_exact_subset.npz --model cnn6 \
        --epochs 6 --batches 128,512 --seeds 0,1 --device cpu --precision bf16 --channels-last \
        --out benchmarks/results/large_batch_cpu
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from robustlth.config import AttackConfig, DataConfig, TrainConfig  # noqa: E402
from robustlth.data import as_float, load_dataset  # noqa: E402
from robustlth.device import resolve_device  # noqa: E402
from robustlth.evaluate import evaluate_robustness  # noqa: E402
from robustlth.models import build_model  # noqa: E402
from robustlth.runs import atomic_write_json, atomic_write_text, environment  # noqa: E402
from robustlth.stats import t_interval  # noqa: E402
from robustlth.training import seed_everything, train  # noqa: E402

def interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95 % t-interval (half-width nan for one value)."""
    iv = t_interval(values)
    return iv.mean, iv.half


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="npz:../shared/data/cifar10_exact_subset.npz")
    p.add_argument("--n-train", type=int, help="class-balanced subset of the training images")
    p.add_argument("--model", default="cnn6")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.1, help="LR at batch 128")
    p.add_argument("--batches", default="128,512")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--final-n", type=int, default=1000)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on for CUDA")
    p.add_argument("--threads", type=int)
    p.add_argument("--out", type=Path, default=Path("large_batch"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data_cfg = DataConfig(data=args.data, n_train=args.n_train)
    data = load_dataset(data_cfg)
    x, y = as_float(data.test, device, args.final_n)
    batches, seeds = [int(b) for b in args.batches.split(",")], [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in seeds:
        for batch in batches:
            cfg = TrainConfig(epochs=args.epochs, batch_size=batch, lr=args.lr, eval_n=256, eval_steps=0,
                              precision=args.precision, channels_last=args.channels_last, seed=seed)
            seed_everything(seed)
            model = build_model(args.model, args.width, data.spec)
            t0 = time.perf_counter()
            result = train(model, data, cfg, AttackConfig(attack="pgd", attack_steps=10), device)
            final = evaluate_robustness(model, x, y, ["pgd20"], batch_size=500, seed=seed,
                                        precision=result.settings["precision"])
            runs.append({"batch": batch, "seed": seed, "clean": final["clean"], "pgd20": final["worst_case"],
                         "train_time": round(result.train_time, 1), "wall_s": round(time.perf_counter() - t0, 1),
                         "settings": result.settings})
            print(json.dumps(runs[-1]), flush=True)
            summary = summarise(runs, batches, args, device, len(y))
            atomic_write_json(args.out / "large_batch.json", summary)
            atomic_write_text(args.out / "large_batch.md", markdown(summary))
    print(markdown(summary))
    return summary


def summarise(runs: list[dict], batches: list[int], args, device, n: int) -> dict:
    rows = []
    for b in batches:
        mine = [r for r in runs if r["batch"] == b]
        if not mine:
            continue
        row = {"batch": b, "seeds": [r["seed"] for r in mine]}
        for metric in ("clean", "pgd20"):
            values = [r[metric] for r in mine]
            row[metric] = interval(values)
            row[f"{metric}_sd"] = statistics.stdev(values) if len(values) > 1 else float("nan")
            ref = {r["seed"]: r[metric] for r in runs if r["batch"] == batches[0]}
            diffs = [r[metric] - ref[r["seed"]] for r in mine if r["seed"] in ref]
            row[f"{metric}_diff"] = interval(diffs) if diffs else None
        row["train_time"] = statistics.fmean(r["train_time"] for r in mine) if mine else None
        rows.append(row)
    env = environment(device)
    return {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "device": env.get("device_name") or str(device), "test_images": n, "runs": runs, "rows": rows,
            "environment": env}


def markdown(s: dict) -> str:
    c = s["config"]
    lines = [f"PGD-10 AT of {c['model']} (width {c['width']:g}) on {c['data']}, {c['epochs']} epochs, LR {c['lr']} at batch 128 scaled "
             f"linearly; final accuracy on the first {s['test_images']} test images (one standard error about "
             f"{100 * (0.25 / s['test_images']) ** 0.5:.1f} points); device: {s['device']}.", "",
             "| batch | seeds | clean (mean ± 95 % CI) | PGD-20 (mean ± 95 % CI) | clean − batch "
             f"{s['rows'][0]['batch']} | PGD-20 − batch {s['rows'][0]['batch']} | train s |", "|---|---|---|---|---|---|---|"]

    def fmt(pair):
        if pair is None:
            return ""
        m, h = pair
        return f"{100 * m:.1f} ± {100 * h:.1f}" if h == h else f"{100 * m:.1f}"
    for r in s["rows"]:
        lines.append(f"| {r['batch']} | {len(r['seeds'])} | {fmt(r['clean'])} | {fmt(r['pgd20'])} | "
                     f"{fmt(r['clean_diff'])} | {fmt(r['pgd20_diff'])} | {r['train_time']:.0f} |")
    lines += ["", "Runs (accuracies in %):", "", "| batch | seed | clean | PGD-20 | train s |", "|---|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['seed']} | {100 * r['clean']:.1f} | {100 * r['pgd20']:.1f} | {r['train_time']} |"
              for r in s["runs"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
