"""The Python API: bring your own architecture to ticket search, PGD training, the benchmark and evaluation.

`model` is anything that builds a fresh network: a registry name ("cnn6"), a `package.module:factory` path, or
the factory itself (a top-level function returning an `nn.Module` that takes [0, 1] images, normalisation
inside; it may take `width=`). A factory rather than a module, so a ticket's initial weights θ0 can be rebuilt.
`data` is a data source as on the command line ("synthetic", "npz:PATH", "cifar10", ...) or a `DataConfig`.

    import robustlth as rl
    ticket = rl.find_ticket(my_net, "npz:cifar.npz", epochs=20)          # FGSM search, 80 % pruning, reset to θ0
    trained = rl.adversarial_train(ticket, "npz:cifar.npz", epochs=40)   # PGD-10 AT with the paper's warm-up
    print(rl.evaluate_model(trained.model, "npz:cifar.npz", attacks=["pgd20", "autoattack"])["worst_case"])

Every call writes a run directory under `out` (default `runs`) exactly as the CLI does, so it resumes after an
interruption and its checkpoint opens with `robustlth eval --checkpoint`. Run directories are keyed by the
configuration and, for a factory, by its source file's content (an edited architecture is a new run).

A factory named by a file (a checkpoint's description, an old run's config.yaml, a ticket's metadata) is code that
file chooses: `load_checkpoint`, `load_ticket` and `adversarial_train` of a ticket read from a file import it
only when `trust_factory=` names it (a name, comma-separated names, the factory itself, or a list of those):

    saved = rl.load_checkpoint("runs/train_<hash>", trust_factory=my_net)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import torch
import torch.nn as nn

from .config import AttackConfig, ConfigError, DataConfig, ModelConfig, PruneConfig, TrainConfig, config_hash
from .data import Dataset, as_float, load_dataset
from .device import resolve_device
from .factory import TrustSpec
from .pruning import SearchSpec, Ticket, search_defaults
from .pipeline import TrainRunResult

ModelSpec = Union[str, Callable[..., nn.Module]]
DataSpec = Union[str, DataConfig]
Log = Optional[Callable[[str], None]]


def model_name(model: ModelSpec) -> str:
    """The name runs record for `model`: a registry name, or `module:function` for a factory."""
    from .factory import factory_path
    name = model if isinstance(model, str) else factory_path(model)
    ModelConfig(model=name)  # one clear error for unknown names and factories that do not import
    return name


def data_config(data: DataSpec) -> DataConfig:
    if isinstance(data, DataConfig):
        return data
    if isinstance(data, str):
        return DataConfig(data=data)
    raise ConfigError(f"data must be a source such as 'npz:PATH' or a DataConfig, not {type(data).__name__}")


def _device(device: Union[str, torch.device]) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(device)


def find_ticket(model: ModelSpec, data: DataSpec, *, width: float = 1.0, ratio: float = 0.8,
                strategy: str = "global_normalized", rounds: int = 1, epochs: Optional[int] = None,
                lr: Optional[float] = None, attack: str = "fgsm", eps: float = 8 / 255, batch_size: int = 128,
                seed: int = 0, device: Union[str, torch.device] = "auto", out: Union[str, Path] = "runs",
                progress: bool = False, log: Log = print, **search: object) -> Ticket:
    """A boosting ticket: `attack` training at a small LR (the paper's recipe: VGG 0.01, ResNet/WRN 0.05, else
    0.01; 20 epochs) for `epochs`, `strategy` pruning by `ratio`, reset to θ0 (IMP with `rounds` > 1). Other
    `search` keywords are TrainConfig fields (e.g. eval_n, precision)."""
    name, dev = model_name(model), _device(device)
    defaults = search_defaults(name)
    train = {**defaults["train"], "batch_size": batch_size, "seed": seed, **search}
    if epochs is not None:
        train["epochs"] = epochs
    if lr is not None:
        train["lr"] = lr
    spec = SearchSpec(data=data_config(data), model=ModelConfig(model=name, width=width),
                      search=TrainConfig.from_dict(train), attack=AttackConfig(attack=attack, eps=eps),
                      prune=PruneConfig(strategy=strategy, ratio=ratio, rounds=rounds))
    from .pruning import find_ticket as search_ticket
    ticket, _ = search_ticket(spec, dev, out, progress=progress, log=log)
    ticket.trusted = ticket.trusted | {name}  # the caller named this model: its ticket builds it without asking
    return ticket


def load_ticket(path: Union[str, Path], trust_factory: TrustSpec = None) -> Ticket:
    """A ticket file (robustlth.pruning's format); a model factory its metadata names must be in `trust_factory`
    (one UsageError otherwise; registry names need nothing). Reading it imports nothing."""
    from .pruning.ticket import check_ticket_factory, load_ticket as read_ticket
    ticket = read_ticket(path, trust_factory=trust_factory)
    check_ticket_factory(ticket, allow="api")
    return ticket


@dataclass
class Trained:
    model: nn.Module  # in eval mode, on the training device
    result: TrainRunResult  # final, train_time, history, ... (the run's result.json)
    run_dir: Path  # holds checkpoint.pt (opens with `robustlth eval --checkpoint`), metrics.jsonl, run.log


def adversarial_train(model: Union[ModelSpec, Ticket], data: DataSpec, *, width: float = 1.0, epochs: int = 40,
                      lr: float = 0.1, attack: str = "pgd", steps: int = 10, eps: float = 8 / 255,
                      batch_size: int = 128, seed: int = 0, warmup: Optional[float] = None,
                      device: Union[str, torch.device] = "auto", out: Union[str, Path] = "runs",
                      progress: bool = False, log: Log = print, trust_factory: TrustSpec = None,
                      **train: object) -> Trained:
    """PGD (or `attack`) adversarial training of a dense model or of a ticket. A ticket trains from its stored
    weights under its mask with the paper's retraining warm-up (linear from the search LR to `lr` over 10
    epochs, a quarter of shorter budgets) unless `warmup` (epochs) is given. Other `train` keywords are
    TrainConfig fields (schedule, milestones, eval_n, precision, ...). A ticket read from a file that names a
    model factory trains only when `trust_factory` (or the `load_ticket` that read it) trusts that factory."""
    from .pipeline import run_train
    from .training import RunContext
    dev, data_cfg = _device(device), data_config(data)
    options = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed, **train}
    if warmup is not None:
        options["warmup_epochs"] = warmup
    cfg = TrainConfig.from_dict(options)
    attack_cfg = AttackConfig(attack=attack, eps=eps, attack_steps=steps)
    ticket = model if isinstance(model, Ticket) else None
    if ticket is not None:  # the ticket fixes the model; its retraining warm-up applies unless `warmup` is given
        from .pruning.ticket import check_ticket_factory
        check_ticket_factory(ticket, trust_factory, allow="api")  # before anything is imported or written
        model_cfg = ModelConfig(model=ticket.meta.model, width=ticket.meta.width)
        ticket_id = ticket.meta.hash or config_hash("mask", {"mask": sorted(ticket.mask)})
    else:
        model_cfg, ticket_id = ModelConfig(model=model_name(model), width=width), None
    result, run, net = run_train(data_cfg, model_cfg, cfg, attack_cfg, RunContext(dev), out, model_given=False,
                                 explicit=frozenset(options) - {"epochs", "lr", "batch_size", "seed"},
                                 progress=progress, log=log, ticket=ticket, ticket_id=ticket_id)
    return Trained(net.eval(), result, run.path)


def evaluate_model(model: nn.Module, data: Union[DataSpec, Dataset], *, attacks: Iterable[str] = ("pgd20", "autoattack"),
             n: Optional[int] = 1000, eps: float = 8 / 255, batch_size: int = 256, seed: int = 0,
             independent: bool = False, device: Union[str, torch.device, None] = None,
             progress: bool = False, log: Log = print) -> dict:
    """Clean accuracy, each attack's cumulative robust accuracy and the per-sample worst case over all attacks
    (`worst_case`, the number to report) on the first `n` test images (None: all). The model is evaluated in
    eval mode on [0, 1] inputs; AutoAttack is the reference `pyautoattack`."""
    from .evaluate import evaluate_robustness
    dataset = data if isinstance(data, Dataset) else load_dataset(data_config(data))
    dev = _device(device) if device is not None else next(model.parameters()).device
    x, y = as_float(dataset.test, dev, n)
    return evaluate_robustness(model.to(dev), x, y, list(attacks), eps=eps, batch_size=batch_size, seed=seed,
                               independent=independent, log=log, progress=progress)


def load_checkpoint(path: Union[str, Path], device: Union[str, torch.device] = "auto",
                    trust_factory: TrustSpec = None):
    """Any checkpoint robustlth wrote (train run, bench arm, IMP round, ablation cell) as a `SavedModel`: the
    model in eval mode, its name, width and the run's data (`.data`) with the size of its final evaluation.
    A model factory the checkpoint names is imported only when `trust_factory` names it (else one UsageError,
    nothing imported); registry models need nothing."""
    from .saved_model import open_checkpoint
    return open_checkpoint(Path(path), _device(device), trust_factory=trust_factory, allow="api")


def run_bench(model: ModelSpec, data: DataSpec, *, width: float = 1.0, preset: Optional[str] = None,
          device: Union[str, torch.device] = "auto", out: Union[str, Path] = "runs", progress: bool = False,
          log: Log = print, **options: object) -> dict:
    """The benchmark (dense PGD AT vs the ticket pipeline, same data, seed and device) for your model: the
    values of `preset` (its sections but data and model; e.g. "smoke") overridden by `options` (fields of the
    bench sections by name: dense_epochs, lr, ratio, final_attacks, ...). Returns the bench's result.json
    content; report.md and the figures are in results['run_dir']."""
    from .bench import PRESETS, BenchSetup
    from .bench import run_bench as run
    from .bench.config import merge_sections
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: expected one of {', '.join(PRESETS)}")
    base = {k: v for k, v in (PRESETS[preset] if preset else {}).items() if k not in ("data", "model")}
    sections = merge_sections(base, {"bench": dict(options)}, {"data": data_config(data).to_dict(),
                                                               "model": {"model": model_name(model), "width": width}})
    results, run_dir = run(BenchSetup.from_sections(sections), _device(device), out, preset=preset,
                           progress=progress, log=log)
    return {**results, "run_dir": str(run_dir.path)}


__all__ = ["Trained", "adversarial_train", "data_config", "evaluate_model", "find_ticket", "load_checkpoint",
           "load_ticket", "model_name", "run_bench"]
