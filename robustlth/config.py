"""Typed hyperparameters.

Each group of hyperparameters is a frozen dataclass validated on construction. The same field
definitions drive YAML loading/saving, command-line flags and run hashing, so a new field is added in
exactly one place.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Tuple

import yaml

from .datasets import DATASET_SPECS
from .errors import ConfigError  # noqa: F401  (re-exported; defined with the other error types)
from .optim import LOSSES, OPTIMIZERS
from .registry import Registry

# Bump when the meaning of a hyperparameter changes, so old run directories are not reused by mistake.
# 2: the LR is scaled linearly from a reference batch of 128; precision, channels_last and CUDA graphs are
#    chosen per device unless given.
# 3: every experiment runs as stages (robustlth.stages) keyed by the sections each one uses, with one done
#    marker (result.json); runs of schema 2 are not reused (their directories stay readable as they are).
SCHEMA_VERSION = 3

# The largest seed a flag or list of seeds takes: numpy's legacy seeding takes [0, 2**32 - 1], torch up to
# 2**64 - 1, so every seed in this range works with both (and seed arithmetic such as seed + rank stays in range).
SEED_MAX = 2**32 - 1


def _check(cond: bool, name: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"invalid {name}={value!r}: expected {allowed}")


def _choice(name: str, value: Any, options: typing.Iterable[str]) -> None:
    options = list(options)
    _check(value in options, name, value, "one of " + ", ".join(options))


@dataclass(frozen=True)
class Config:
    """Base class: validation hook, dict/YAML conversion, non-default view for hashing."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            # Types first (YAML can hold anything), so validate() compares numbers with numbers.
            object.__setattr__(self, f.name, _typed(f.name, getattr(self, f.name), hints[f.name]))
        self.validate()

    def validate(self) -> None:  # overridden
        pass

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def identity(self) -> dict:
        """What makes a run with this config distinct (hashed into run directory names)."""
        return self.non_default()

    def non_default(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != _default(f):
                out[f.name] = _plain(value)
        return out

    @classmethod
    def from_dict(cls, d: Optional[dict]):
        if d is not None and not isinstance(d, dict):
            raise ConfigError(f"{cls.__name__} values must be a mapping of field: value, got {d!r}")
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in set(d) - known)  # YAML keys may be numbers, booleans or none
        if unknown:
            raise ConfigError(
                f"unknown field(s) {', '.join(unknown)} for {cls.__name__}; known: {', '.join(sorted(known))}")
        return cls(**d)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


# Annotation -> (test, what the message calls it). bool is an int in Python, so int and float exclude it.
_TYPES = {bool: (lambda v: isinstance(v, bool), "true or false"),
          int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
          float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
                  "a finite number"),
          str: (lambda v: isinstance(v, str), "a string")}


INT_MAX = 2**63 - 1  # integers are 64-bit where they meet torch and numpy; a larger one is a typo, not a count


def _is_seed(name: str) -> bool:
    return name in ("seed", "seeds") or name.endswith("_seed")


def _scalar(name: str, value: Any, tp: Any) -> Any:
    test, word = _TYPES.get(tp, (lambda v: True, ""))  # other annotations are left to validate()
    _check(test(value), name, value, word)
    if tp is int and _is_seed(name):  # every seed works with both numpy's and torch's seeding
        _check(0 <= value <= SEED_MAX, name, value, f"an integer in [0, {SEED_MAX}] (2**32-1)")
    elif tp is int:
        _check(-INT_MAX - 1 <= value <= INT_MAX, name, value, "a 64-bit integer")
    return value


