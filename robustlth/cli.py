"""The `robustlth` command. Each subcommand is a small function over the library; bad input exits 2 with
one clear line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from .version import __version__
from .config import (AttackConfig, DataConfig, ModelConfig, PruneConfig, TrainConfig, add_config_args,
                     check_sections, config_from_args, load_yaml, parse_number)
from .device import check_device_settings, resolve_device
from .errors import RobustLTHError, UsageError
from .replicates import SEED_MAX, add_seed_args, resolve_seeds
from .safety import check_output_dir, check_output_file
from .shared_data import check_preset_data

DATA_PARALLEL = ("train", "find-ticket", "bench")  # the commands that run under torchrun, one process per GPU
# The YAML sections each command reads; any other section in --config is an error.
SECTIONS = {"train": ("data", "model", "train", "attack"),
            "find-ticket": ("data", "model", "search", "search_attack", "prune", "rst"),
            "bench": ("data", "model", "bench", "train", "attack", "prune", "structured", "final"),
            "ablate": ("data", "model", "bench", "train", "attack", "prune", "structured", "final", "axes"),
            "locality": ("data", "model", "train", "locality"),
            "lth": ("data", "train", "lth"),
            "sparsity-sweep": ("data", "model", "train", "sweep"),
            "speedrun": ("data", "model", "train", "attack", "final", "speedrun")}


class _Parser(argparse.ArgumentParser):
    """No abbreviations (--dense-epoch is an error, not --dense-epochs); errors are one line."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # one line, not usage + traceback
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _CommandParser(_Parser):
    """A subcommand's parser: it reports an unknown flag itself (naming the command, and the flag meant when a
    flag was shortened or misspelt) instead of leaving it to the top-level parser."""

    def parse_known_args(self, args=None, namespace=None):
        ns, extras = super().parse_known_args(args, namespace)
        if extras:
            import difflib
            flags = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
            first = next((e.split("=", 1)[0] for e in extras if e.startswith("-")), None)
            close = difflib.get_close_matches(first, flags, n=1) if first else []
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return ns, extras


def int_at_least(low: int, high: Optional[int] = None):
    """argparse type: an integer >= low (and <= high when given)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            allowed = f">= {low}" + ("" if high is None else f" and <= {high}")
            raise argparse.ArgumentTypeError(f"expected an integer {allowed}, got {text!r}")
        return value
    return parse


def _config_path(text: str) -> Path:
    """argparse type of --config: a path, not an empty string (which would name the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a YAML file, got an empty path")
    return Path(text)


def _n_images(text: str):
    """argparse type of eval --n: a count >= 1, or all."""
    if text.strip().lower() == "all":
        return "all"
    return int_at_least(1)(text)


def number_in(low: float, high: float = float("inf"), low_open: bool = False):
    """argparse type: a number (fractions such as 8/255 allowed) in [low, high] ((low, high] if low_open)."""
    def parse(text: str) -> float:
        try:
            value = parse_number(text)
        except (ValueError, ZeroDivisionError):
            value = None
        if value is None or value < low or value > high or (low_open and value == low):
            where = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"expected a number in {where}, got {text!r}")
        return value
    return parse


