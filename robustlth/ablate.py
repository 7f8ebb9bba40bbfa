"""`robustlth ablate`: grids over search LR, pruning ratio, capacity, search mode/epochs and retraining budget.

A cell is one benchmark configuration run for the ticket arm (and optionally its random re-initialisation).
Searches are cached by their training config, so cells that share a search reuse it, and ratio sweeps cost
one search. Searches run first, then cells; serially in-process or as submitit jobs (local processes or
SLURM). Every cell writes its result to disk, and results are collected from disk in both cases, so an
interrupted grid resumes with its unfinished cells and a failed cell is recorded without stopping the grid.
"""
from __future__ import annotations

import itertools
import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Tuple

import pandas as pd

from .bench.config import BenchConfig
from .bench.harness import run_arm, search_ticket
from .config import ATTACK_MODES, Config, ConfigError, DataConfig, ModelConfig, _check, _choice, config_hash
from .pruning import default_search_lr, convergence
from .runs import RunDir, atomic_write_json, atomic_write_text
from .safety import read_json

AXES = ("search_lr", "ratio", "width", "search_attack", "search_epochs", "budget")


@dataclass(frozen=True)
class AblateConfig(Config):
    search_lr: Tuple[float, ...] = field(default=(), metadata={"help": "search learning rates (empty: model default)"})
    ratio: Tuple[float, ...] = field(default=(), metadata={"help": "pruning ratios"})
    width: Tuple[float, ...] = field(default=(), metadata={"help": "width multipliers (capacity)"})
    search_attack: Tuple[str, ...] = field(default=(), metadata={"help": "search modes: none, fgsm, pgd, ..."})
    search_epochs: Tuple[int, ...] = field(default=(), metadata={"help": "search epochs"})
    budget: Tuple[int, ...] = field(default=(), metadata={"help": "ticket retraining budgets in epochs (budget "
                                                                 "sweep; LR drops rescale to 50 %/75 %)"})
    controls: bool = field(default=True, metadata={"help": "also train the random re-initialisation of each ticket"})
    rst: bool = field(default=False, metadata={"help": "also train each cell's RST ticket: a random mask at the "
                                                       "cell's ratio, transformed (bench rst_iterations)"})

    def validate(self) -> None:
        _check(all(0 <= r < 1 for r in self.ratio), "ratio", self.ratio, "pruning ratios in [0, 1)")
        _check(all(v > 0 for v in self.search_lr + self.width), "search_lr/width", self.search_lr + self.width,
               "positive numbers")
        _check(all(v >= 1 for v in self.search_epochs + self.budget), "search_epochs/budget",
               self.search_epochs + self.budget, "integers >= 1")
        for mode in self.search_attack:
            _choice("search_attack", mode, ATTACK_MODES)


def expand(axes: AblateConfig, bench: BenchConfig, model: ModelConfig) -> list[dict]:
    """The grid's cells: each a dict of axis values plus the resolved bench and model configs."""
    values = {a: list(getattr(axes, a)) for a in AXES}
    defaults = {"search_lr": bench.search_lr if bench.search_lr is not None else default_search_lr(model.model),
                "ratio": bench.ratio, "width": model.width, "search_attack": bench.search_attack,
                "search_epochs": bench.search_epochs, "budget": bench.ticket_epochs}
    grid = {a: values[a] or [defaults[a]] for a in AXES}
    cells = []
    for combo in itertools.product(*(grid[a] for a in AXES)):
        point = dict(zip(AXES, combo))
        b = bench.replace(search_lr=point["search_lr"], ratio=point["ratio"], search_attack=point["search_attack"],
                          search_epochs=point["search_epochs"], ticket_epochs=point["budget"])
        m = model.replace(width=point["width"])
        cell_id = config_hash("cell", {"bench": b, "model": m})
        cells.append({"id": cell_id, "axes": point, "bench": b.to_dict(), "model": m.to_dict()})
    return cells


def _arms(axes: AblateConfig) -> list[str]:
    return ["ticket"] + (["reinit"] if axes.controls else []) + (["rst"] if axes.rst else [])


def _search_key(cell: dict) -> str:
    """Cells with the same key share one search training (pruning ratio and retraining budget do not matter)."""
    bench = {k: v for k, v in cell["bench"].items() if k not in ("ratio", "ticket_epochs")}
    return json.dumps([bench, cell["model"]], sort_keys=True)