def _typed(name: str, value: Any, tp: Any) -> Any:
    """`value` checked against the field annotation; lists become tuples (YAML gives lists, configs are hashable)."""
    base, optional = _base_type(tp)
    if typing.get_origin(base) is tuple:
        elem = typing.get_args(base)[0]
        word = _TYPES.get(elem, (None, "a value"))[1]
        _check(isinstance(value, (list, tuple)), name, value, f"a list, each item {word}")
        items = tuple(_scalar(name, v, elem) for v in value)
        _check(all(not (isinstance(v, str) and not v.strip()) for v in items), name, _plain(items),
               f"a list without empty items, each item {word}")
        twice = _repeated(items)
        _check(twice is None, name, _plain(items), f"a list of distinct items ({twice!r} is given twice)")
        return items
    if value is None:
        _check(optional, name, value, _TYPES.get(base, (None, "a value"))[1])
        return None
    return _scalar(name, value, base)


def _repeated(items: typing.Iterable) -> Any:
    """The first item that occurs twice in `items`, or None."""
    seen: list = []
    for v in items:
        if v in seen:
            return v
        seen.append(v)
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------------
# The hyperparameter groups.

# Names come from registries: datasets (robustlth.datasets, a leaf module), training attacks (robustlth.attacks)
# and pruning strategies (robustlth.pruning.strategies). The last two import torch, so they are read when a
# config is validated or its flags are described, never when this module is imported.

def _training_attacks() -> Registry:
    from .attacks import TRAINING_ATTACKS
    return TRAINING_ATTACKS


def _strategies() -> Registry:
    from .pruning.strategies import STRATEGIES
    return STRATEGIES


class _Help:
    """A help text that lists a registry's names, written when the flags are described (`{names}` in `text`)."""

    def __init__(self, text: str, registry: typing.Callable[[], Registry]):
        self.text, self.registry = text, registry

    def __str__(self) -> str:
        return self.text.format(names=self.registry().help())


DATA_HELP = _Help("{names} (torchvision download to $ROBUSTLTH_DATA or ~/.cache/robustlth), npz:PATH (uint8 "
                  "NHWC arrays x_train,y_train,x_test,y_test), cifar10-jpeg:PATH (JPEG-bytes copy), or synthetic",
                  lambda: DATASET_SPECS)


@dataclass(frozen=True)
class DataConfig(Config):
    data: str = field(default="cifar10", metadata={"help": DATA_HELP})
    n_train: Optional[int] = field(default=None, metadata={"help": "class-balanced subset of the training images"})
    n_test: Optional[int] = field(default=None, metadata={"help": "class-balanced subset of the test images"})
    val_size: int = field(default=0, metadata={"help": "images held out from train as a validation split"})
    data_seed: int = field(default=0, metadata={"help": "seed for subsetting and the validation split"})
    augment: bool = field(default=True, metadata={"help": "random crop (pad 4) and horizontal flip"})
    dataset: str = field(default="auto", metadata={
        "help": _Help("what the images are, for class count, normalisation and flips: auto (the source's own; "
                      "cifar10 for synthetic and files), {names}, or custom (classes from the labels, mean/std from "
                      "the training images)", lambda: DATASET_SPECS)})
    flips: Optional[bool] = field(default=None, metadata={
        "help": "horizontal flips in augmentation (default: the dataset's choice; off for svhn)"})
    test_data: Optional[str] = field(default=None, metadata={
        "help": "a second source (npz:PATH or cifar10-jpeg:PATH) whose test split replaces the first's, e.g. the "
                "exact CIFAR-10 subset's bit-exact test images while training on the JPEG copy"})

    def validate(self) -> None:
        src = self.data
        _choice("dataset", self.dataset, ("auto", *DATASET_SPECS, "custom"))
        _check(self.dataset in ("auto", src) or src not in DATASET_SPECS, "dataset", self.dataset,
               f"auto or {src} for --data {src}")
        ok = src in DATASET_SPECS or src == "synthetic" or _source_file(src) is not None
        _check(ok, "data", src, f"{DATASET_SPECS.help()}, synthetic, npz:PATH or cifar10-jpeg:PATH")
        t = self.test_data
        _check(t is None or _source_file(t) is not None, "test_data", t, "npz:PATH or cifar10-jpeg:PATH")
        for name in ("n_train", "n_test"):
            v = getattr(self, name)
            _check(v is None or v > 0, name, v, "a positive integer or none")
        _check(self.val_size >= 0, "val_size", self.val_size, "an integer >= 0")
        _check(self.data_seed >= 0, "data_seed", self.data_seed, "an integer >= 0")

    def file(self) -> Optional[Path]:
        """The data file of an npz:/cifar10-jpeg: source (None for downloaded or synthetic data)."""
        return _source_file(self.data)

    def identity(self) -> dict:
        """A data file is identified by its content too: a file replaced at the same path is a new run."""
        from .safety import file_digest
        out = self.non_default()
        for key, path in (("content_sha256", self.file()), ("test_content_sha256", self.test_file())):
            if path is not None:
                if not path.is_file():
                    raise ConfigError(f"data file {path} does not exist")
                out[key] = file_digest(path)
        return out

    def test_file(self) -> Optional[Path]:
        """The data file of the test_data source (None when the test split comes from `data`)."""
        return _source_file(self.test_data) if self.test_data else None


