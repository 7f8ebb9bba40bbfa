"""`robustlth ablate`: grids over search LR, pruning ratio, capacity, search mode/epochs and retraining budget.

A cell is one benchmark configuration run for the ticket arm (and optionally its random re-initialisation).
Searches are cached by their training config, so cells that share a search reuse it, and ratio sweeps cost
one search. Searches run first, then cells; serially in-process or as submitit jobs (local processes or
SLURM). Every cell writes its result to disk, and results are collected from disk in both cases, so an
interrupted grid resumes with its unfinished cells and a failed cell is recorded without stopping the grid.
"""
from __future__ import annotations

import itertools
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Tuple

import pandas as pd

from .bench.arms import ArmResult, ArmStage, TicketArm
from .bench.config import BenchSetup
from .attacks import TRAINING_ATTACKS
from .config import Config, ConfigError, _check, _choice, config_hash
from .errors import FileFormatError
from .pruning import convergence, default_search_lr, find_ticket, search_training_hash
from .runs import RunDir, atomic_write_json, atomic_write_text
from .safety import read_json
from .shared_data import EXACT_SUBSET_SOURCE
from .stages import DONE, Result, Stage, run_stage
from .training import RunContext

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
            TRAINING_ATTACKS.check(mode, "search_attack")


def expand(axes: AblateConfig, setup: BenchSetup, seeds: Optional[list[int]] = None) -> list[dict]:
    """The grid's cells: each its axis values and its resolved bench setup (sections); with replicate `seeds`,
    every cell once per seed (its axes then carry the seed). A cell's id is its stage hash."""
    values = {a: list(getattr(axes, a)) for a in AXES}
    b = setup.bench
    defaults = {"search_lr": b.search_lr if b.search_lr is not None else default_search_lr(setup.model.model),
                "ratio": setup.prune.ratio, "width": setup.model.width, "search_attack": b.search_attack,
                "search_epochs": b.search_epochs, "budget": b.ticket_epochs}
    grid = {a: values[a] or [defaults[a]] for a in AXES}
    points = [dict(zip(AXES, combo)) for combo in itertools.product(*(grid[a] for a in AXES))]
    if seeds is not None:
        points = [{**p, "seed": seed} for seed in seeds for p in points]
    cells = []
    for point in points:
        s = setup.replace(bench=b.replace(search_lr=point["search_lr"], search_attack=point["search_attack"],
                                          search_epochs=point["search_epochs"], ticket_epochs=point["budget"]),
                          prune=setup.prune.replace(ratio=point["ratio"]),
                          model=setup.model.replace(width=point["width"]))
        if "seed" in point:
            s = s.with_seed(point["seed"])
        cells.append({"id": CellStage(s, _arms(axes)).hash(), "axes": point, "setup": s.to_dict()})
    return cells


def _arms(axes: AblateConfig) -> tuple[str, ...]:
    return ("ticket",) + (("reinit",) if axes.controls else ()) + (("rst",) if axes.rst else ())


def _setup(cell: dict) -> BenchSetup:
    return BenchSetup.from_sections(cell["setup"])


def _search_key(cell: dict) -> str:
    """Cells with the same key share one search training: the search's own training identity (pruning ratio
    and retraining budget do not enter it)."""
    return search_training_hash(TicketArm().search(_setup(cell)))


@dataclass
class CellResult(Result):
    id: str
    axes: dict
    status: str
    arms: dict[str, ArmResult]
    cell_s: float
    run: dict


@dataclass
class CellStage(Stage):
    """One cell: its arms, each an arm stage in the grid's folder (so cells share searches and arms)."""
    kind: ClassVar[str] = "cell"
    result: ClassVar[type] = CellResult
    setup: BenchSetup
    arms: tuple[str, ...]
    axes: dict = field(default_factory=dict, compare=False)
    data: Any = field(default=None, compare=False)
    context: dict = field(default_factory=dict, compare=False)

    def sections(self) -> dict[str, Any]:
        return {**self.setup.sections(), "arms": list(self.arms)}

    @property
    def seed(self) -> int:
        return self.setup.seed

    def run(self, ctx) -> CellResult:
        t0 = time.perf_counter()
        root = ctx.run_dir.path.parent
        arms = {arm: run_stage(ArmStage(arm, self.setup, self.data), root, ctx) for arm in self.arms}
        return CellResult(id=self.hash(), axes=self.axes, status="ok", arms=arms,
                          cell_s=round(time.perf_counter() - t0, 2),
                          run={**self.context, "torch_threads": _threads()})