def run_searches(cells: list[dict], data_cfg: dict, root: str, device_name: str = "auto") -> list[float]:
    """Stage 1: the search training these cells share, then one ticket per pruning ratio they need.

    One job per training configuration, so no two jobs ever write the same search directory.
    """
    from .data import load_dataset
    from .device import resolve_device
    d = DataConfig.from_dict(data_cfg)
    data, device = load_dataset(d), resolve_device(device_name)
    by_ratio = {c["bench"]["ratio"]: c for c in cells}
    times = []
    for cell in by_ratio.values():
        b, m = BenchConfig.from_dict(cell["bench"]), ModelConfig.from_dict(cell["model"])
        times.append(search_ticket(b, d, m, b.search_lr, data, device, Path(root) / "search", None).meta["search_time"])
    return times


def run_cell(cell: dict, data_cfg: dict, root: str, arms: list[str], device_name: str = "auto") -> dict:
    """Stage 2: train the cell's arms. Writes cells/<id>/result.json, or error.json if anything fails."""
    from .data import load_dataset
    from .device import resolve_device
    cell_dir = RunDir(Path(root) / "cells" / cell["id"])
    try:
        b, m = BenchConfig.from_dict(cell["bench"]), ModelConfig.from_dict(cell["model"])
        d = DataConfig.from_dict(data_cfg)
        device, data = resolve_device(device_name), load_dataset(d)
        with cell_dir.lock():
            # The cell's own directory holds its arms; its search lives in the grid's shared search folder.
            arms = {arm: run_arm(arm, b, d, m, data, device, cell_dir.path, Path(root) / "search")
                    for arm in arms}
            result = {"id": cell["id"], "axes": cell["axes"], "status": "ok", "arms": arms}
            atomic_write_json(cell_dir.file("result.json"), result)
            cell_dir.file("error.json").unlink(missing_ok=True)
    except Exception as e:  # recorded, not raised: one failed cell must not stop the grid
        result = {"id": cell["id"], "axes": cell["axes"], "status": "failed",
                  "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        atomic_write_json(cell_dir.file("error.json"), result)
    return result


def rows(result: dict) -> list[dict]:
    """Tidy rows: one per cell and arm."""
    base = {"cell": result["id"], **result["axes"], "status": result["status"]}
    if result["status"] != "ok":
        return [{**base, "arm": None, "error": result["error"]}]
    out = []
    for arm, a in result["arms"].items():
        hist = [{"epoch": p["epoch"], "eval_clean": p["clean"], "eval_pgd": p["pgd20"], "eval_loss": p["eval_loss"]}
                for p in a["curve"]]
        conv = convergence(hist)
        out.append({**base, "arm": arm, "sparsity": round(a["sparsity"], 4), "search_s": round(a["search_time"], 2),
                    "train_s": round(a["train_time"], 2), "epochs": a["epochs"], **conv, "error": None})
    return out


@dataclass
class Launcher:
    """Runs a list of calls: in-process, or as submitit jobs (executor 'local', 'slurm' or 'debug')."""
    kind: str = "serial"
    folder: Optional[Path] = None
    cluster: Optional[str] = None
    timeout_min: int = 240
    gpus_per_job: int = 0
    cpus_per_job: int = 2
    partition: Optional[str] = None

    def __post_init__(self) -> None:  # checked when the grid is set up, not after its first stage
        _choice("launcher", self.kind, ("serial", "submitit"))
        if self.kind == "submitit":
            try:
                import submitit  # noqa: F401
            except ImportError:
                raise ConfigError("--launcher submitit needs submitit: pip install 'robustlth[cluster]'") from None

    def map(self, fn: Callable, calls: list[tuple]) -> list:
        if not calls:
            return []
        if self.kind == "serial":
            return [fn(*c) for c in calls]
        import submitit
        executor = submitit.AutoExecutor(folder=str(self.folder), cluster=self.cluster)
        params = {"timeout_min": self.timeout_min, "cpus_per_task": self.cpus_per_job}
        if self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        if self.partition:
            params["slurm_partition"] = self.partition
        executor.update_parameters(**params)
        jobs = [executor.submit(fn, *c) for c in calls]
        return [j.result() for j in jobs]


def run_grid(axes: AblateConfig, bench: BenchConfig, data_cfg: DataConfig, model_cfg: ModelConfig,
             root: str | Path, launcher: Launcher, device_name: str = "auto", preset: Optional[str] = None,
             log: Optional[Callable[[str], None]] = None) -> tuple[pd.DataFrame, Path]:
    config = {"preset": preset, "axes": axes.to_dict(), "bench": bench.to_dict(), "data": data_cfg.to_dict(),
              "model": model_cfg.to_dict()}
    grid_hash = config_hash("ablate", {"axes": axes, "bench": bench, "data": data_cfg, "model": model_cfg})
    cells = expand(axes, bench, model_cfg)  # every cell's config is validated before anything is written
    from .data import load_dataset
    load_dataset(data_cfg)  # so is the data
    run = RunDir.create(root, "ablate", grid_hash, config, None, bench.seed)
    with run.lock():
        return _run_grid(run, cells, axes, data_cfg, launcher, device_name, log), run.path


def _run_grid(run: RunDir, cells: list[dict], axes: AblateConfig, data_cfg: DataConfig, launcher: Launcher,
              device_name: str, log) -> pd.DataFrame:
    atomic_write_json(run.file("cells.json"), cells)
    todo = [c for c in cells if not (run.path / "cells" / c["id"] / "result.json").exists()]
    if log:
        log(f"ablation directory: {run.path}: {len(cells)} cells, {len(todo)} to run")
    # Stage 1: one job per search training configuration (a failed search fails its cells in stage 2).
    groups: dict[str, list[dict]] = {}
    for c in todo:
        groups.setdefault(_search_key(c), []).append(c)
    if launcher.kind == "submitit":
        launcher.folder = run.path / "submitit"
    try:
        launcher.map(run_searches, [(g, data_cfg.to_dict(), str(run.path), device_name) for g in groups.values()])
    except Exception as e:  # the cells that need it will record the error
        if log:
            log(f"a search failed ({type(e).__name__}: {e}); its cells will be recorded as failed")
    # Stage 2: the cells.
    launcher.map(run_cell, [(c, data_cfg.to_dict(), str(run.path), _arms(axes), device_name) for c in todo])
    df = collect(run.path)
    write_outputs(df, run.path, axes)
    return df


def collect(grid_dir: Path) -> pd.DataFrame:
    """Rows of every cell from disk: results, or recorded errors."""
    out = []
    for c in read_json(Path(grid_dir) / "cells.json"):
        d = Path(grid_dir) / "cells" / c["id"]
        for name in ("result.json", "error.json"):
            if (d / name).exists():
                out += rows(read_json(d / name))
                break
        else:
            out.append({"cell": c["id"], **c["axes"], "status": "not run", "arm": None, "error": None})
    return pd.DataFrame(out)


def _metric(bench: dict, kind: str) -> str:
    """PGD accuracy when retraining adversarially, clean accuracy for natural retraining."""
    return f"{kind}_pgd" if bench["train_attack"] != "none" else f"{kind}_clean"


def write_outputs(df: pd.DataFrame, grid_dir: Path, axes: AblateConfig) -> None:
    grid_dir = Path(grid_dir)
    atomic_write_text(grid_dir / "ablation.csv", df.to_csv(index=False))
    cfg = json.loads(json.dumps(__import__("yaml").safe_load((grid_dir / "config.yaml").read_text())))
    ok = df[df["status"] == "ok"] if "status" in df else df
    varying = [a for a in AXES if len(getattr(axes, a)) > 1]
    lines = ["# Ablation", "", f"Model {cfg['model']['model']}, data `{cfg['data']['data']}`, retraining "
             f"{cfg['bench']['train_attack']}; varying: {', '.join(varying) or 'nothing'}. "
             f"Accuracies on the per-epoch evaluation split (PGD-20 where named pgd).", ""]
    failed = df[df["status"] != "ok"] if "status" in df else df.iloc[0:0]
    for _, r in failed.iterrows():
        lines.append(f"- cell {r['cell']} ({', '.join(f'{a}={r[a]}' for a in varying)}): {r['status']}: {r['error']}")
    if len(ok):
        from .bench.report import markdown_table
        index = varying or ["search_lr"]
        for metric in ("epoch1_pgd", "epoch5_pgd", "final_pgd", "epoch1_clean", "epoch5_clean", "final_clean",
                       "early_stop_epoch", "search_s", "train_s"):
            if metric in ok and ok[metric].notna().any():
                table = ok.pivot_table(index=index, columns="arm", values=metric, aggfunc="mean").reset_index()
                table.columns = [str(c) for c in table.columns]
                lines += [f"## {metric}", "", markdown_table(table), ""]
        for f in _plots(ok, grid_dir, axes, cfg["bench"]):
            lines.append(f"![{f}]({f})")
    atomic_write_text(grid_dir / "tables.md", "\n".join(lines) + "\n")


def _plots(ok: pd.DataFrame, out: Path, axes: AblateConfig, bench: dict) -> list[str]:
    from .plotting import pyplot, save_figure
    plt = pyplot()
    files = []

    def line_plot(x: str, metrics: list[str], group: str, name: str):
        metrics = [m for m in metrics if m in ok and ok[m].notna().any()]
        fig, ax = plt.subplots(figsize=(6, 4))
        for (g, arm), sub in ok.groupby([group, "arm"]):
            sub = sub.sort_values(x)
            for metric in metrics:
                ax.plot(sub[x], sub[metric], marker="o", ls="-" if arm == "ticket" else "--",
                        label=f"{arm} {metric} ({group}={g})")
        ax.set_xlabel(x)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{', '.join(metrics)} vs {x}")
        files.append(save_figure(fig, out / name, [ax], legend_size=7))

    e1, e5, fin = _metric(bench, "epoch1"), _metric(bench, "epoch5"), _metric(bench, "final")
    if len(axes.budget) > 1:
        line_plot("budget", [fin], "search_lr", "accuracy_vs_budget.png")
    if len(axes.ratio) > 1:
        line_plot("ratio", [e1, e5], "search_lr", "early_accuracy_vs_ratio.png")
    if len(axes.width) > 1:
        line_plot("width", [e1], "search_lr", "epoch1_vs_width.png")
    if len(axes.search_lr) > 1:
        line_plot("search_lr", [e1, fin], "ratio", "accuracy_vs_search_lr.png")
    if axes.controls and {"ticket", "reinit"} <= set(ok["arm"]):
        keys = ["cell"]
        pair = ok[ok.arm == "ticket"].merge(ok[ok.arm == "reinit"], on=keys, suffixes=("_ticket", "_reinit"))
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.scatter(pair[f"{e1}_reinit"], pair[f"{e1}_ticket"], label=e1)
        if f"{fin}_ticket" in pair:
            ax.scatter(pair[f"{fin}_reinit"], pair[f"{fin}_ticket"], marker="x", label=fin)
        lim = [0, max(0.05, float(pair.filter(like="_ticket").select_dtypes("number").max().max()))]
        ax.plot(lim, lim, color="grey", lw=0.8)
        ax.set_xlabel("random re-init")
        ax.set_ylabel("ticket")
        ax.set_title("ticket vs random re-initialisation (one point per cell)")
        files.append(save_figure(fig, out / "ticket_vs_reinit.png", [ax]))
    return files


# Presets: base sections for data / model / bench plus the grid axes.
PRESETS = {
    "smoke": {"data": {"data": "synthetic", "n_train": 300, "n_test": 60, "val_size": 60},
              "model": {"model": "cnn6", "width": 0.25},
              "bench": {"search_epochs": 1, "ticket_epochs": 1, "batch_size": 50, "eval_n": 40, "attack_steps": 2,
                        "final_attacks": []},
              "axes": {"search_lr": [0.01, 0.1], "ratio": [0.5, 0.8], "width": [0.25, 0.5]}},
    "cpu": {"data": {"data": "npz:../shared/data/cifar10_exact_subset.npz", "val_size": 500},
            "model": {"model": "cnn6", "width": 1.0},
            "bench": {"search_epochs": 8, "ticket_epochs": 3, "eval_n": 256, "final_attacks": [],
                      "precision": "bf16", "channels_last": True},
            "axes": {"search_lr": [0.001, 0.01, 0.1], "ratio": [0.5, 0.7, 0.8, 0.9]}},
}
