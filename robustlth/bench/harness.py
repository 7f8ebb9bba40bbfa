"""`robustlth bench`: the ticket pipeline against dense PGD adversarial training, same data, model, seed and
device, one arm after another. Every arm and the ticket search are stages on disk, so an interrupted benchmark
resumes at the arm and epoch where it stopped.

Under torchrun (a `RunContext` of several processes) every process trains each arm data-parallel and
evaluates its share of the final test images; only the primary process writes (run directories, arm.json,
results.json, the report), and its wall-clock times are the ones recorded."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import AttackConfig, ConfigError, DataConfig, ModelConfig, PruneConfig, TrainConfig, config_hash
from ..data import Dataset, as_float, load_dataset
from ..evaluate import evaluate_robustness
from ..models import build_model
from ..models.shrink import count_macs
from ..pruning import (TRANSFORM_DEFAULTS, RSTConfig, SearchSpec, default_search_lr, find_ticket, make_control,
                       retrain_schedule, ticket_model)
from ..progress import tee_log
from ..errors import UsageError
from ..runs import RunDir, environment
from ..training import RunContext, seed_everything, train
from ..training.checkpoint import describe_run
from .config import MIN_TRAIN_IMAGES, BenchConfig
from .metrics import final_metrics

Log = Optional[Callable[[str], None]]
STRUCTURED_ARMS = ("structured", "structured_fast")  # shrunk dense models: every step is cheaper
FAST_TICKET_ARMS = ("ticket_fast", "structured_fast")  # tickets retrained with single-step AT


def bench_hash(bench: BenchConfig, data: DataConfig, model: ModelConfig) -> str:
    return config_hash("bench", {"bench": bench, "data": data, "model": model})


def _train_cfg(b: BenchConfig, epochs: int, **changes) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=b.batch_size, lr=b.lr, weight_decay=b.weight_decay,
                       eval_n=b.eval_n, eval_steps=_eval_steps(b), precision=b.precision,
                       channels_last=b.channels_last, cuda_graphs=b.cuda_graphs, seed=b.seed).replace(**changes)


def _eval_steps(b: BenchConfig) -> int:
    """Per-epoch PGD-20 for adversarial retraining; natural retraining is judged by clean accuracy only."""
    return 20 if b.train_attack != "none" else 0


def _search_spec(b: BenchConfig, data_cfg: DataConfig, model_cfg: ModelConfig, lr: float) -> SearchSpec:
    return SearchSpec(data=data_cfg, model=model_cfg,
                      search=TrainConfig(epochs=b.search_epochs, lr=lr, batch_size=b.batch_size,
                                         weight_decay=b.weight_decay, eval_n=b.eval_n, eval_steps=0,
                                         precision=b.precision, channels_last=b.channels_last,
                                         cuda_graphs=b.cuda_graphs, seed=b.seed),
                      attack=AttackConfig(attack=b.search_attack, eps=b.eps, attack_steps=b.attack_steps),
                      prune=PruneConfig(strategy=b.strategy, ratio=b.ratio))


def search_ticket(b: BenchConfig, data_cfg: DataConfig, model_cfg: ModelConfig, lr: float, data: Dataset,
                  device: torch.device, root: Path, log: Log, progress: bool = False,
                  ctx: Optional[RunContext] = None):
    return find_ticket(_search_spec(b, data_cfg, model_cfg, lr), device, root, data=data, log=log,
                       progress=progress, ctx=ctx)[0]


def rst_ticket(b: BenchConfig, data_cfg: DataConfig, model_cfg: ModelConfig, data: Dataset, device: torch.device,
               root: Path, log: Log, ctx: Optional[RunContext] = None):
    """A random ticket at the bench's ratio, transformed by RST (natural training, SPEC 3's recipe)."""
    spec = SearchSpec(data=data_cfg, model=model_cfg,
                      search=TrainConfig(**{**TRANSFORM_DEFAULTS, "eval_n": b.eval_n, "precision": b.precision,
                                            "channels_last": b.channels_last, "cuda_graphs": b.cuda_graphs,
                                            "seed": b.seed}),
                      attack=AttackConfig(), prune=PruneConfig(ratio=b.ratio, prune_seed=b.seed),
                      rst=RSTConfig(iterations=b.rst_iterations))
    return find_ticket(spec, device, root, data=data, log=log, ctx=ctx)[0]


def _structured_setup(b: BenchConfig, data_cfg, model_cfg, lr: float, ticket, search_root: Path):
    """(shrunk model at θ0, its selection time): channels ranked on the searched network the unstructured
    ticket came from (the same search, so its cost is counted once per arm like the ticket's)."""
    from ..pruning.structured import shrunk_model, structured_ticket
    from ..safety import safe_torch_load
    spec = _search_spec(b, data_cfg, model_cfg, lr)
    searched = build_model(model_cfg.model, model_cfg.width)
    ckpt = search_root / f"search_{spec.training_hash()}" / "checkpoint.pt"
    searched.load_state_dict(safe_torch_load(ckpt, "search checkpoint")["model"])
    t0 = time.perf_counter()
    st = structured_ticket(searched, ticket.state_dict, ticket.meta, b.structured_keep, b.structured_criterion,
                           b.structured_scope, b.structured_floor)
    model = shrunk_model(st)
    return model, time.perf_counter() - t0


def _arm_setup(arm: str, b: BenchConfig, data_cfg, model_cfg, data, ctx: RunContext, search_root: Path, log: Log,
               progress: bool = False):
    """(model, mask, search_time, train config, attack config) for one arm."""
    arm_attack = AttackConfig(attack=b.train_attack, eps=b.eps, attack_steps=b.attack_steps)
    fast = AttackConfig(attack=b.fast_at_attack, eps=b.eps)  # single-step; the trainer's guard is on for it
    search_lr = b.search_lr if b.search_lr is not None else default_search_lr(model_cfg.model)
    if arm in ("dense", "fast_at"):
        seed_everything(b.seed)  # the same θ0 as the ticket search
        model = build_model(model_cfg.model, model_cfg.width, data.spec)
        if arm == "dense":
            return model, None, 0.0, _train_cfg(b, b.dense_epochs), arm_attack
        return model, None, 0.0, _train_cfg(b, b.fast_at_epochs or b.ticket_epochs, schedule="onecycle"), fast
    if arm == "rst":
        ticket = rst_ticket(b, data_cfg, model_cfg, data, ctx.device, search_root, log, ctx)
        model = ticket_model(ticket)
        return (model, ticket.full_mask(model), ticket.meta["search_time"],
                retrain_schedule(_train_cfg(b, b.ticket_epochs), ticket.meta), arm_attack)
    lr = b.winning_lr if arm == "winning" else search_lr
    ticket = search_ticket(b, data_cfg, model_cfg, lr, data, ctx.device, search_root, log, progress, ctx)
    search_time = ticket.meta["search_time"]
    # Ticket arms keep the ticket's retraining recipe (warm-up from the search LR); *_fast change only the attack.
    epochs = (b.fast_at_epochs or b.ticket_epochs) if arm in FAST_TICKET_ARMS else b.ticket_epochs
    cfg = retrain_schedule(_train_cfg(b, epochs), ticket.meta)
    attack = fast if arm in FAST_TICKET_ARMS else arm_attack
    if arm in STRUCTURED_ARMS:
        model, select_time = _structured_setup(b, data_cfg, model_cfg, lr, ticket, Path(search_root))
        return model, None, search_time + select_time, cfg, attack
    if arm == "reinit":
        ticket = make_control(ticket, "reinit", seed=b.seed + 1)
    elif arm == "random_prune":  # global random pruning at the same sparsity needs no search
        ticket, search_time = make_control(ticket, "random_global", seed=b.seed + 1), 0.0
    model = ticket_model(ticket)
    return model, ticket.full_mask(model), search_time, cfg, attack


def run_arm(arm: str, b: BenchConfig, data_cfg, model_cfg, data: Dataset, device, root: Path, search_root: Path,
            progress: bool = False, log: Log = None, ctx: Optional[RunContext] = None) -> dict:
    """Train and evaluate one arm in `root/arm` (searches in `search_root`); done arms load from disk.

    Under data parallelism every process returns the primary's arm.json (its times)."""
    ctx = ctx if ctx is not None else RunContext(device)
    done = Path(root) / arm / "arm.json"
    if done.exists():  # written after the arm's last collective, so every process sees the same here
        return RunDir(done.parent).read_json(done.name)
    arm_run = ctx.open_dir(done.parent)
    with ctx.hold(arm_run):
        out = _run_arm(arm_run, arm, b, data_cfg, model_cfg, data, ctx, search_root, progress,
                       log if ctx.is_primary else None)
        if ctx.is_primary:
            arm_run.write_json("arm.json", out)
        ctx.barrier()
    return out if ctx.is_primary else arm_run.read_json("arm.json")


def _run_arm(arm_run: RunDir, arm: str, b: BenchConfig, data_cfg, model_cfg, data, ctx: RunContext, search_root,
             progress, log) -> dict:
    if log:
        log(f"--- arm {arm} ---")
    model, mask, search_time, cfg, attack = _arm_setup(arm, b, data_cfg, model_cfg, data, ctx, search_root, log,
                                                       progress)
    describe = describe_run(model_cfg.model, model_cfg.width, data_cfg.to_dict(), eval_n=b.final_n,
                            kind=f"bench arm {arm}")
    result = train(model, data, cfg, attack, ctx=ctx.with_run_dir(arm_run), mask=mask, augment=data_cfg.augment,
                   progress=progress, log=log, describe=describe)
    final = None
    if b.final_attacks:
        x, y = as_float(data.test, ctx.device, b.final_n)
        limits = {"autoattack": b.autoattack_n} if (b.autoattack_n and "autoattack" in b.final_attacks) else None
        final = evaluate_robustness(model, x, y, b.final_attacks, eps=b.eps, batch_size=b.eval_batch_size, seed=b.seed,
                                    precision=result.settings["precision"], limits=limits, log=log,
                                    progress=progress and ctx.is_primary, ctx=ctx if ctx.distributed else None)
    curve = [{"epoch": r["epoch"], "wall_clock": search_time + r["train_time"], "clean": r["eval_clean"],
              "pgd20": r.get("eval_pgd"), "loss": r["loss"], "eval_loss": r["eval_loss"]} for r in result.history if not r.get("rolled_back")]
    out = {"arm": arm, "search_time": search_time, "train_time": result.train_time,
           "total_time": search_time + result.train_time, "eval_time": result.eval_time, "epochs": cfg.epochs,
           "stopped": result.stopped, "eval_split": result.eval_split, "sparsity": _sparsity(mask, model),
           "architecture": getattr(model, "architecture", None), "macs": count_macs(model),
           "settings": result.settings,
           "train_config": cfg.to_dict(), "curve": curve, "final": final}
    return out


def _sparsity(mask, model) -> float:
    if not mask:
        return 0.0
    from ..pruning import count, prunable_weights
    remaining, total = count({n: mask[n] for n in prunable_weights(model)})
    return 1 - remaining / total


def time_to_target(curve: list[dict], target: float, key: str = "pgd20") -> Optional[float]:
    for point in curve:
        if point[key] is not None and point[key] >= target:
            return point["wall_clock"]
    return None


def headline(arms: dict, b: BenchConfig) -> dict:
    dense, ticket = arms["dense"], arms["ticket"]
    key = "pgd20" if dense["curve"][-1]["pgd20"] is not None else "clean"  # natural retraining: clean
    target = dense["curve"][-1][key] - b.target_tolerance
    ttt = {name: time_to_target(a["curve"], target, key) for name, a in arms.items()}
    h = {"total_time_ratio": ticket["total_time"] / dense["total_time"],
         "target_pgd20": target, "target_split": dense["eval_split"],
         "time_to_target": ttt,
         "time_to_target_ratio": (ttt["ticket"] / dense["total_time"]) if ttt["ticket"] is not None else None,
         # The dense run may itself reach the target long before its budget ends: compare with that too.
         "time_to_target_vs_dense": (ttt["ticket"] / ttt["dense"]) if ttt["ticket"] and ttt["dense"] else None}
    if b.final_attacks:  # an empty list means no final evaluation
        first = b.final_attacks[0]
        d, t = final_metrics(dense["final"]), final_metrics(ticket["final"])
        h.update({"final_clean_diff": t["clean"] - d["clean"], f"final_{first}_diff": t[first] - d[first],
                  "final_worst_case_diff": t["worst_case"] - d["worst_case"]})
    if dense["eval_split"] == "val":  # best epochs chosen on validation data, never on the test set
        h["best_epoch_val"] = {name: max(a["curve"], key=lambda r: r[key] or 0)["epoch"] for name, a in arms.items()}
    return h


def check_data_size(preset: Optional[str], data: Dataset) -> None:
    """A full-scale preset on a few hundred images is a mistake (e.g. the paper preset's 5,000 validation images
    held out of a 5,085-image subset), not a benchmark."""
    need = MIN_TRAIN_IMAGES.get(preset or "")
    if need and len(data.train) < need:
        raise ConfigError(f"the {preset} preset is full scale but would train on {len(data.train)} images (after "
                          f"{0 if data.val is None else len(data.val)} held out for validation; it expects at least "
                          f"{need:,}): use --preset cpu for small data, or --allow-small-data to run it anyway")


def check_world_size(b: BenchConfig, ctx: RunContext) -> None:
    """The global batch is split over the processes; the split must be even."""
    if b.batch_size % ctx.world_size:
        raise UsageError(f"--batch-size {b.batch_size} (the global batch) does not split over {ctx.world_size} "
                         f"processes; use a multiple of {ctx.world_size}")


def run_bench(b: BenchConfig, data_cfg: DataConfig, model_cfg: ModelConfig, device: torch.device,
              root: str | Path = "runs", preset: Optional[str] = None, progress: bool = False,
              log: Log = None, allow_small_data: bool = False,
              ctx: Optional[RunContext] = None) -> tuple[dict, RunDir]:
    """Run (or resume) the benchmark; `ctx` runs it data-parallel (then only the primary process writes and
    logs, and every process returns the same results)."""
    ctx = ctx if ctx is not None else RunContext(device)
    config = {"preset": preset, "bench": b.to_dict(), "data": data_cfg.to_dict(), "model": model_cfg.to_dict()}
    check_world_size(b, ctx)
    data = load_dataset(data_cfg)  # bad data fails before anything is written
    if set(b.arms) & set(STRUCTURED_ARMS):  # so does a model that cannot be shrunk
        from ..models.shrink import channel_groups
        channel_groups(build_model(model_cfg.model, model_cfg.width))
    if not allow_small_data:
        check_data_size(preset, data)
    run = ctx.open_run(root, "bench", bench_hash(b, data_cfg, model_cfg), config, b.seed)
    log = tee_log(log, run.file("run.log")) if ctx.is_primary else None
    if log:
        log(f"benchmark directory: {run.path}" + (f" ({ctx.world_size} processes)" if ctx.distributed else ""))
    with ctx.hold(run):
        arms = {}
        for arm in b.arms:
            arms[arm] = run_arm(arm, b, data_cfg, model_cfg, data, ctx.device, run.path, run.path / "search",
                                progress, log, ctx)
        results = {"config": config, "environment": {**environment(ctx.device), "world_size": ctx.world_size},
                   "headline": headline(arms, b), "arms": arms}
        if ctx.is_primary:
            run.write_json("results.json", results)
            from .report import write_report
            write_report(results, run.path)
        ctx.barrier()
    return results, run