MAX_THREADS = 1024  # torch takes a C int; more threads than this is a typo, not a machine
MAX_DIST_TIMEOUT_S = 7 * 86400  # a week; beyond, Python's timedelta and the process group's clock overflow


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=_config_path,
                   help="YAML file with sections data/model/train/attack/...; flags override it")
    p.add_argument("--out", default="runs", help="root folder for run directories (default: runs)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--threads", type=int_at_least(1, MAX_THREADS),
                   help=f"torch CPU threads, 1..{MAX_THREADS} (default: torch's choice)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _parallel(p: argparse.ArgumentParser) -> None:
    """Flags of the commands that run under torchrun (one process per GPU)."""
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun: BatchNorm statistics over all processes (default: per process)")
    p.add_argument("--dist-timeout", type=number_in(0, MAX_DIST_TIMEOUT_S, low_open=True), default=300,
                   help="under torchrun: seconds a process waits for the others before all stop with an error "
                        "(default: %(default)s)")


def _setup(args):
    """Checks that need no config (device, output folder), then the thread count; returns the device."""
    import os

    import torch
    if os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1") and args.command not in DATA_PARALLEL:
        raise UsageError(f"`robustlth {args.command}` does not run under torchrun; start it as one process "
                         f"(data-parallel commands: {', '.join(DATA_PARALLEL)})")
    device = resolve_device(args.device)
    if hasattr(args, "out"):
        check_output_dir(args.out)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return device


def _sections(args) -> dict:
    """The --config YAML, its sections checked against those the command reads (listed in SECTIONS)."""
    sec = load_yaml(args.config) if getattr(args, "config", None) else {}
    return check_sections(sec, SECTIONS[args.command], args.command) if args.command in SECTIONS else sec


def _model_config(args, base: Optional[dict]) -> ModelConfig:
    """The model section, its name checked against the registry (the config module does not know models)."""
    from .models import check_model_name
    cfg = config_from_args(ModelConfig, args, base)
    check_model_name(cfg.model)
    return cfg


# ------------------------------------------------------------------------------------------------------
def cmd_models(args) -> int:
    from .datasets import CIFAR10
    from .models import build_model, count_parameters, model_names
    names = args.names or model_names()
    print(f"{'model':<16}{'parameters':>14}  (width {args.width:g}, 10 classes)")
    for name in names:
        n = count_parameters(build_model(name, args.width, CIFAR10))  # no data here: CIFAR-10's 10 classes
        print(f"{name:<16}{n:>14,}  {n / 1e6:7.2f} M")
    return 0


# ------------------------------------------------------------------------------------------------------
def _run_context(args):
    """This process's run context: one process, or one of those torchrun started (then only the primary one
    reports)."""
    from .distributed import start
    _setup(args)  # device name, output folder and threads checked before any process group forms
    return start(args.device, args.dist_timeout, args.sync_bn)


def _distributed(func):
    """Run a command under data parallelism: a failed peer is one clear line; the group is left at the end."""
    def run(args) -> int:
        from .distributed import distributed_errors, stop
        ctx = _run_context(args)
        try:
            with distributed_errors(ctx.rank):
                return func(args, ctx)
        finally:
            stop()
    return run


def _report(ctx, line: dict) -> None:
    if ctx.is_primary:
        print(json.dumps(line))


@_distributed
def cmd_train(args, ctx) -> int:
    from .pipeline import run_train
    sec = _sections(args)
    data_cfg = config_from_args(DataConfig, args, sec.get("data"))
    model_cfg = _model_config(args, sec.get("model"))
    attack_cfg = config_from_args(AttackConfig, args, sec.get("attack"))
    train_cfg = config_from_args(TrainConfig, args, sec.get("train"))
    model_given = "model" in vars(args) or "width" in vars(args) or "model" in sec
    result, run, _ = run_train(data_cfg, model_cfg, train_cfg, attack_cfg, ctx, args.out, mask_path=args.mask,
                            model_given=model_given, explicit=frozenset(vars(args)) | set(sec.get("train", {})),
                            progress=args.progress, log=_say, trust_factory=args.trust_factory)
    _report(ctx, {"run_dir": str(run.path), **result.final})
    return 0


# ------------------------------------------------------------------------------------------------------
def cmd_eval(args) -> int:
    from .data import as_float, load_dataset
    from .evaluate import evaluate_robustness, summary_line, validate_attack_names
    from .runs import atomic_write_json, environment
    from .saved_model import open_checkpoint
    device = _setup(args)
    attacks = validate_attack_names(args.attacks.split(","), args.eps)
    saved = open_checkpoint(args.checkpoint, device, model=args.model, width=args.width, data=args.data,
                            trust_factory=args.trust_factory)
    if saved.data is None:
        raise UsageError(f"{saved.checkpoint} does not say which data it was trained on: pass --data SOURCE")
    data = load_dataset(saved.data)  # the run's own data: its test images are the run's own test set
    n = len(data.test) if args.n == "all" else args.n if args.n is not None else \
        min(saved.eval_n or len(data.test), len(data.test))
    if n > len(data.test):
        raise UsageError(f"--n {n} but the test set of {saved.data.data} has {len(data.test)} images")
    default_out = saved.checkpoint.parent / f"eval_{'-'.join(attacks)}_n{n}.json"
    out = check_output_file(default_out if args.output is None else args.output)  # before the costly evaluation
    _say(f"evaluating {saved.model_name} (width {saved.width:g}, {saved.kind}"
         + (f", sparsity {saved.sparsity:.2f}" if saved.sparsity is not None else "")
         + f") on the first {n} of the run's {len(data.test)} test images of {saved.data.data}")
    x, y = as_float(data.test, device, n)
    result = evaluate_robustness(model=saved.model, x=x, y=y, attacks=attacks, eps=args.eps,
                                 batch_size=args.batch_size, seed=args.seed, independent=args.independent, log=_say,
                                 progress=args.progress)
    result.update(checkpoint=str(saved.checkpoint), model=saved.model_name, width=saved.width, kind=saved.kind,
                  data=saved.data.to_dict(), env=environment(device))
    atomic_write_json(out, result)
    _say(f"wrote {out}")
    _say(summary_line(result))
    print(json.dumps({"n": result["n"], "worst_case": result["worst_case"], "clean": result["clean"],
                      "cumulative": {a["name"]: a["robust_after"] for a in result["attacks"]}}))
    return 0


# ------------------------------------------------------------------------------------------------------
def _rst_config(args, sec: dict):
    """The RST settings when --method (or the YAML's rst section) asks for rst or rst-iter, else None."""
    from dataclasses import fields
    from .pruning import RSTConfig
    rst_sec = sec.get("rst", {})
    method = vars(args).get("method", rst_sec.get("method", "imp"))
    if method == "imp":
        given = sorted(f.name for f in fields(RSTConfig) if f.name != "method" and f.name in vars(args)) + \
            sorted(k for k in rst_sec if k != "method")
        if given:
            raise UsageError(f"{', '.join(given)}: only for --method rst or rst-iter")
        return None
    if "search_epochs" in vars(args) or "epochs" in sec.get("search", {}):
        raise UsageError(f"--method {method}: the transformation's length is set by the eta schedule "
                         "(--iterations, or --eta-step/--eta-every/--hold-iterations), not by search epochs")
    return config_from_args(RSTConfig, args, {**rst_sec, "method": method})


def search_spec_from_args(args, sec: dict):
    """Search configs: the paper's per-architecture defaults (or RST's transformation recipe), then YAML,
    then flags."""
    from .pruning import TRANSFORM_DEFAULTS, SearchSpec, search_defaults
    model_cfg = _model_config(args, sec.get("model"))
    rst = _rst_config(args, sec)
    defaults = search_defaults(model_cfg.model) if rst is None else \
        {"train": {**TRANSFORM_DEFAULTS, "epochs": 1}, "attack": {"attack": "none"}}
    return SearchSpec(
        data=config_from_args(DataConfig, args, sec.get("data")),
        model=model_cfg,
        search=config_from_args(TrainConfig, args, {**defaults["train"], **sec.get("search", {})}, prefix="search-"),
        attack=config_from_args(AttackConfig, args, {**defaults["attack"], **sec.get("search_attack", {})},
                                prefix="search-"),
        prune=config_from_args(PruneConfig, args, sec.get("prune")),
        rst=rst)


@_distributed
def cmd_find_ticket(args, ctx) -> int:
    from .pruning import find_ticket
    spec = search_spec_from_args(args, _sections(args))
    check_device_settings(ctx.device, spec.search.precision, spec.search.cuda_graphs, spec.search.compile)
    ticket, run = find_ticket(spec, ctx.device, args.out, progress=args.progress, log=_say, ctx=ctx)
    _report(ctx, {"ticket": str(run.file("ticket.pt")), "sparsity": ticket.sparsity()["sparsity"],
                  "search_time": ticket.meta.search_time})
    return 0


def cmd_control(args) -> int:
    from .pruning import load_ticket, make_control, save_ticket
    from .pruning.ticket import check_ticket_factory
    check_output_file(args.output)
    ticket = load_ticket(args.ticket)
    check_ticket_factory(ticket, args.trust_factory)  # before a control rebuilds the model the file names
    control = make_control(ticket, args.kind, seed=args.seed, k=args.k)
    save_ticket(args.output, control)
    print(json.dumps({"ticket": str(args.output), "control": control.meta.control,
                      "sparsity": control.sparsity()["sparsity"]}))
    return 0


# ------------------------------------------------------------------------------------------------------
@_distributed
def cmd_bench(args, ctx) -> int:
    from .bench import PRESETS, run_bench
    setup, preset = _bench_setup(args, PRESETS)
    check_preset_data("bench", args.preset, preset.get("data", {}).get("data"), setup.data)
    check_device_settings(ctx.device, setup.train.precision, setup.train.cuda_graphs)
    seeds = resolve_seeds(args, setup.seed)
    if seeds is not None:  # replicates: one cached bench run per seed, then their spread
        from .bench.aggregate import run_bench_seeds
        agg, agg_dir = run_bench_seeds(setup, ctx.device, args.out, seeds, preset=args.preset,
                                       progress=args.progress, log=_say, ctx=ctx)
        if ctx.is_primary:
            _say(f"report: {agg_dir / 'report.md'}")
        _report(ctx, {"aggregate_dir": str(agg_dir), "seeds": seeds, "runs": agg["runs"]})
        return 0
    results, run = run_bench(setup, ctx.device, args.out, preset=args.preset, progress=args.progress, log=_say,
                             allow_small_data=args.allow_small_data, ctx=ctx)
    if not ctx.is_primary:
        return 0
    from .bench.harness import stdout_summary
    from .bench.report import headline_lines
    print("\n".join(line.replace("**", "") for line in headline_lines(results)))  # the honest headline first
    _say(f"report: {run.file('report.md')}")
    print(json.dumps(stdout_summary(results, str(run.path))))  # the headline's own numbers, each with its n
    return 0


def _bench_setup(args, presets: dict):
    """(BenchSetup, the preset's sections): the preset, then --config's sections, then the flags."""
    from .bench.config import FLAG_PREFIX, SECTIONS, BenchSetup, merge_sections
    preset = presets[args.preset]
    merged = merge_sections(preset, _sections(args))
    values = {name: (_model_config(args, merged.get(name)) if name == "model" else
                     config_from_args(cls, args, merged.get(name), prefix=FLAG_PREFIX.get(name, "")))
              for name, cls in SECTIONS.items()}
    return BenchSetup(**values), preset


def _add_bench_args(p) -> None:
    from .bench.arms import ARMS
    from .bench.config import FLAG_PREFIX, NOT_FLAGS, SECTIONS
    for name, cls in SECTIONS.items():
        add_config_args(p, cls, prefix=FLAG_PREFIX.get(name, ""), title=f"{name} section",
                        exclude=NOT_FLAGS.get(name, ()))
    arms = next(a for a in p._actions if a.dest == "arms")
    arms.help = f"arms to run: {ARMS.help()} (dense and ticket are required; default: dense,ticket,reinit)"


def cmd_report(args) -> int:
    from .bench.report import compare, load_results, markdown_table, write_report
    if args.output:
        check_output_file(args.output)
    if len(args.run_dirs) == 1 and not args.output and (Path(args.run_dirs[0]) / "ablation.csv").is_file():
        from .ablate import rerender
        rerender(args.run_dirs[0])  # an ablation grid: tables.md and figures from its ablation.csv
        _say(f"wrote {Path(args.run_dirs[0]) / 'tables.md'}")
        return 0
    if len(args.run_dirs) == 1 and not args.output:
        write_report(load_results(args.run_dirs[0]), args.run_dirs[0])
        _say(f"wrote {Path(args.run_dirs[0]) / 'report.md'}")
        return 0
    table = markdown_table(compare(args.run_dirs))
    if args.output:  # several runs (e.g. seeds): their frontier, averaged per arm, next to the table
        from .bench.frontier import frontier_section
        from .runs import atomic_write_text
        stem = Path(args.output).stem
        frontier = frontier_section([load_results(d) for d in args.run_dirs], Path(args.output).parent,
                                    markdown_table, f"{stem}_frontier")
        atomic_write_text(Path(args.output), table + "\n\n" + "\n".join(frontier))
        _say(f"wrote {args.output}")
    else:
        print(table)
    return 0


def cmd_ablate(args) -> int:
    from .ablate import PRESETS, AblateConfig, Launcher, run_grid
    from .bench.config import merge_sections
    setup, preset = _bench_setup(args, PRESETS)
    axes = config_from_args(AblateConfig, args, merge_sections(preset, _sections(args))["axes"], prefix="grid-")
    check_preset_data("ablate", args.preset, preset.get("data", {}).get("data"), setup.data)
    check_device_settings(_setup(args), setup.train.precision, setup.train.cuda_graphs)  # even when jobs run elsewhere
    seeds = resolve_seeds(args, setup.seed)
    launcher = Launcher(args.launcher, cluster=args.cluster, timeout_min=args.timeout_min,
                        gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job, partition=args.partition)
    df, grid_dir = run_grid(axes, setup, args.out, launcher, args.device, args.preset, _say, seeds=seeds)
    failed = int((df["status"] != "ok").sum())
    _say(f"tables: {grid_dir / 'tables.md'}; {len(df)} rows, {failed} failed")
    print(json.dumps({"grid_dir": str(grid_dir), "rows": len(df), "failed": failed}))
    return 0


def cmd_locality(args) -> int:
    from .locality import PRESETS, TRAIN_DEFAULTS, LocalityConfig, run_locality
    device = _setup(args)
    preset, sec = PRESETS[args.preset], _sections(args)
    merged = {k: {**preset.get(k, {}), **sec.get(k, {})} for k in ("data", "model", "locality")}
    merged["train"] = {**TRAIN_DEFAULTS, **preset.get("train", {}), **sec.get("train", {})}
    data_cfg = config_from_args(DataConfig, args, merged["data"])
    model_cfg = _model_config(args, merged["model"])
    train_cfg = config_from_args(TrainConfig, args, merged["train"])
    loc = config_from_args(LocalityConfig, args, merged["locality"])
    check_preset_data("locality", args.preset, preset.get("data", {}).get("data"), data_cfg)
    if model_cfg.model != "fcn":
        raise UsageError(f"locality analyses the fully connected network: --model must be fcn, not {model_cfg.model}")
    check_device_settings(device, train_cfg.precision, train_cfg.cuda_graphs, train_cfg.compile)
    results, run = run_locality(data_cfg, model_cfg, train_cfg, loc, device, args.out, preset=args.preset, log=_say)
    _say(f"report: {run.file('report.md')}")
    best = results["rounds"][results["best_round"]]
    print(json.dumps({"run_dir": str(run.path), "rounds": len(results["rounds"]) - 1,
                      "best_round": results["best_round"], "val_acc": best["val_acc"],
                      "locality_sc": round(best["locality_sc"], 4), "locality_dc": round(best["locality_dc"], 4)}))
    return 0


def _experiment_configs(args, presets: dict, train_defaults: dict, sections: tuple) -> dict:
    """Preset, then YAML, then flags: the data and train configs plus the raw merged `sections`."""
    preset, sec = presets[args.preset], _sections(args)
    merged = {k: {**preset.get(k, {}), **sec.get(k, {})} for k in ("data", *sections)}
    merged["train"] = {**train_defaults, **preset.get("train", {}), **sec.get("train", {})}
    return {"data": config_from_args(DataConfig, args, merged["data"]),
            "train": config_from_args(TrainConfig, args, merged["train"]), **{k: merged[k] for k in sections}}


def cmd_lth(args) -> int:
    from .lth import PRESETS, TRAIN_DEFAULTS, LTHConfig, run_lth
    device = _setup(args)
    c = _experiment_configs(args, PRESETS, TRAIN_DEFAULTS, ("lth",))
    check_preset_data("lth", args.preset, PRESETS[args.preset].get("data", {}).get("data"), c["data"])
    cfg = config_from_args(LTHConfig, args, c["lth"])
    check_device_settings(device, c["train"].precision, c["train"].cuda_graphs, c["train"].compile)
    results, run = run_lth(cfg, c["data"], c["train"], device, args.out, preset=args.preset, log=_say)
    _say(f"tables: {run.file('tables.md')}")
    print(json.dumps({"run_dir": str(run.path), "rows": len(results["rows"])}))
    return 0


def cmd_sparsity_sweep(args) -> int:
    from .sweep import FINETUNE_DEFAULTS, PRESETS, SweepConfig, run_sweep
    device = _setup(args)
    c = _experiment_configs(args, PRESETS, FINETUNE_DEFAULTS, ("model", "sweep"))
    check_preset_data("sparsity-sweep", args.preset, PRESETS[args.preset].get("data", {}).get("data"), c["data"])
    model_cfg, cfg = _model_config(args, c["model"]), config_from_args(SweepConfig, args, c["sweep"])
    check_device_settings(device, c["train"].precision, c["train"].cuda_graphs, c["train"].compile)
    results, run = run_sweep(cfg, c["data"], model_cfg, c["train"], device, args.out, preset=args.preset, log=_say)
    _say(f"tables: {run.file('tables.md')}")
    print(json.dumps({"run_dir": str(run.path), "rows": len(results["rows"])}))
    return 0


def cmd_speedrun(args) -> int:
    from .speedrun import PRESETS, SECTIONS as SPEEDRUN_SECTIONS, SpeedrunSetup, headline_lines, run_speedrun
    if args.quick and args.preset not in (None, "quick"):
        raise UsageError(f"--quick is --preset quick; it cannot go with --preset {args.preset}")
    preset_name = "quick" if args.quick else (args.preset or "full")
    device = _setup(args)
    if preset_name == "quick" and not args.threads and device.type == "cpu":
        import torch
        torch.set_num_threads(1)  # the dry run's tiny network: one thread is as fast, and far faster on a busy machine
    preset, sec = PRESETS[preset_name], _sections(args)
    values = {name: (_model_config(args, {**preset.get(name, {}), **sec.get(name, {})}) if name == "model" else
                     config_from_args(cls, args, {**preset.get(name, {}), **sec.get(name, {})}))
              for name, cls in SPEEDRUN_SECTIONS.items()}
    setup = SpeedrunSetup(**values)
    check_device_settings(device, setup.train.precision, setup.train.cuda_graphs, setup.train.compile)
    result, run = run_speedrun(setup, device, args.out, preset=preset_name, progress=args.progress, log=_say)
    print("\n".join(line.replace("**", "") for line in headline_lines(result)))
    _say(f"report: {run.file('report.md')}")
    p = result.main()
    print(json.dumps({"run_dir": str(run.path), "epochs": p.epochs, "train_time_s": round(p.train_time, 3),
                      "search_time_s": round(p.search_time, 3), "ticket": p.ticket and p.ticket["kind"],
                      "final_eval_time_s": round(p.final_eval_time, 3), "n": p.n, "clean": p.clean, **p.accuracy,
                      "worst_case": p.worst_case, "guard_fired": p.guard_fired,
                      "curve": [{"epochs": q.epochs, "train_time_s": round(q.train_time, 3), "robust": q.robust}
                                for q in result.points]}))
    return 0


# ------------------------------------------------------------------------------------------------------
def cmd_data(args) -> int:
    from .data.build import build_exact_subset, check_file, ARCHIVE_NAME, PUBLISHED
    from .data.sources import data_root
    from .shared_data import EXACT_SUBSET_NAME, data_folders, find_data_file, named_data_file
    if args.action == "build":
        out = check_output_file(args.output if args.output else data_root().expanduser() / EXACT_SUBSET_NAME)
        archive = args.archive if args.archive is not None else find_data_file(ARCHIVE_NAME)
        if archive is not None and args.archive is None:
            _say(f"using {archive} (found in the data folders)")
        r = build_exact_subset(archive, out, download_to=data_root().expanduser(),
                               keep_unverified=args.keep_unverified, log=_say)
        print(json.dumps({"output": str(r.output), "sha256": r.sha256, "verified": r.verified,
                          "archive_md5": r.source.archive_md5, "official_batches": len(r.source.official_batches),
                          "shapes": r.shapes}))
        return 0
    # check: the folders in the order they are searched, and every known file's sha256
    _say("data folders, searched in this order (docs/data.md): " + ", ".join(map(str, data_folders())))
    files = [Path(p) for p in args.files] or [named_data_file(n) for n in PUBLISHED]
    rows = [check_file(p) for p in files]
    for r in rows:
        state = ("missing" if not r["exists"] else "no published sha256 for this name" if r["ok"] is None else
                 "ok (the published sha256)" if r["ok"] else
                 "DIFFERS from the published sha256" + (" (its arrays are the published ones)" if r.get("arrays_ok")
                                                       else ""))
        _say(f"{r['path']}: {state}")
    print(json.dumps(rows))
    return 2 if any(r.get("ok") is False and not r.get("arrays_ok") for r in rows) else 0


def cmd_export(args) -> int:
    from .export import export_run
    out = check_output_dir(args.out_dir, "OUT_DIR")
    info = export_run(args.run_dir, out, eval_file=args.eval, trust_factory=args.trust_factory, log=_say)
    ev = info["robustlth"]["evaluation"] or {}
    print(json.dumps({"out_dir": str(out), "clean_acc": info["clean_acc"], "autoattack_acc": info["autoattack_acc"],
                      "n_test_images": ev.get("n_test_images"), "data": ev.get("data")}))
    return 0


# ------------------------------------------------------------------------------------------------------
def _experiment_parser(sub, name: str, help_text: str, presets: dict, cpu_cost: str, classes: tuple, func,
                       description: Optional[str] = None) -> None:
    p = sub.add_parser(name, help=help_text, description=description)
    _common(p)
    p.add_argument("--preset", choices=list(presets), default="cpu",
                   help=f"smoke (seconds, synthetic), cpu (exact CIFAR-10 subset, {cpu_cost}), paper (GPU); "
                        "default: %(default)s")
    for cls in classes:
        add_config_args(p, cls)
    p.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    from .factory import parse_trust_flag
    parser = _Parser(prog="robustlth", description="Boosting lottery tickets for cheaper adversarial training.")
    parser.add_argument("--version", action="version", version=f"robustlth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_CommandParser)

    p = sub.add_parser("models", help="list the model registry with parameter counts")
    p.add_argument("names", nargs="*", help="models to list (default: all)")
    p.add_argument("--width", type=number_in(0, low_open=True), default=1.0, help="width multiplier (default: 1)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("train", help="train a model (natural or adversarial, dense or with --mask TICKET)")
    _common(p)
    _parallel(p)
    p.add_argument("--mask", type=Path, help="ticket file from find-ticket: train that sparse subnetwork from its "
                                             "stored initial weights")
    p.add_argument("--trust-factory", action="extend", type=parse_trust_flag, default=[], metavar="PKG.MOD:FN",
                   help="with --mask: import this model factory when the ticket file names it (a file's factory "
                        "runs only with your word: this flag, or --model naming it); repeatable, comma-separated")
    for cls in (DataConfig, ModelConfig, TrainConfig, AttackConfig):
        add_config_args(p, cls)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained checkpoint against attacks")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="any checkpoint robustlth wrote, or its folder: a train run, a bench arm (runs/bench_*/dense), "
                        "an IMP round, an ablation cell's arm")
    p.add_argument("--attacks", default="pgd20,pgd100,cw,autoattack",
                   help="comma-separated: fgsm, pgdK[xR], cw[K][xR], autoattack, ta-NAME (default: %(default)s)")
    p.add_argument("--n", type=_n_images, default=None,
                   help="the first N of the run's own test images, or all (its whole test set; default: as many as "
                        "the run's final evaluation used, else its whole test set)")
    p.add_argument("--model", help="override (or, for old checkpoints, give) the architecture: registry name or "
                                   "package.module:factory")
    p.add_argument("--width", type=number_in(0, low_open=True), help="override the width multiplier")
    p.add_argument("--trust-factory", action="extend", type=parse_trust_flag, default=[], metavar="PKG.MOD:FN",
                   help="import this model factory when the checkpoint (or its run's config.yaml) names it (a "
                        "file's factory runs only with your word: this flag, or --model); repeatable, comma-separated")
    p.add_argument("--eps", type=number_in(0, 1), default=8 / 255, help="L-inf budget (default: 8/255)")
    p.add_argument("--data", help="override the run's data source (default: the run's own)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress lines")
    p.add_argument("--batch-size", type=int_at_least(1), default=256,
                   help="images per attack batch (default: %(default)s)")
    p.add_argument("--seed", type=int_at_least(0, SEED_MAX), default=0, help="seed of the attacks' random starts")
    p.add_argument("--independent", action="store_true",
                   help="run every attack on all clean-correct points (default: only on points still robust)")
    p.add_argument("--output", help="result JSON path (default: inside the run directory)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--threads", type=int_at_least(1, MAX_THREADS),
                   help=f"torch CPU threads, 1..{MAX_THREADS} (default: torch's choice)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("find-ticket", help="search a (boosting) ticket: train, prune, reset; IMP with --rounds; "
                                           "or a dual ticket with --method rst|rst-iter")
    _common(p)
    _parallel(p)
    for cls in (DataConfig, ModelConfig):
        add_config_args(p, cls)
    add_config_args(p, TrainConfig, prefix="search-", title="search training (defaults: the paper's recipe for "
                                                            "the model: LR 0.01 VGG / 0.05 ResNet-WRN, 20 epochs)")
    add_config_args(p, AttackConfig, prefix="search-", title="search attack (default fgsm)")
    add_config_args(p, PruneConfig)
    from .pruning import RSTConfig
    add_config_args(p, RSTConfig, title="dual ticket (--method rst / rst-iter; default imp: the boosting-ticket "
                                        "or IMP search above); the transformation trains with the search "
                                        "settings, defaults as in the paper (docs/rst.md): LR 1e-3, batch 64, "
                                        "no attack")
    method = next(a for a in p._actions if a.dest == "method")
    method.help = "imp (the default: no transformation), rst (one transformation) or rst-iter (cycles)"
    p.set_defaults(func=cmd_find_ticket)

    from .bench import PRESETS
    p = sub.add_parser("bench", help="ticket pipeline vs dense adversarial training: time and robustness report",
                       description="Flags left out take the preset's value (listed at the end), not the generic "
                                   "defaults shown beside them.",
                       epilog=preset_listing(PRESETS), formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    _parallel(p)
    p.add_argument("--preset", choices=list(PRESETS), default="cpu",
                   help="smoke (CI, seconds), cpu (exact CIFAR-10 subset, 22-35 min on 2 CPU cores with native bf16: "
                        "21.7 measured, more on a loaded machine; use --precision fp32 where bf16 is emulated), gpu "
                        "(one GPU, minutes), paper (GPU, the paper's setting); "
                        "default: %(default)s")
    p.add_argument("--allow-small-data", action="store_true",
                   help="run a full-scale preset (gpu, paper) on fewer training images than it is meant for")
    _add_bench_args(p)
    add_seed_args(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="re-render a benchmark report (or an ablation grid's tables and figures), or "
                                         "compare several benchmark runs")
    p.add_argument("run_dirs", nargs="+", type=Path,
                   help="a bench run directory (runs/bench_*: its report.md is re-rendered from result.json), an "
                        "ablation grid (re-renders tables.md and its figures from ablation.csv), or several bench "
                        "runs to compare")
    p.add_argument("--output", help="write the comparison table (Markdown) here, with the runs' cost-robustness "
                                    "frontier averaged per arm (default: print the table)")
    p.set_defaults(func=cmd_report)

    from .ablate import PRESETS as ABLATE_PRESETS, AblateConfig
    p = sub.add_parser("ablate", help="grid over search LR, pruning ratio, width, search mode/epochs, budgets",
                       description="Flags left out take the preset's value (listed at the end).",
                       epilog=preset_listing(ABLATE_PRESETS), formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--preset", choices=list(ABLATE_PRESETS), default="cpu", help="default: %(default)s")
    p.add_argument("--launcher", choices=["serial", "submitit"], default="serial",
                   help="serial in-process, or one submitit job per search and per cell")
    p.add_argument("--cluster", choices=["local", "slurm", "debug"], default=None,
                   help="submitit executor (default: SLURM if available, else local processes)")
    p.add_argument("--timeout-min", type=int_at_least(1), default=240,
                   help="submitit: minutes a job may run before the cluster stops it (default: %(default)s)")
    p.add_argument("--gpus-per-job", type=int_at_least(0), default=0,
                   help="submitit: GPUs per job (default: %(default)s)")
    p.add_argument("--cpus-per-job", type=int_at_least(1), default=2,
                   help="submitit: CPU cores (and torch threads) per job; on one machine at most cores / this many "
                        "jobs run at once (default: %(default)s)")
    p.add_argument("--partition", help="SLURM partition")
    _add_bench_args(p)
    add_config_args(p, AblateConfig, prefix="grid-", title="grid axes (comma-separated values)")
    add_seed_args(p)
    p.set_defaults(func=cmd_ablate)

    from .pruning import CONTROLS
    p = sub.add_parser("control", help="make a control ticket: random re-init, random pruning, or noise")
    p.add_argument("--ticket", type=Path, required=True, help="ticket file (ticket.pt) from find-ticket")
    p.add_argument("--trust-factory", action="extend", type=parse_trust_flag, default=[], metavar="PKG.MOD:FN",
                   help="import this model factory when the ticket file names it (a file's factory runs only with "
                        "your word); repeatable, comma-separated")
    p.add_argument("--kind", required=True, choices=CONTROLS,
                   help="reinit: same mask, new random initial weights; random_layerwise / random_global: a random "
                        "mask with the ticket's per-layer / overall sparsity, on the ticket's initial weights; noise: "
                        "the ticket's initial weights plus Gaussian noise of --k times each layer's init std "
                        "(docs/lth.md)")
    p.add_argument("--seed", type=int_at_least(0, SEED_MAX), default=1,
                   help="seed of the control's random weights, mask or noise (default: %(default)s)")
    p.add_argument("--k", type=number_in(0), default=0.5,
                   help="--kind noise: noise scale in units of each layer's init std (default: %(default)s)")
    p.add_argument("--output", type=Path, required=True, help="where to write the control ticket file")
    p.set_defaults(func=cmd_control)

    from .locality import PRESETS as LOCALITY_PRESETS, LocalityConfig
    p = sub.add_parser("locality", help="IMP on the FCN and the locality analysis of its first layer "
                                        "(docs/locality.md)")
    _common(p)
    p.add_argument("--preset", choices=list(LOCALITY_PRESETS), default="cpu",
                   help="smoke (seconds, synthetic), cpu (exact CIFAR-10 subset, about 22 minutes on 2 CPU cores), "
                        "paper (the paper's recipe, docs/locality.md; GPU); default: %(default)s")
    for cls in (DataConfig, ModelConfig, TrainConfig, LocalityConfig):
        add_config_args(p, cls)
    p.set_defaults(func=cmd_locality)

    from .lth import PRESETS as LTH_PRESETS, LTHConfig
    _experiment_parser(sub, "lth", "the LTH experiment on Conv-2/4/6 (docs/lth.md): IMP with layer-wise rates, "
                                   "early-stopping iteration and accuracy vs controls, by round",
                       LTH_PRESETS, "about 13 CPU-minutes; 37 min of wall-clock measured on a loaded 2-core machine",
                       (DataConfig, TrainConfig, LTHConfig), cmd_lth,
                       "The LTH experiment on Conv-2/4/6 (docs/lth.md). Training is SGD by default (the presets' "
                       "numbers); the paper's Adam: --optimizer adam --lr 2e-4 (Conv-2) or 3e-4 (Conv-4/6).")
    from .sweep import PRESETS as SWEEP_PRESETS, SweepConfig
    _experiment_parser(sub, "sparsity-sweep", "dense vs IMP ticket vs random ticket vs RST (docs/rst.md) at several "
                                              "sparsities, natural training",
                       SWEEP_PRESETS, "about 7 CPU-minutes; 22 min of wall-clock measured on a loaded 2-core machine",
                       (DataConfig, ModelConfig, TrainConfig, SweepConfig),
                       cmd_sparsity_sweep)
    from .speedrun import PRESETS as SPEEDRUN_PRESETS, SECTIONS as SPEEDRUN_SECTIONS
    p = sub.add_parser("speedrun", help="a robust CIFAR-10 model as fast as robustlth trains one: training seconds "
                                        "against AutoAttack, clean and PGD-50 accuracy; --curve for several budgets",
                       description="The speedrun recipe (README, Speedrun): PreActResNet-18, N-FGSM, one-cycle LR, "
                                   "label smoothing, weight EMA, bf16 + channels_last + CUDA graphs on a GPU. Flags "
                                   "left out take the preset's value (listed at the end).",
                       epilog=preset_listing(SPEEDRUN_PRESETS), formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--preset", choices=list(SPEEDRUN_PRESETS), default=None,
                   help="full (the recipe: full CIFAR-10 from the offline JPEG copy, the exact subset's first 1,000 "
                        "test images for AutoAttack; for a GPU) or quick (a dry run in seconds on any device); "
                        "default: full")
    p.add_argument("--quick", action="store_true", help="the dry run: --preset quick")
    for name, cls in SPEEDRUN_SECTIONS.items():
        add_config_args(p, cls, title=f"{name} section")
    p.set_defaults(func=cmd_speedrun)

    p = sub.add_parser("data", help="build the exact CIFAR-10 subset from the official archive, or check data "
                                    "files against their published sha256 (docs/data.md)")
    data_sub = p.add_subparsers(dest="action", required=True, parser_class=_CommandParser)
    q = data_sub.add_parser("build", help="cifar10_exact_subset.npz from cifar-10-python.tar.gz")
    q.add_argument("--archive", type=Path,
                   help="the official cifar-10-python.tar.gz (or its extracted cifar-10-batches-py folder); default: "
                        "the one in the data folders, else downloaded (163 MB, md5-checked) into the data folder")
    q.add_argument("--output", type=Path,
                   help="where to write the subset (default: the data folder, $ROBUSTLTH_DATA or ~/.cache/robustlth, "
                        "where presets look first)")
    q.add_argument("--keep-unverified", action="store_true",
                   help="keep the file even when it is not the published subset (sha256 and arrays differ); by "
                        "default such a file is not written")
    q = data_sub.add_parser("check", help="the data folders in search order, and each data file's sha256 against "
                                          "the published one")
    q.add_argument("files", nargs="*", help="files to check (default: cifar10_exact_subset.npz and cifar10_jpeg.npz "
                                            "where the data-finding rule finds them)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("export", help="a trained run as a RobustBench-style folder: model.pt (plain state dict), "
                                      "model_info.json, load.py")
    p.add_argument("run_dir", type=Path, help="a train run (runs/train_*) or bench arm (runs/arm-*_*) directory, or "
                                              "its checkpoint.pt")
    p.add_argument("out_dir", type=Path, help="folder to write model.pt, model_info.json and load.py into")
    p.add_argument("--eval", type=Path, help="the evaluation (eval_*.json from robustlth eval) whose accuracies to "
                                             "report (default: AutoAttack alone on the most images, else the largest "
                                             "evaluation beside the checkpoint, else a bench arm's final evaluation)")
    p.add_argument("--trust-factory", action="extend", type=parse_trust_flag, default=[], metavar="PKG.MOD:FN",
                   help="import this model factory when the checkpoint names it (a file's factory runs only with "
                        "your word); repeatable, comma-separated")
    p.set_defaults(func=cmd_export)

    for name, secs in SECTIONS.items():  # --config's help names the sections that command reads
        config = next(a for a in sub.choices[name]._actions if a.dest == "config")
        config.help = f"YAML file with the sections {', '.join(secs)} (any other is an error); flags override it"
    return parser


def preset_listing(presets: dict) -> str:
    """Every preset's values, for --help."""
    lines = ["presets (section: values):"]
    for name, sections in presets.items():
        lines.append(f"  {name}:")
        for sec, values in sections.items():
            text = ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                             for k, v in values.items())
            lines.append(f"    {sec}: {text}")
    return "\n".join(lines)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (RobustLTHError, OSError) as e:  # bad input or a bad file; anything else is a bug: a traceback
        print(f"robustlth {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robustlth {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
