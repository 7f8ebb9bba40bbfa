"""Re-render the committed results' reports and figures from their stored data (nothing is trained or attacked):
this version's statistics (paired intervals, Holm's correction, choices on validation data) and figures (noise
bands and bars, axes from 0, one palette).

    PYTHONPATH=. python benchmarks/rerender_results.py [cpu_bench frontier_cpu lth rst ablation_cpu locality]

What a committed run never measured stays unmeasured: runs that stored no per-image verdicts get the widest
paired interval their accuracies allow (`stats.bounded_paired_interval`), runs without per-epoch CW keep
cross-entropy PGD-20 curves and say so, and runs without CPU-seconds say so.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import yaml

from robustlth.runs import atomic_write_json
from robustlth.safety import read_json

RESULTS = Path(__file__).resolve().parent / "results"


def _bench_run(path: Path) -> dict:
    """A committed bench results file with its config in sections and its headline recomputed by this version."""
    from robustlth.bench.report import upgraded
    results = upgraded(read_json(path, "bench results"), force=True)
    atomic_write_json(path, results)  # the stored headline is the one the report prints (one source)
    return results


def cpu_bench() -> None:
    from robustlth.bench.report import write_report
    d = RESULTS / "cpu_bench"
    write_report(_bench_run(d / "results.json"), d)


def frontier_cpu() -> None:
    from robustlth.bench.aggregate import aggregate, write_aggregate_report
    from robustlth.bench.report import write_report
    d = RESULTS / "frontier_cpu"
    old = read_json(d / "aggregate.json", "aggregate")
    results = {}
    for seed in old["seeds"]:
        results[seed] = _bench_run(d / f"seed{seed}" / "results.json")
        write_report(results[seed], d / f"seed{seed}")
    agg = {"config": old["config"], "runs": old["runs"], "environment": old["environment"], **aggregate(results)}
    atomic_write_json(d / "aggregate.json", agg)
    write_aggregate_report(agg, results, d)


def _without_new(d: Path, names: tuple[str, ...], write) -> None:
    """Run `write`, then remove the files named in `names` that it created (the committed folder keeps its files)."""
    before = {n for n in names if (d / n).exists()}
    write()
    for n in names:
        if n not in before and (d / n).exists():
            (d / n).unlink()


def lth() -> None:
    from robustlth.lth.report import write_report
    d = RESULTS / "lth"
    rows = pd.read_csv(d / "lth.csv").to_dict("records")
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    _without_new(d, ("results.json",), lambda: write_report({"rows": rows, "config": cfg}, d))


def rst() -> None:
    from robustlth.sweep.report import write_report
    d = RESULTS / "rst"
    rows = pd.read_csv(d / "sweep.csv").to_dict("records")
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    _without_new(d, ("results.json",), lambda: write_report({"rows": rows, "config": cfg}, d))


def ablation_cpu() -> None:
    from robustlth.ablate import rerender
    rerender(RESULTS / "ablation_cpu")


def locality() -> None:
    """Only the figures with accuracies (the others show masks): their masks are not committed."""
    from robustlth.locality.report import plot_removal, plot_rounds
    d = RESULTS / "locality"
    results = read_json(d / "results.json", "locality results")
    plot_rounds(results, d)
    plot_removal(results, d)


ALL = {"cpu_bench": cpu_bench, "frontier_cpu": frontier_cpu, "lth": lth, "rst": rst, "ablation_cpu": ablation_cpu,
       "locality": locality}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(ALL):
        ALL[name]()
        print(f"re-rendered {RESULTS / name}")