def _source_file(source: str) -> Optional[Path]:
    """The file an npz:PATH or cifar10-jpeg:PATH source names (None for any other source, or an empty path)."""
    kind, _, path = source.partition(":")
    return Path(path).expanduser() if kind in ("npz", "cifar10-jpeg") and path else None


@dataclass(frozen=True)
class ModelConfig(Config):
    model: str = field(default="vgg16", metadata={"help": "architecture name (see `robustlth models`), or package.module:factory for your own nn.Module"})
    width: float = field(default=1.0, metadata={"help": "width multiplier for capacity ablations"})

    def validate(self) -> None:  # the name is checked against the registry by `models.check_model_name`
        _check(isinstance(self.model, str) and bool(self.model), "model", self.model, "an architecture name")
        _check(self.width > 0, "width", self.width, "a positive number")

    def identity(self) -> dict:
        """A user's `package.module:factory` is identified by its source file's content too: an edited
        architecture is a new run, never a resumed one."""
        out = self.non_default()
        from .factory import factory_digest, is_factory_path
        if is_factory_path(self.model):
            out["factory_sha256"] = factory_digest(self.model)
        return out


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("constant", "step", "onecycle")


@dataclass(frozen=True)
class AttackConfig(Config):
    """The attack used to generate training examples (none = natural training)."""
    attack: str = field(default="none", metadata={"help": _Help("training attack: {names}", _training_attacks)})
    eps: float = field(default=8 / 255, metadata={"help": "L-inf pixel budget on [0,1] inputs"})
    attack_steps: int = field(default=10, metadata={"help": "PGD steps"})
    attack_step_size: Optional[float] = field(
        default=None, metadata={"help": "step size; none = method default (pgd eps/4, fgsm eps, "
                                        "fgsm_rs 1.25 eps, nfgsm eps)"})
    attack_model_mode: str = field(default="train", metadata={"help": "model mode while generating: train or eval"})

    def validate(self) -> None:
        _training_attacks().check(self.attack, "attack")
        _check(0.0 <= self.eps <= 1.0, "eps", self.eps, "a pixel budget in [0, 1]")
        _check(isinstance(self.attack_steps, int) and self.attack_steps >= 1, "attack_steps", self.attack_steps,
               "an integer >= 1")
        _check(self.attack_step_size is None or self.attack_step_size > 0, "attack_step_size",
               self.attack_step_size, "a positive number or none")
        _choice("attack_model_mode", self.attack_model_mode, ("train", "eval"))