def run_searches(cells: list[dict], root: str, device_name: str = "auto",
                 context: Optional[dict] = None) -> list[float]:
    """Stage 1: the search training these cells share, then one ticket per pruning ratio they need.

    One job per training configuration, so no two jobs ever write the same search directory.
    """
    from .data import load_dataset
    from .device import resolve_device
    setups = [_setup(c) for c in cells]
    data, device = load_dataset(setups[0].data), resolve_device(device_name)
    by_ratio = {s.prune.ratio: s for s in setups}
    ctx = RunContext(device)
    return [find_ticket(TicketArm().search(s), device, root, data=data, ctx=ctx)[0].meta.search_time
            for s in by_ratio.values()]


def run_cell(cell: dict, root: str, arms: tuple[str, ...], device_name: str = "auto",
             context: Optional[dict] = None) -> dict:
    """Stage 2: the cell's stage (its result.json), or error.json in its folder if anything fails; both record
    the cell's wall-clock and the concurrency it ran under (`context`, from the launcher)."""
    t0 = time.perf_counter()
    from .data import load_dataset
    from .device import resolve_device
    stage = CellStage(_setup(cell), arms, cell["axes"], context={**(context or {})})
    error = stage.path(root) / "error.json"
    try:
        device = resolve_device(device_name)
        stage.data = load_dataset(stage.setup.data)
        result = run_stage(stage, root, RunContext(device)).to_dict()
        error.unlink(missing_ok=True)
    except Exception as e:  # recorded, not raised: one failed cell must not stop the grid
        result = {"id": cell["id"], "axes": cell["axes"], "status": "failed",
                  "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(),
                  "cell_s": round(time.perf_counter() - t0, 2), "run": {**(context or {}), "torch_threads": _threads()}}
        atomic_write_json(error, result)
    return result


def _threads() -> int:
    import torch
    return torch.get_num_threads()


def rows(result: dict) -> list[dict]:
    """Tidy rows: one per cell and arm."""
    run = result.get("run") or {}
    base = {"cell": result["id"], **result["axes"], "status": result["status"], "cell_s": result.get("cell_s"),
            "concurrent_jobs": run.get("concurrent_jobs"), "torch_threads": run.get("torch_threads")}
    if result["status"] != "ok":
        return [{**base, "arm": None, "error": result["error"]}]
    out = []
    for arm, a in result["arms"].items():
        hist = [{"epoch": p["epoch"], "eval_clean": p["clean"], "eval_pgd": p["pgd20"], "eval_loss": p["eval_loss"]}
                for p in a["curve"]]
        conv = convergence(hist)
        out.append({**base, "arm": arm, "sparsity": round(a["sparsity"], 4), "search_s": round(a["search_time"], 2),
                    "train_s": round(a["train_time"], 2), "epochs": a["epochs"],
                    "eval_n": a["train_config"]["eval_n"], **conv, "error": None})
    return out


def run_in_job(threads: int, context: dict, fn: Callable, *args):
    """A job's entry point: `threads` torch threads (so concurrent jobs never oversubscribe the cores), then
    `fn(*args, context=context)`."""
    import torch
    torch.set_num_threads(threads)
    return fn(*args, context=context)


