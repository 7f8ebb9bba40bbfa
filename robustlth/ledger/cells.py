"""A ledger cell: one training of an experiment's plan, fully specified with its seed, and its committed record.

A cell runs as a stage like every other training (a bench arm, `ArmStage`, or a ticket search's dense training,
`SearchTraining`), so it is cached, locked and resumed by `run_stage`. What outlives the machine is the cell's
record: a small JSON file committed under `benchmarks/results/<experiment>/cells/` with the settings, the
stage's result (per-epoch curve, final metrics, per-image verdicts packed), the seconds it took, the device and
the robustlth commit. Checkpoints stay in the cache and are never committed.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..bench.arms import ArmStage
from ..bench.config import BenchSetup
from ..errors import FileFormatError
from ..pruning import SearchTraining
from ..runs import atomic_write_json, read_json
from ..stages import Result, Stage

RECORD_SCHEMA = 1
KINDS = ("arm", "search")


def portable(setup: BenchSetup) -> dict:
    """The setup's non-default settings with every data file named by its file name only: the same cell run
    on a machine that keeps its data elsewhere is the same cell (the file's content is recorded apart)."""
    out = {}
    for name, section in setup.sections().items():
        values = section.non_default()
        for key in ("data", "test_data"):
            if isinstance(values.get(key), str) and ":" in values[key]:
                kind, path = values[key].split(":", 1)
                values[key] = f"{kind}:{Path(path).name}"
        if values:
            out[name] = values
    return out


@dataclass
class Cell:
    """One training of a plan. `kind` "arm": the bench arm `arm` of `setup`; "search": the dense search training
    of that arm's ticket (recorded for its own curve; the arm cells after it reuse it from the cache). `cost` is
    the plan's estimate in its own unit (an epoch of the plan's base model), for the time budget; `tags` label
    the cell for the claims (role, search LR, ratio, width, budget)."""
    name: str
    kind: str
    arm: str
    setup: BenchSetup
    device: str = "cpu"
    cost: float = 1.0
    tags: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"cell kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def seed(self) -> int:
        return self.setup.seed

    def arm_stage(self, data=None) -> ArmStage:
        return ArmStage(self.arm, self.setup, data=data)

    def stage(self, data=None) -> Stage:
        arm = self.arm_stage(data)
        if self.kind == "search":
            return SearchTraining(arm.recipe.search(self.setup), data)
        return arm

    def search_stage(self, data=None) -> Optional[SearchTraining]:
        """The dense search training this cell needs (None: none)."""
        spec = self.arm_stage().recipe.search(self.setup)
        return SearchTraining(spec, data) if spec is not None and spec.rst is None else None

    def cell_id(self) -> str:
        """The hash of what the cell is: a record whose id differs was made by another plan (it is stale)."""
        payload = {"kind": self.kind, "arm": self.arm, "setup": portable(self.setup)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class CellRecord(Result):
    """A finished cell, as committed. `result` is the stage's own result (ArmResult or the search's
    TrainingResult) with per-image verdicts packed; `seconds` and `cpu_seconds` are this machine's for the
    whole cell (a search recomputed for it included; `search_recomputed` says so)."""
    schema: int
    experiment: str
    scale: str
    cell: str
    cell_id: str
    kind: str
    arm: str
    seed: int
    tags: dict
    settings: dict
    stage: str
    result: dict
    seconds: float
    cpu_seconds: float
    load_before: list
    load_after: list
    device: dict
    environment: dict
    data_files: dict
    resumed: bool
    search_recomputed: bool
    finished_utc: str


# ----------------------------------------------------------------------------------------------------
# Per-image verdicts: "0101..." strings in stage results, base64 of packed bits in records.

def pack_verdicts(flags: str) -> str:
    bits = np.frombuffer(flags.encode(), dtype=np.uint8) - ord("0")
    return f"b64:{len(bits)}:" + base64.b64encode(np.packbits(bits).tobytes()).decode()


def unpack_verdicts(text: str) -> np.ndarray:
    """The per-image booleans of a packed (or plain 0/1) verdict string."""
    if not text.startswith("b64:"):
        return np.frombuffer(text.encode(), dtype=np.uint8) == ord("1")
    _, n, data = text.split(":", 2)
    return np.unpackbits(np.frombuffer(base64.b64decode(data), dtype=np.uint8))[:int(n)].astype(bool)


def compact(value: Any) -> Any:
    """The stage result with every per-image verdict string (under a `flags` or `eval_flags` key: the final
    evaluation's and each epoch's) packed, about 8x smaller."""
    if isinstance(value, list):
        return [compact(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        if k in ("flags", "eval_flags") and isinstance(v, dict):
            out[k] = {n: pack_verdicts(f) if isinstance(f, str) and not f.startswith("b64:") else f
                      for n, f in v.items()}
        else:
            out[k] = compact(v)
    return out


# ----------------------------------------------------------------------------------------------------
# Records on disk.

def record_path(folder: Path, cell_name: str) -> Path:
    return Path(folder) / "cells" / f"{cell_name}.json"


def write_record(folder: Path, record: CellRecord) -> Path:
    path = record_path(folder, record.cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record.to_dict())
    return path


def load_records(folder: Path) -> dict[str, CellRecord]:
    """Every committed record of an experiment folder, by cell name; a damaged file is one clear error."""
    out = {}
    cells = Path(folder) / "cells"
    for path in sorted(cells.glob("*.json")) if cells.is_dir() else []:
        record = CellRecord.from_dict(read_json(path), str(path))
        if record.cell != path.stem:
            raise FileFormatError(f"{path}: holds cell {record.cell!r}, not {path.stem!r}")
        out[record.cell] = record
    return out


def metric(record: CellRecord, what: str) -> Optional[float]:
    """A number of a record: `epoch{k}_{clean|pgd20}` (the per-epoch validation curve), `test_clean`,
    `test_{attack}`, `test_worst_case...`, or a time (`total_time`, `search_time`, `train_time`, `seconds`)."""
    r = record.result
    if what == "seconds":
        return record.seconds
    if what in r and not isinstance(r[what], (dict, list)):
        return r[what]
    if what.startswith("test_"):
        final, key = r.get("final") or {}, what[5:]
        if key in final and not isinstance(final[key], (dict, list)):
            return final[key]
        return next((a["robust_after"] for a in final.get("attacks", []) if a["name"] == key), None)
    if what.startswith("epoch"):
        when, name = what[5:].split("_", 1)
        curve = r.get("curve") or [{"clean": h.get("eval_clean"), "pgd20": h.get("eval_pgd")}
                                   for h in r.get("history", []) if not h.get("rolled_back")]
        k = int(when)
        return curve[k - 1].get(name) if len(curve) >= k else None
    raise KeyError(f"unknown metric {what!r}")


def curve(record: CellRecord, name: str = "clean") -> list[float]:
    """The per-epoch validation values of an arm (its `curve`) or of a search training (its `history`)."""
    r = record.result
    if "curve" in r:
        return [p.get(name) for p in r["curve"]]
    key = {"clean": "eval_clean", "pgd20": "eval_pgd"}[name]
    return [h.get(key) for h in r.get("history", []) if not h.get("rolled_back")]


def describe(cells: list[Cell], records: dict[str, CellRecord]) -> dict[str, Any]:
    """Counts for a status line: done, stale (the plan changed since), pending by device."""
    done = [c for c in cells if c.name in records and records[c.name].cell_id == c.cell_id()]
    stale = [c for c in cells if c.name in records and records[c.name].cell_id != c.cell_id()]
    pending = [c for c in cells if c not in done]
    by_device: dict[str, int] = {}
    for c in pending:
        by_device[c.device] = by_device.get(c.device, 0) + 1
    return {"cells": len(cells), "done": len(done), "stale": len(stale), "pending": by_device,
            "pending_cost": sum(c.cost for c in pending)}