@dataclass(frozen=True)
class TrainConfig(Config):
    epochs: int = field(default=10, metadata={"help": "epoch budget"})
    batch_size: int = 128
    lr: float = field(default=0.1, metadata={"help": "peak learning rate"})
    momentum: float = 0.9
    weight_decay: float = 1e-4
    optimizer: str = field(default="sgd", metadata={
        "help": "optimiser: " + OPTIMIZERS.help() + " (adam: lr, weight_decay and torch's default betas; momentum "
                "is not used); CUDA graphs capture sgd only, other optimisers run the eager step"})
    loss: str = field(default="ce", metadata={
        "help": "training loss: " + LOSSES.help() + " (the training attack crafts its examples with plain "
                "cross-entropy whatever this is)"})
    label_smoothing: float = field(default=0.0, metadata={"help": "label smoothing of the ce training loss, in [0, 1)"})
    ema: float = field(default=0.0, metadata={
        "help": "decay of an exponential moving average of the weights and BatchNorm statistics, updated every step "
                "(decay of step t: min(ema, (1+t)/(10+t))); per-epoch evaluation, the final model and its "
                "checkpoint are the average; 0: off"})
    schedule: str = field(default="step", metadata={"help": "constant, step (x gamma at milestones) or onecycle"})
    milestones: Tuple[float, ...] = field(default=(0.5, 0.75), metadata={"help": "LR drops as fractions of the budget"})
    gamma: float = 0.1
    warmup_epochs: float = field(default=0, metadata={"help": "linear warm-up from warmup_start_lr to lr"})
    warmup_start_lr: float = 0.0
    eval_n: int = field(default=512, metadata={"help": "images in the fixed per-epoch evaluation subset"})
    eval_steps: int = field(default=20, metadata={"help": "PGD steps of the per-epoch robust evaluation (0: off)"})
    guard: bool = field(default=True, metadata={"help": "catastrophic-overfitting guard for single-step modes"})
    lr_reference_batch: Optional[int] = field(default=128, metadata={
        "help": "lr is the LR at this batch size: it is scaled by batch_size / this, with a warm-up when scaled "
                "up (none: lr as given)"})
    precision: str = field(default="auto", metadata={
        "help": "auto (bf16 on CUDA devices that support it, else fp32), fp32, bf16 or fp16 autocast"})
    channels_last: Optional[bool] = field(default=None, metadata={"help": "channels_last memory format "
                                                                          "(default: on for CUDA)"})
    cuda_graphs: Optional[bool] = field(default=None, metadata={
        "help": "capture the whole training step as a CUDA graph (default: on for CUDA, fp32/bf16, no compile)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})
    seed: int = field(default=0, metadata={"help": "seed for initialisation, batch order and attack noise"})

    def validate(self) -> None:
        _check(isinstance(self.epochs, int) and self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size", self.batch_size,
               "an integer >= 1")
        _check(self.lr > 0, "lr", self.lr, "a positive learning rate")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "a number in [0, 1)")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")
        OPTIMIZERS.check(self.optimizer, "optimizer")
        LOSSES.check(self.loss, "loss")
        _check(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing, "a number in [0, 1)")
        _check(0 <= self.ema < 1, "ema", self.ema, "a decay in [0, 1) (0: no weight average)")
        _choice("schedule", self.schedule, SCHEDULES)
        _check(all(0 < m < 1 for m in self.milestones) and list(self.milestones) == sorted(self.milestones),
               "milestones", self.milestones, "increasing fractions of the budget in (0, 1)")
        _check(0 < self.gamma <= 1, "gamma", self.gamma, "a number in (0, 1]")
        _check(self.warmup_epochs >= 0, "warmup_epochs", self.warmup_epochs, "a number >= 0")
        _check(self.warmup_start_lr >= 0, "warmup_start_lr", self.warmup_start_lr, "a number >= 0")
        _check(self.eval_n >= 1, "eval_n", self.eval_n, "an integer >= 1")
        _check(self.seed >= 0, "seed", self.seed, "an integer >= 0")
        _check(self.eval_steps >= 0, "eval_steps", self.eval_steps, "an integer >= 0")
        _choice("precision", self.precision, PRECISIONS)
        _check(self.lr_reference_batch is None or (isinstance(self.lr_reference_batch, int)
                                                   and self.lr_reference_batch >= 1),
               "lr_reference_batch", self.lr_reference_batch, "an integer >= 1 or none")
        _check(not (self.cuda_graphs and self.compile), "cuda_graphs", self.cuda_graphs,
               "off when compile is on (choose one)")
        _check(not (self.cuda_graphs and self.precision == "fp16"), "cuda_graphs", self.cuda_graphs,
               "off with fp16 (its grad scaler synchronises with the host); use bf16 or fp32")


@dataclass(frozen=True)
class PruneConfig(Config):
    strategy: str = field(default="global_normalized", metadata={"help": _Help("pruning criterion: {names}",
                                                                               _strategies)})
    ratio: float = field(default=0.8, metadata={"help": "fraction of the remaining weights pruned per round"})
    rounds: int = field(default=1, metadata={"help": "IMP rounds (1 = one-shot)"})
    rewind_iteration: int = field(default=0, metadata={"help": "0: reset survivors to the initial weights; "
                                                                   "k: rewind to the weights after k steps"})
    output_rate: Optional[float] = field(default=None, metadata={"help": "layerwise: output layer rate "
                                                                         "(default: half of ratio)"})
    dense_layers: Tuple[str, ...] = field(default=(), metadata={"help": "global/random: parameter names left dense"})
    prune_seed: int = field(default=0, metadata={"help": "seed of the random strategy"})
    allow_empty_layers: bool = field(default=False, metadata={"help": "accept a ticket with a layer pruned to "
                                                                      "nothing (it cannot learn through it)"})

    def validate(self) -> None:
        _strategies().check(self.strategy, "strategy")
        _check(0 <= self.ratio < 1, "ratio", self.ratio, "a pruning ratio in [0, 1)")
        _check(isinstance(self.rounds, int) and self.rounds >= 1, "rounds", self.rounds, "an integer >= 1")
        _check(isinstance(self.rewind_iteration, int) and self.rewind_iteration >= 0, "rewind_iteration",
               self.rewind_iteration, "an integer >= 0")
        _check(self.output_rate is None or 0 <= self.output_rate < 1, "output_rate", self.output_rate,
               "a rate in [0, 1) or none")
        _check(self.prune_seed >= 0, "prune_seed", self.prune_seed, "an integer >= 0")


# ----------------------------------------------------------------------------------------------------
# YAML and command-line mapping.

class _StrictLoader(yaml.SafeLoader):
    """YAML's safe subset, and a key given twice in one mapping is an error (plain YAML keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`, then keys that override it: allowed
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                twice = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key (a list or mapping): the constructor below reports it
                continue
            if twice:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found the key {key!r} twice",
                    key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path, what: str = "config file") -> dict:
    """A YAML file that must hold a mapping: a missing, unreadable, binary or malformed file (or a key given twice,
    or a Python tag) is a ConfigError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a YAML file: it is not UTF-8 text") from None
    try:
        d = yaml.load(text, Loader=_StrictLoader) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML: {e}") from None
    except (ValueError, OverflowError) as e:  # a value the safe constructors cannot build, e.g. a timestamp
        raise ConfigError(f"{what} {path} is not valid YAML: {e}") from None
    except RecursionError:  # the parser recurses once per level of nesting
        raise ConfigError(f"{what} {path} is nested too deeply to be a config") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{what} {path} must hold a mapping, got {type(d).__name__}")
    return d


def check_sections(sections: dict, allowed: typing.Iterable[str], command: str) -> dict:
    """The YAML sections `command` reads; any other section is an error naming it and the allowed ones."""
    allowed = list(allowed)
    unknown = sorted(str(k) for k in sections if k not in allowed)
    if unknown:
        raise ConfigError(f"unknown config section(s) {', '.join(unknown)} for `robustlth {command}`; "
                          f"allowed: {', '.join(allowed)}")
    for name, value in sections.items():
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"config section {name!r} must be a mapping of field: value, got {value!r}")
    return {k: v or {} for k, v in sections.items()}