@dataclass
class Launcher:
    """Runs a list of calls: in-process, or as submitit jobs (executor 'local', 'slurm' or 'debug').

    Local jobs run at most cores // cpus_per_job at a time, each with cpus_per_job torch threads, so cell times
    are not inflated by oversubscription; each result records the concurrency it ran under. Interrupting the
    command cancels the jobs it started."""
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
            import shutil
            if self.cluster == "slurm" and shutil.which("sbatch") is None:
                raise ConfigError("--cluster slurm: SLURM is not available on this machine (no sbatch on PATH); "
                                  "use --cluster local or --launcher serial")

    def local(self) -> bool:
        import shutil
        return self.kind == "submitit" and (self.cluster in ("local", "debug") or
                                            (self.cluster is None and shutil.which("sbatch") is None))

    def concurrency(self) -> int:
        """Jobs run at once: all on a cluster; on this machine as many as its cores allow."""
        import os
        if self.kind == "serial":
            return 1
        return max(1, (os.cpu_count() or 1) // self.cpus_per_job) if self.local() else 0

    def map(self, fn: Callable, calls: list[tuple], label: str = "job", log: Optional[Callable[[str], None]] = None,
            describe: Optional[Callable[[tuple], str]] = None) -> list:
        """Results of fn(*call) in order, logging each finished call (done/total, ETA) under `label`."""
        if not calls:
            return []
        import time
        from .progress import format_seconds
        t0, total = time.perf_counter(), len(calls)
        limit = self.concurrency()
        context = {"launcher": self.kind, "concurrent_jobs": limit or None,
                   "threads_per_job": self.cpus_per_job if self.kind == "submitit" else None}

        def done(i: int, k: int) -> None:
            if log:
                elapsed = time.perf_counter() - t0
                eta = elapsed / k * (total - k)
                what = f" ({describe(calls[i])})" if describe else ""
                log(f"{label} {k}/{total} done{what}; {format_seconds(elapsed)} elapsed, ETA {format_seconds(eta)}")

        if self.kind == "serial":
            out = []
            for i, c in enumerate(calls):
                out.append(fn(*c, context=context))
                done(i, i + 1)
            return out
        import submitit
        executor = submitit.AutoExecutor(folder=str(self.folder), cluster=self.cluster)
        params = {"timeout_min": self.timeout_min, "cpus_per_task": self.cpus_per_job}
        if self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        if self.partition:
            params["slurm_partition"] = self.partition
        executor.update_parameters(**params)
        if log:
            log(f"{label}s: {total} submitit jobs ({executor.cluster}), "
                + (f"at most {limit} at a time with {self.cpus_per_job} threads each" if limit else "all submitted"))
        pending, running, results, finished = list(range(total)), {}, {}, 0
        try:
            while pending or running:
                while pending and (not limit or len(running) < limit):
                    i = pending.pop(0)
                    running[i] = executor.submit(run_in_job, self.cpus_per_job, context, fn, *calls[i])
                for i in [i for i, job in running.items() if job.done()]:
                    results[i] = running.pop(i).result()
                    finished += 1
                    done(i, finished)
                if running:
                    time.sleep(0.5)
        except BaseException:  # Ctrl-C (or anything else): no job keeps running behind the user's back
            for job in running.values():
                job.cancel(check=False)
            raise
        return [results[i] for i in range(total)]


def run_grid(axes: AblateConfig, setup: BenchSetup, root: str | Path, launcher: Launcher, device_name: str = "auto",
             preset: Optional[str] = None, log: Optional[Callable[[str], None]] = None,
             seeds: Optional[list[int]] = None) -> tuple[pd.DataFrame, Path]:
    config = {"preset": preset, "axes": axes.to_dict(), **setup.to_dict()}
    sections = {"axes": axes, **setup.sections()}
    if seeds is not None:  # replicates: a grid of its own; a single run keeps its old directory
        config["seeds"] = sections["seeds"] = list(seeds)
    grid_hash = config_hash("ablate", sections)
    cells = expand(axes, setup, seeds)  # every cell's config is validated before anything is written
    from .data import load_dataset
    load_dataset(setup.data)  # so is the data
    run = RunDir.create(root, "ablate", grid_hash, config, None, setup.seed)
    from .progress import tee_log
    log = tee_log(log, run.file("run.log"))
    with run.lock():
        return _run_grid(run, cells, axes, launcher, device_name, log), run.path


def _run_grid(run: RunDir, cells: list[dict], axes: AblateConfig, launcher: Launcher, device_name: str,
              log) -> pd.DataFrame:
    atomic_write_json(run.file("cells.json"), cells)
    todo = [c for c in cells if not (_cell_dir(run.path, c) / DONE).exists()]
    if log:
        log(f"ablation directory: {run.path}: {len(cells)} cells, {len(todo)} to run")
    # Stage 1: one job per search training configuration (a failed search fails its cells in stage 2).
    groups: dict[str, list[dict]] = {}
    for c in todo:
        groups.setdefault(_search_key(c), []).append(c)
    if launcher.kind == "submitit":
        launcher.folder = run.path / "submitit"
    try:
        launcher.map(run_searches, [(g, str(run.path), device_name) for g in groups.values()], "search", log)
    except Exception as e:  # the cells that need it will record the error
        if log:
            log(f"a search failed ({type(e).__name__}: {e}); its cells will be recorded as failed")
    # Stage 2: the cells.
    launcher.map(run_cell, [(c, str(run.path), _arms(axes), device_name) for c in todo],
                 "cell", log, describe=lambda call: ", ".join(f"{k}={v}" for k, v in call[0]["axes"].items()))
    df = collect(run.path)
    write_outputs(df, run.path, axes)
    return df


def _cell_dir(grid_dir: Path, cell: dict) -> Path:
    return Path(grid_dir) / f"{CellStage.kind}_{cell['id']}"


def collect(grid_dir: Path) -> pd.DataFrame:
    """Rows of every cell from disk: results, or recorded errors."""
    out = []
    for c in read_json(Path(grid_dir) / "cells.json"):
        d = _cell_dir(grid_dir, c)
        for name in (DONE, "error.json"):
            if (d / name).exists():
                out += rows(read_json(d / name))
                break
        else:
            out.append({"cell": c["id"], **c["axes"], "status": "not run", "arm": None, "error": None})
    return pd.DataFrame(out)


def _metric(cfg: dict, kind: str) -> str:
    """PGD accuracy when retraining adversarially, clean accuracy for natural retraining."""
    return f"{kind}_pgd" if cfg["attack"]["attack"] != "none" else f"{kind}_clean"


def rerender(grid_dir: Path) -> None:
    """tables.md and the figures again, from a finished grid's ablation.csv and config.yaml (no training); both
    files are checked before anything is written."""
    grid_dir = Path(grid_dir)
    cfg = grid_config(grid_dir)
    try:
        axes = AblateConfig.from_dict(cfg["axes"])
    except ConfigError as e:
        raise FileFormatError(f"{grid_dir / 'config.yaml'}: its axes are not a grid's: {e}") from None
    write_outputs(_read_table(grid_dir / "ablation.csv", axes), grid_dir, axes, write_csv=False)


def grid_config(grid_dir: Path) -> dict:
    """A grid's config.yaml, its sections checked for what the tables and figures read (a ConfigError or
    FileFormatError naming the file otherwise)."""
    from .bench.config import SECTIONS, moved_to_sections
    from .config import load_yaml
    path = Path(grid_dir) / "config.yaml"
    raw = load_yaml(path, "grid config")
    for name in ("axes", *SECTIONS):
        if raw.get(name) is not None and not isinstance(raw[name], dict):
            raise FileFormatError(f"grid config {path}: section {name!r} is not a mapping")
    try:
        cfg = moved_to_sections(raw)
    except ConfigError as e:
        raise FileFormatError(f"grid config {path}: {e}") from None
    for section, key, kind in (("axes", None, dict), ("model", "model", str), ("data", "data", str),
                               ("attack", "attack", str)):
        value = cfg.get(section) if key is None else (cfg.get(section) or {}).get(key)
        if not isinstance(value, kind):
            raise FileFormatError(f"grid config {path} has no {section if key is None else f'{section}.{key}'}: "
                                  "not an ablation grid's config.yaml")
    eval_n = (cfg.get("train") or {}).get("eval_n", 0)
    if isinstance(eval_n, bool) or not isinstance(eval_n, int) or eval_n < 0:
        raise FileFormatError(f"grid config {path}: train.eval_n={eval_n!r} is not an integer >= 0")
    cfg.setdefault("train", {})
    return cfg


def _read_table(path: Path, axes: AblateConfig) -> pd.DataFrame:
    """A grid's ablation.csv, with the columns the tables and figures read."""
    if not path.is_file():
        raise FileFormatError(f"{path} does not exist: not a finished ablation grid")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise FileFormatError(f"{path} is not a readable ablation table: {' '.join(str(e).split())}") from None
    needed = ["cell", "status", "arm", "error"] + [a for a in AXES if len(getattr(axes, a)) > 1]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise FileFormatError(f"{path} lacks the column(s) {', '.join(missing)}: not an ablation grid's table")
    return df


def write_outputs(df: pd.DataFrame, grid_dir: Path, axes: AblateConfig, write_csv: bool = True) -> None:
    grid_dir = Path(grid_dir)
    cfg = grid_config(grid_dir)  # before anything is written
    if write_csv:
        atomic_write_text(grid_dir / "ablation.csv", df.to_csv(index=False))
    ok = df[df["status"] == "ok"] if "status" in df else df
    varying = [a for a in AXES if len(getattr(axes, a)) > 1]
    lines = ["# Ablation", "", f"Model {cfg['model']['model']}, data `{cfg['data']['data']}`, retraining "
             f"{cfg['attack']['attack']}; varying: {', '.join(varying) or 'nothing'}. "
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
        for f in _plots(ok, grid_dir, axes, cfg):
            lines.append(f"![{f}]({f})")
        if "seed" in ok and ok["seed"].nunique() > 1:  # replicates: the spread over seeds
            from .replicates import grid_summary
            lines += [""] + grid_summary(ok, grid_dir, varying)
        else:
            from .plotting import binomial_se
            n = int(cfg["train"].get("eval_n", 0))
            lines += ["", f"One seed: no interval over seeds and no verdicts. Each accuracy above is one run on {n} "
                      f"evaluation images (one standard error about {100 * binomial_se(0.2, n):.1f}-"
                      f"{100 * binomial_se(0.4, n):.1f} points at 20-40 %); a ticket − reinit difference in one "
                      f"cell has a standard error of about {100 * (2 * binomial_se(0.3, n) ** 2) ** 0.5:.1f} points "
                      "if the two arms err on unrelated images (per-image verdicts are not stored, so it cannot be "
                      "paired). Run with --replicates for intervals and Holm-controlled verdicts."] if n else []
    atomic_write_text(grid_dir / "tables.md", "\n".join(lines) + "\n")


ARM_WORDS = {"ticket": "boosting ticket", "reinit": "ticket mask, re-initialised"}
LABELS = {"search_lr": "search LR", "ratio": "pruning ratio", "width": "width multiplier",
          "budget": "retraining epochs", "search_epochs": "search epochs", "search_attack": "search attack"}


def _metric_label(metric: str) -> str:
    when, kind = metric.split("_", 1)
    when = {"epoch1": "epoch 1", "epoch5": "epoch 5", "final": "final epoch"}.get(when, when)
    return f"{'PGD-20' if kind == 'pgd' else 'clean'} accuracy, {when}"


def _plots(ok: pd.DataFrame, out: Path, axes: AblateConfig, cfg: dict) -> list[str]:
    """The paper-style figures: one panel per metric, x = the swept axis (log for LRs), one colour and marker per
    value of the grouping axis, ticket solid and re-init dashed; points averaged over the grid's other axes (and
    seeds) with a ± s.e. band where several rows share a point."""
    from .plotting import binomial_se, eval_note, from_zero, plot_series, pyplot, save_figure, style
    plt = pyplot()
    files = []
    eval_n = int(cfg["train"].get("eval_n", 0))
    note = eval_note("per-epoch evaluation", eval_n)

    def line_plot(x: str, metrics: list[str], group: str, name: str):
        metrics = [m for m in metrics if m in ok and ok[m].notna().any()]
        if not metrics:
            return
        fig, panels = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics) + 2, 4.2), squeeze=False)
        panels = list(panels[0])
        groups = sorted(ok[group].unique())
        for ax, metric in zip(panels, metrics):
            for gi, g in enumerate(groups):
                for arm, ls in (("ticket", "-"), ("reinit", "--")):
                    sub = ok[(ok[group] == g) & (ok["arm"] == arm)]
                    if sub.empty:
                        continue
                    xs = sorted(sub[x].unique())
                    per_x = [sub[sub[x] == v][metric].tolist() for v in xs]
                    k = max(len(v) for v in per_x)
                    runs = [[v[j] if j < len(v) else None for v in per_x] for j in range(k)]
                    plot_series(ax, xs, runs, f"{ARM_WORDS.get(arm, arm)}, {LABELS.get(group, group)} {g:g}", gi,
                                over="cells", ls=ls, n_images=eval_n or None,
                                **({"markerfacecolor": "none"} if arm == "reinit" else {}))
            ax.set_xlabel(LABELS.get(x, x))
            ax.set_ylabel(_metric_label(metric))
            ax.set_title(_metric_label(metric), fontsize=10)
            if x == "search_lr":
                ax.set_xscale("log")
                ax.set_xticks(sorted(ok[x].unique()))
                ax.set_xticklabels([f"{v:g}" for v in sorted(ok[x].unique())])
            elif x != "width":
                ax.set_xticks(sorted(ok[x].unique()))
        from_zero(*panels)
        fig.suptitle(f"Ticket (solid) and random re-init (dashed, open markers) by {LABELS.get(x, x)}, "
                     f"mean over the grid's other axes\n{note}; bands: ± one s.e. over cells (or seeds) where "
                     "several share a point, else ± one binomial s.e. of the evaluation set", fontsize=9)
        files.append(save_figure(fig, out / name, panels, legend="outside", integer_x=x in ("budget", "search_epochs")))

    e1, e5, fin = _metric(cfg, "epoch1"), _metric(cfg, "epoch5"), _metric(cfg, "final")
    if len(axes.budget) > 1:
        line_plot("budget", [fin], "search_lr", "accuracy_vs_budget.png")
    if len(axes.ratio) > 1:
        line_plot("ratio", [e1, e5], "search_lr", "early_accuracy_vs_ratio.png")
    if len(axes.width) > 1:
        line_plot("width", [e1], "search_lr", "epoch1_vs_width.png")
    if len(axes.search_lr) > 1:
        line_plot("search_lr", [e1, fin], "ratio", "accuracy_vs_search_lr.png")
    if axes.controls and {"ticket", "reinit"} <= set(ok["arm"]):
        pair = ok[ok.arm == "ticket"].merge(ok[ok.arm == "reinit"], on=["cell"], suffixes=("_ticket", "_reinit"))
        metrics = [m for m in (e1, fin) if f"{m}_ticket" in pair and pair[f"{m}_ticket"].notna().any()]
        fig, ax = plt.subplots(figsize=(5, 4.6))
        values = []
        for i, m in enumerate(metrics):
            xr, yt = pair[f"{m}_reinit"].to_numpy(float), pair[f"{m}_ticket"].to_numpy(float)
            se = (lambda v: [binomial_se(a, eval_n) for a in v]) if eval_n else (lambda v: None)
            ax.errorbar(xr, yt, xerr=se(xr), yerr=se(yt), ls="none", capsize=0, lw=0.6, ms=5,
                        label=_metric_label(m), **style(i))
            values += pair[f"{m}_reinit"].tolist() + pair[f"{m}_ticket"].tolist()
        hi = max(values)  # the accuracies only: both axes on the same scale, from 0
        lim = [0, hi * 1.08]
        ax.plot(lim, lim, color="grey", lw=0.8, label="equal (y = x)")
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_aspect("equal")
        ax.set_xlabel("random re-initialisation (same mask)")
        ax.set_ylabel("ticket")
        ax.set_title(f"Ticket vs random re-init, one point per cell\n({note}; bars ± one s.e.)", fontsize=9)
        files.append(save_figure(fig, out / "ticket_vs_reinit.png", [ax], legend="outside"))
    return files


# Presets: base sections for data / model / bench plus the grid axes.
PRESETS = {
    "smoke": {"data": {"data": "synthetic", "n_train": 300, "n_test": 60, "val_size": 60},
              "model": {"model": "cnn6", "width": 0.25},
              "bench": {"search_epochs": 1, "ticket_epochs": 1},
              "train": {"batch_size": 50, "eval_n": 40},
              "attack": {"attack_steps": 2},
              "final": {"final_attacks": []},
              "axes": {"search_lr": [0.01, 0.1], "ratio": [0.5, 0.8], "width": [0.25, 0.5]}},
    "cpu": {"data": {"data": EXACT_SUBSET_SOURCE, "val_size": 500},
            "model": {"model": "cnn6", "width": 1.0},
            "bench": {"search_epochs": 8, "ticket_epochs": 3},
            "train": {"eval_n": 256, "precision": "bf16", "channels_last": True},
            "final": {"final_attacks": []},
            "axes": {"search_lr": [0.001, 0.01, 0.1], "ratio": [0.5, 0.7, 0.8, 0.9]}},
}
