"""One command that checks robustlth on a GPU: the throughput table, the `gpu` tests, a short real benchmark.

Needs no network and runs from the source tree (`PYTHONPATH=. python benchmarks/gpu_check.py ...`) with
only torch, torchvision, numpy, pandas, pyyaml, matplotlib and tqdm installed (AutoAttack is skipped with a
note when pyautoattack is absent). Every result is written to `--out` (JSON and Markdown) as soon as it is
measured, so a run cut short keeps what it finished.

The table compares, in one process on random inputs, images/s of one PGD-10 training step:
robustlth with and without CUDA graphs (bf16 autocast + channels_last), a plain hand-written bf16 loop
(input gradients only) and an authors'-style fp32 loop (BatchNorm in eval mode during the attack and
`loss.backward()` at every attack step, as in the paper's code), plus robustlth's natural step.

    PYTHONPATH=. python benchmarks/gpu_check.py --data cifar10-jpeg:data/cifar10_jpeg.npz --out gpu_check
    python benchmarks/gpu_check.py --device cpu --quick      # the dry run the test suite does
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from throughput import images_per_second, robustlth_step  # noqa: E402

from robustlth.datasets import CIFAR10  # noqa: E402
from robustlth.device import resolve_device, tune_for_static_shapes  # noqa: E402
from robustlth.models import build_model  # noqa: E402
from robustlth.runs import atomic_write_json, atomic_write_text, environment  # noqa: E402

EPS, STEPS = 8 / 255, 10
ALPHA = EPS / 4


def plain_bf16_step(model, opt):
    """A careful hand-written PGD-10 step: bf16 autocast, channels_last, input gradients only."""
    def step(x, y):
        delta = (torch.rand_like(x) * 2 - 1) * EPS
        for p in model.parameters():
            p.requires_grad_(False)
        for _ in range(STEPS):
            delta.requires_grad_(True)
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(model((x + delta).clamp(0, 1)).float(), y)
            grad, = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + ALPHA * grad.sign()).clamp(-EPS, EPS)
        for p in model.parameters():
            p.requires_grad_(True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model((x + delta).clamp(0, 1)).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def authors_fp32_step(model, opt):
    """The paper code's style: fp32, BatchNorm in eval mode while attacking, weight gradients at every step."""
    def step(x, y):
        model.eval()
        delta = ((torch.rand_like(x) * 2 - 1) * EPS).requires_grad_(True)
        for _ in range(STEPS):
            loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
            loss.backward()
            delta.data = (delta + ALPHA * delta.grad.sign()).clamp(-EPS, EPS)
            delta.grad.zero_()
        model.train()
        loss = F.cross_entropy(model((x + delta.detach()).clamp(0, 1)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def peer(kind: str, model_name: str, batch: int, device: torch.device):
    torch.manual_seed(0)
    channels_last = kind == "plain"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(model_name, 1.0, CIFAR10).to(device, memory_format=fmt).train()  # random 10-class images
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.rand(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    return (plain_bf16_step if kind == "plain" else authors_fp32_step)(model, opt), x, y


VARIANTS = ("robustlth_pgd10_graphs", "robustlth_pgd10_eager", "plain_bf16_pgd10", "authors_fp32_pgd10",
            "robustlth_natural_graphs", "robustlth_natural_eager")


def measure(variant: str, model: str, batch: int, device: torch.device, min_time: float, width: float) -> float:
    graphs = variant.endswith("_graphs")
    if graphs and device.type != "cuda":
        raise RuntimeError("CUDA graphs need CUDA")
    if variant.startswith("robustlth"):
        precision = "bf16" if device.type == "cuda" else "fp32"
        step, x, y = robustlth_step(model, width, batch, device, precision, device.type == "cuda",
                                    "none" if "natural" in variant else "pgd", cuda_graphs=graphs)
    else:
        step, x, y = peer("plain" if variant.startswith("plain") else "authors", model, batch, device)
    try:
        return images_per_second(step, x, y, device, warmup=3, min_time=min_time)
    finally:
        del step, x, y
        if device.type == "cuda":
            torch.cuda.empty_cache()


def throughput_table(models, batches, device, min_time, width, out: Path, say) -> list[dict]:
    rows = []
    for model in models:
        for batch in batches:
            row = {"model": model, "batch": batch}
            for variant in VARIANTS:
                t0 = time.perf_counter()
                try:
                    row[variant] = round(measure(variant, model, batch, device, min_time, width), 1)
                except Exception as e:  # noqa: BLE001 - one failed cell must not lose the table
                    row[variant] = None
                    row.setdefault("errors", {})[variant] = f"{type(e).__name__}: {e}"[:300]
                say(f"{model} b{batch} {variant}: {row[variant]} img/s ({time.perf_counter() - t0:.1f} s)")
            g, plain, authors = row["robustlth_pgd10_graphs"], row["plain_bf16_pgd10"], row["authors_fp32_pgd10"]
            best = g or row["robustlth_pgd10_eager"]
            row["best_over_plain"] = round(best / plain, 2) if best and plain else None
            row["best_over_authors"] = round(best / authors, 2) if best and authors else None
            nat = row["robustlth_natural_graphs"] or row["robustlth_natural_eager"]
            row["pgd10_over_natural_time"] = round(nat / best, 2) if nat and best else None
            rows.append(row)
            atomic_write_json(out / "throughput.json", rows)
            atomic_write_text(out / "throughput.md", markdown_table(rows, device))
    return rows


def markdown_table(rows: list[dict], device: torch.device) -> str:
    env = environment(device)
    head = ["model, batch", "robustlth PGD-10 graphs", "robustlth PGD-10 eager", "plain bf16 loop",
            "authors'-style fp32 loop", "natural (graphs)", "natural (eager)", "best / plain", "best / authors",
            "PGD-10 / natural step time"]
    lines = [f"Training images/s of one step, {env.get('device_name') or device}, torch {torch.__version__}, "
             "random inputs, measured in one process (robustlth: bf16 autocast + channels_last on CUDA).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r['model']}, {r['batch']}"] + [
            "failed" if r.get(v) is None else f"{r[v]:,.0f}" for v in VARIANTS] + [
            "" if r[k] is None else f"{r[k]:.2f}" for k in ("best_over_plain", "best_over_authors",
                                                            "pgd10_over_natural_time")]
        lines.append("| " + " | ".join(cells) + " |")
    errors = [(r["model"], r["batch"], v, e) for r in rows for v, e in r.get("errors", {}).items()]
    if errors:
        lines += ["", "Failed cells:"] + [f"- {m} b{b} {v}: {e}" for m, b, v, e in errors]
    return "\n".join(lines) + "\n"


def run_gpu_tests(out: Path, say) -> dict:
    root = Path(__file__).resolve().parent.parent
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                           str(root / "tests" / "test_gpu.py")], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)})
    summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    atomic_write_text(out / "gpu_tests.log", proc.stdout + proc.stderr)
    say(f"gpu tests: {summary} ({time.perf_counter() - t0:.0f} s)")
    return {"returncode": proc.returncode, "summary": summary}