def dump_yaml(d: dict) -> str:
    return yaml.safe_dump(d, sort_keys=False)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(element type, is_optional) for the annotation kinds the configs use."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])[0], True
    return tp, False


def parse_number(text: str) -> float:
    """A float, or a fraction such as 8/255 (as the help texts print budgets)."""
    num, slash, den = text.partition("/")
    value = float(num) / float(den) if slash else float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


_FLAG_TYPES = {float: parse_number}  # flag text -> value, where the type itself is not the parser


def _parser_for(tp: Any, name: str):
    base, optional = _base_type(tp)
    origin = typing.get_origin(base)

    def parse(text: str):
        if optional and text.lower() in ("none", "null", ""):
            return None
        if origin in (tuple, typing.Tuple):
            return _parse_list(text, name, typing.get_args(base)[0])
        try:
            return _FLAG_TYPES.get(base, base)(text)
        except (ValueError, ZeroDivisionError):
            raise argparse.ArgumentTypeError(f"invalid {name} value {text!r}") from None
    return parse


def _parse_list(text: str, name: str, elem: Any) -> tuple:
    """A comma-separated flag value: '' is the empty list; an empty item (a,,b or a trailing comma) or an item
    given twice is an error, not dropped or kept silently."""
    if not text.strip():
        return ()
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"invalid {name} value {text!r}: an empty item between commas "
                                         "(expected comma-separated values, e.g. a,b)")
    try:
        values = tuple(_FLAG_TYPES.get(elem, elem)(t) for t in items)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"invalid {name} value {text!r}") from None
    twice = _repeated(values)
    if twice is not None:
        raise argparse.ArgumentTypeError(f"invalid {name} value {text!r}: {twice!r} is given twice "
                                         "(expected distinct items)")
    return values


