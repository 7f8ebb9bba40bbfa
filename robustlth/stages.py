"""Stages: every unit of experiment work on disk, run by one runner.

A stage is a small typed object: the config sections it depends on (hashed into its directory's name, so two
stages that need the same work share it and a change to a setting a stage does not use never redoes it), a
`run(ctx)` that does the work in its directory and returns a typed `Result`, and one done marker,
`result.json`, written last and atomically. `run_stage` gives every stage the same guarantees:

    hash -> directory -> done? load the result -> check (before anything is written) -> create the directory
    (config.yaml, env.json) -> lock -> run -> commit result.json -> barrier

so an interrupted experiment resumes at the stage (and inside it, at the epoch: training checkpoints live in
the stage's directory) where it stopped; two processes never run one stage at once; under data parallelism
only the primary process writes and every process returns the primary's result.

IMP rounds, RST cycles, ticket searches, bench arms, ablation cells, and the LTH, sparsity-sweep, locality
and claims trainings are all stages.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Optional

from .config import Config, config_hash
from .errors import FileFormatError
from .runs import RunDir, check_record
from .safety import read_json

DONE = "result.json"  # the one done marker: a stage whose directory holds it is finished


# ----------------------------------------------------------------------------------------------------
# Typed results.

@dataclasses.dataclass
class Result:
    """Base of stage results: a dataclass whose field names are its JSON keys, the same in every layer.

    Fields may hold plain JSON values, other `Result`s, or lists / string-keyed dicts of them."""

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Any, where: str = "result"):
        if not isinstance(d, dict):
            raise FileFormatError(f"{where} is not a {cls.__name__} (a JSON object)")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(d))
        if missing:
            raise FileFormatError(f"{where}: {cls.__name__} lacks {', '.join(missing)} (written by another "
                                  "version? delete the stage's directory to run it again)")
        return cls(**{k: _typed(d[k], hints[k], f"{where}.{k}") for k in d if k in names})


def _plain(value: Any) -> Any:
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _result_type(tp: Any) -> Optional[type]:
    return tp if isinstance(tp, type) and issubclass(tp, Result) else None


_JSON_TYPES = {float: ((int, float), "a number"), int: ((int,), "an integer"), str: ((str,), "a string"),
               bool: ((bool,), "true or false"), list: ((list,), "a list"), dict: ((dict,), "an object")}


def _check_type(value: Any, tp: Any, where: str) -> None:
    """A plain field of a result must hold its JSON type (a damaged or hand-edited result.json fails here, with
    the file named, never later inside a report or a headline)."""
    base = typing.get_origin(tp) or tp
    if base not in _JSON_TYPES:
        return
    kinds, text = _JSON_TYPES[base]
    if not isinstance(value, kinds) or (base is not bool and isinstance(value, bool)):
        raise FileFormatError(f"{where} is {type(value).__name__} {_shown(value)}, expected {text} (damaged or "
                              "edited? delete the stage's directory to run it again)")


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _typed(value: Any, tp: Any, where: str) -> Any:
    """Rebuild nested results from their JSON, checking plain values against their annotated type."""
    if value is None:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        inner = [a for a in args if a is not type(None)]
        return _typed(value, inner[0], where) if len(inner) == 1 else value
    if _result_type(tp):
        return tp.from_dict(value, where)
    _check_type(value, tp, where)
    if origin is list and args and _result_type(args[0]):
        return [args[0].from_dict(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict and len(args) == 2 and _result_type(args[1]):
        return {k: args[1].from_dict(v, f"{where}.{k}") for k, v in value.items()}
    return value


# ----------------------------------------------------------------------------------------------------
# Stages.

class Stage(ABC):
    """One unit of work with an identity. Subclasses set `kind` and `result` and implement `sections` and
    `run` (abstract: a stage without them cannot be made); `check` (everything checkable before a file is written) and `name` (the directory name) have
    defaults."""

    kind: ClassVar[str]
    result: ClassVar[type[Result]]

    @abstractmethod
    def sections(self) -> dict[str, Any]:
        """What this stage's work depends on, and nothing else: Configs (their non-default fields count) or
        plain JSON values. Hashed into the directory name."""

    def record(self) -> dict:
        """What config.yaml records (default: every field of every section)."""
        return {k: (v.to_dict() if isinstance(v, Config) else v) for k, v in self.sections().items()}

    @property
    def seed(self) -> Optional[int]:
        return None

    def hash(self) -> str:
        return config_hash(self.kind, self.sections())

    def name(self) -> str:
        return f"{self.kind}_{self.hash()}"

    def path(self, root: str | Path) -> Path:
        return Path(root) / self.name()

    def check(self, ctx) -> None:
        """Refuse bad input with one clear error before the stage's directory exists."""

    @abstractmethod
    def run(self, ctx) -> Result:
        """Do the work in `ctx.run_dir` (created and locked by the runner); return the result."""


def load_result(stage: Stage, path: Path) -> Result:
    return stage.result.from_dict(read_json(path), str(path))


def is_done(stage: Stage, root: str | Path) -> bool:
    return (stage.path(root) / DONE).exists()


def run_stage(stage: Stage, root: str | Path, ctx) -> Result:
    """Run `stage` under `root` (or load its result when it is done); see the module docstring."""
    path = stage.path(root)
    done = path / DONE
    if path.is_dir():  # resume never lies: an edited config.yaml or a damaged env.json is refused (every process)
        check_record(path, stage.record())
    if done.exists():  # written after the stage's last collective, so every process sees the same here
        return load_result(stage, done)
    stage.check(ctx)
    run = ctx.open_run_dir(path, stage.record(), stage.hash(), stage.seed)
    with ctx.hold(run):
        if done.exists():  # finished by another process while this one waited for nothing (no lock wait)
            return load_result(stage, done)
        result = stage.run(ctx.with_run_dir(run))
        if ctx.is_primary:
            run.write_json(DONE, result.to_dict())
        ctx.barrier()
    return result if ctx.is_primary else load_result(stage, done)


def stage_dir(stage: Stage, root: str | Path) -> RunDir:
    """The directory of a stage that has run (to read its artifacts: a ticket, trained weights)."""
    return RunDir(stage.path(root))