def run_short_bench(data: str, device: torch.device, out: Path, quick: bool, say) -> dict:
    from robustlth.bench import run_bench
    from robustlth.bench.config import PRESETS, BenchSetup, merge_sections
    preset = PRESETS["gpu"]
    bench = {**preset["bench"], **preset["train"], **preset["final"], "dense_epochs": 2, "ticket_epochs": 1,
             "search_epochs": 1, "final_n": 500, "final_attacks": ["pgd20", "pgd100", "cw", "autoattack"]}
    data_cfg = {**preset["data"], "data": data}
    model_cfg = dict(preset["model"])
    if quick:
        data_cfg = {"data": data, "n_train": 128, "n_test": 32, "val_size": 32}
        model_cfg = {"model": "cnn6", "width": 0.25}
        bench.update(batch_size=64, dense_epochs=1, eval_n=16, final_n=16, attack_steps=2, final_attacks=["pgd5"],
                     arms=["dense", "ticket"])
    if importlib.util.find_spec("pyautoattack") is None and "autoattack" in bench["final_attacks"]:
        say("note: pyautoattack is not installed: the short benchmark skips AutoAttack")
        bench["final_attacks"] = [a for a in bench["final_attacks"] if a != "autoattack"]
    t0 = time.perf_counter()
    setup = BenchSetup.from_sections(merge_sections({"bench": bench, "data": data_cfg, "model": model_cfg}))
    results, run = run_bench(setup, device, root=out / "runs", preset="gpu", log=say,
                             allow_small_data=quick)  # the dry run's 128 images are meant
    summary = {"seconds": round(time.perf_counter() - t0, 1), "run": str(run.path), "headline": results["headline"],
               "arms": {a: {"total_time": r["total_time"], "settings": r.get("settings"),
                            "final": r["final"] and {k: r["final"][k] for k in ("n", "clean", "worst_case")}}
                        for a, r in results["arms"].items()}}
    say(f"short benchmark: {summary['seconds']} s, report {run.path / 'report.md'}")
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--data", default="synthetic", help="data of the short benchmark, e.g. cifar10-jpeg:PATH")
    p.add_argument("--out", type=Path, default=Path("gpu_check"))
    p.add_argument("--parts", default="throughput,tests,bench", help="comma-separated: throughput, tests, bench")
    p.add_argument("--models", default="vgg16,resnet18,wrn-34-10")
    p.add_argument("--batches", default="128,512")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds timed per cell")
    p.add_argument("--quick", action="store_true", help="tiny models, batches and runs: checks the script runs")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    tune_for_static_shapes(device)
    parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    models, batches, width = args.models.split(","), [int(b) for b in args.batches.split(",")], 1.0
    if args.quick:
        models, batches, width, args.min_time = ["cnn6"], [8], 0.25, 0.0
        torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "gpu_check.log", "a")

    def say(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    report = {"environment": environment(device), "parts": parts, "quick": args.quick}
    say(f"gpu_check on {report['environment'].get('device_name') or device}")
    status = 0
    for part in parts:
        try:
            if part == "throughput":
                report["throughput"] = throughput_table(models, batches, device, args.min_time, width, args.out,
                                                        say)
            elif part == "tests":
                report["tests"] = run_gpu_tests(args.out, say)
                status |= report["tests"]["returncode"] != 0
            elif part == "bench":
                report["bench"] = run_short_bench(args.data, device, args.out, args.quick, say)
            else:
                raise ValueError(f"unknown part {part!r}: expected throughput, tests or bench")
        except Exception:  # noqa: BLE001 - report the failure of one part and go on with the next
            report[part] = {"error": traceback.format_exc()[-2000:]}
            say(f"{part} failed:\n{report[part]['error']}")
            status = 1
        atomic_write_json(args.out / "gpu_check.json", report)
    if "throughput" in report and isinstance(report["throughput"], list):
        print(markdown_table(report["throughput"], device))
    return status


if __name__ == "__main__":
    sys.exit(main())