def flag_name(prefix: str, name: str) -> str:
    return "--" + (prefix + name).replace("_", "-")


def add_config_args(parser: argparse.ArgumentParser, cls: type[Config], prefix: str = "",
                    title: Optional[str] = None, exclude: typing.Iterable[str] = ()) -> None:
    """Add one flag per field of `cls` (but `exclude`); flags default to 'not given' so YAML values survive."""
    group = parser.add_argument_group(title or cls.__name__)
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name in exclude:
            continue
        tp = hints[f.name]
        default = _default(f)
        help_text = f.metadata.get("help", "")
        help_text = f"{help_text} (default: {_plain(default)})".strip().replace("%", "%%")
        dest = prefix.replace("-", "_") + f.name
        if _base_type(tp)[0] is bool:
            group.add_argument(flag_name(prefix, f.name), dest=dest, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(flag_name(prefix, f.name), dest=dest, type=_parser_for(tp, f.name),
                               default=argparse.SUPPRESS, metavar=f.name.upper(), help=help_text)


def config_from_args(cls: type[Config], args: argparse.Namespace, base: Optional[dict] = None,
                     prefix: str = ""):
    """Build `cls` from YAML values (`base`) overridden by the flags actually given."""
    values = dict(base or {})
    given = vars(args)
    for f in fields(cls):
        dest = prefix.replace("-", "_") + f.name
        if dest in given:
            values[f.name] = given[dest]
    return cls.from_dict(values)


# ----------------------------------------------------------------------------------------------------
# Hashing.

def config_hash(kind: str, sections: dict[str, Any]) -> str:
    """Stable short hash of the non-default hyperparameters of a run (plus schema version).

    `sections` maps a name to a Config (only its non-default fields count) or to a plain JSON value.
    """
    payload: dict[str, Any] = {"kind": kind, "schema": SCHEMA_VERSION}
    for name in sorted(sections):
        value = sections[name]
        value = value.identity() if isinstance(value, Config) else value
        if value not in ({}, None):
            payload[name] = value
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
