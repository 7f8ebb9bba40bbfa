"""Run an experiment's pending cells within a time budget, in plan order, and commit each finished one.

A cell is pending when the results folder holds no record for it, or one made by another plan (its cell id
differs: stale). Cells meant for another device are left for a machine that has it. Each cell runs as a stage
in the cache (`run_stage`): a cell killed mid-way resumes from its last epoch's checkpoint, a finished stage is
loaded, and a record is written only by this process, atomically, once the stage is done, so killing the runner
at any moment loses at most the epoch in progress and never repeats a recorded cell.

With several workers, each is a process of its own (`threads` torch threads each; on two CPU cores two
single-thread workers train these small networks about twice as fast as one two-thread process). Two cells
that need the same search training never run at once: the second waits for the first.
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Optional

from .cells import Cell, CellRecord, compact, describe, load_records, write_record
from .plans import EXPERIMENTS, Experiment

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Machine:
    """Where cells run: the torch device and the threads per worker (part of a record's device)."""
    device: str = "cpu"
    workers: int = 1
    threads: Optional[int] = None

    def kind(self) -> str:
        return "cuda" if self.device.startswith("cuda") else "cpu"


# ----------------------------------------------------------------------------------------------------
# One cell (in this process or a worker).

@lru_cache(maxsize=2)
def _dataset(data_cfg):
    from ..data import load_dataset
    return load_dataset(data_cfg)


def _device_record(device, threads: int) -> dict:
    import torch
    if device.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(device), "threads": threads}
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"type": "cpu", "name": name, "cores": os.cpu_count(), "threads": threads}


def run_cell(cell: Cell, experiment: str, scale: str, cache: str, machine: Machine, log: Optional[Log] = None) -> dict:
    """Run (or resume, or load) one cell's stage under `cache`; its record as a dict."""
    import torch

    from ..device import resolve_device
    from ..runs import environment
    from ..safety import file_digest
    from ..stages import is_done, run_stage
    from ..training import RunContext
    if machine.threads:
        torch.set_num_threads(machine.threads)
    device = resolve_device(machine.device)
    data = _dataset(cell.setup.data)
    stage, search = cell.stage(data), cell.search_stage(data)
    resumed = stage.path(cache).is_dir() and not is_done(stage, cache)
    recomputed = cell.kind == "arm" and search is not None and not is_done(search, cache)
    if hasattr(stage, "log"):
        stage.log = (lambda m: log(f"[{cell.name}] {m}")) if log else None
    load_before, t0, c0 = list(os.getloadavg()), time.perf_counter(), time.process_time()
    result = run_stage(stage, cache, RunContext(device))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    files = {p.name: file_digest(p) for p in (cell.setup.data.file(), cell.setup.data.test_file()) if p is not None}
    return CellRecord(
        schema=1, experiment=experiment, scale=scale, cell=cell.name, cell_id=cell.cell_id(), kind=cell.kind,
        arm=cell.arm, seed=cell.seed, tags=cell.tags, settings=cell.setup.to_dict(), stage=stage.name(),
        result=compact(result.to_dict()), seconds=seconds, cpu_seconds=cpu, load_before=load_before,
        load_after=list(os.getloadavg()), device=_device_record(device, torch.get_num_threads()),
        environment=environment(device), data_files=files, resumed=resumed, search_recomputed=recomputed,
        finished_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")).to_dict()


def _worker_init(threads: Optional[int]) -> None:
    """A worker dies with the runner (Linux): a killed runner leaves no orphan training holding a cell's lock."""
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if threads:
        import torch
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------------
# The plan's pending cells, the budget and the schedule.

def unit_rates(exp: Experiment, records: dict[str, CellRecord], machine: Machine) -> list[float]:
    """Seconds per cost unit of each record made on this kind of machine (same device and threads), leaving out
    cells that resumed or recomputed their search (their seconds are not the cell's own)."""
    import torch
    threads = machine.threads or torch.get_num_threads()
    name = _device_record(_torch_device(machine), threads)["name"]
    costs = {c.name: c.cost for c in exp.cells(sorted({r.seed for r in records.values()}))}
    return [r.seconds / costs[r.cell] for r in records.values()
            if r.cell in costs and r.device.get("name") == name and r.device.get("threads") == threads
            and not r.resumed and not r.search_recomputed and r.seconds > 1]


def unit_seconds(exp: Experiment, records: dict[str, CellRecord], machine: Machine) -> float:
    """Seconds per cost unit here: the median over this experiment's records (a first guess from the experiment
    before any)."""
    rates = unit_rates(exp, records, machine)
    return statistics.median(rates) if rates else exp.unit_seconds


def _torch_device(machine: Machine):
    from ..device import resolve_device
    return resolve_device(machine.device)


def search_key(cell: Cell) -> Optional[str]:
    """Cells with the same key would train the same search: they must not run at once."""
    search = cell.search_stage()
    return search.hash() if search is not None else None


def pending_cells(cells: list[Cell], records: dict[str, CellRecord]) -> list[Cell]:
    return [c for c in cells if c.name not in records or records[c.name].cell_id != c.cell_id()]


def run_pending(experiment: str, scale: str = "full", seeds: tuple[int, ...] = (0, 1, 2),
                results: Path = Path("benchmarks/results"), cache: Path = Path("runs/ledger"),
                budget_s: Optional[float] = None, machine: Machine = Machine(), log: Log = _stderr,
                render: bool = True) -> dict:
    """Run the pending cells of `experiment` that fit `budget_s` seconds (None: all), in plan order; write each
    record as it finishes; re-render the tables and figures from every record. Returns a summary."""
    exp = EXPERIMENTS[experiment](scale)
    folder = Path(results) / exp.folder()
    cells = exp.cells(list(seeds))
    records = load_records(folder)
    todo = [c for c in pending_cells(cells, records) if c.device == machine.kind()]
    elsewhere = [c for c in pending_cells(cells, records) if c.device != machine.kind()]
    per_unit = unit_seconds(exp, records, machine)
    status = describe(cells, records)
    log(f"ledger {exp.folder()}: {status['done']}/{status['cells']} cells recorded ({status['stale']} stale), "
        f"{len(todo)} pending here, {len(elsewhere)} for another device; ~{per_unit:.0f} s per unit here, "
        f"{sum(c.cost for c in todo) * per_unit / max(machine.workers, 1) / 3600:.1f} h of work left here")
    if elsewhere and not todo:
        log(f"the pending cells need a {elsewhere[0].device} device (this is {machine.kind()})")
    Path(cache).mkdir(parents=True, exist_ok=True)
    start, ran, skipped = time.perf_counter(), [], []

    def fits(c: Cell) -> bool:
        return budget_s is None or (time.perf_counter() - start) + c.cost * per_unit <= budget_s

    def finish(record: dict) -> None:
        nonlocal per_unit
        rec = CellRecord.from_dict(record, "cell record")
        write_record(folder, rec)
        records[rec.cell] = rec
        ran.append(rec.cell)
        log(f"recorded {rec.cell}: {rec.seconds:.0f} s ({rec.cpu_seconds:.0f} CPU-s){' resumed' if rec.resumed else ''}"
            f"; {len(ran)} this run, {time.perf_counter() - start:.0f} s elapsed")
        fresh = unit_rates(exp, {c: records[c] for c in ran}, machine)
        if fresh:  # this run's own pace: the machine's load now, not that of earlier days
            per_unit = statistics.median(fresh)

    if machine.workers <= 1:
        for c in todo:
            if not fits(c):
                skipped.append(c.name)
                continue
            log(f"cell {c.name} (est. {c.cost * per_unit:.0f} s)")
            finish(run_cell(c, experiment, scale, str(cache), machine, log))
    else:
        ctx = get_context("spawn")
        with ProcessPoolExecutor(machine.workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(machine.threads,)) as pool:
            queue, running = list(todo), {}
            while queue or running:
                busy = {search_key(c) for c in running.values()} - {None}
                while len(running) < machine.workers:
                    nxt = next((c for c in queue if search_key(c) not in busy and fits(c)), None)
                    if nxt is None:
                        break
                    queue.remove(nxt)
                    busy.add(search_key(nxt))
                    log(f"cell {nxt.name} (est. {nxt.cost * per_unit:.0f} s)")
                    running[pool.submit(run_cell, nxt, experiment, scale, str(cache), machine, _stderr)] = nxt
                if not running:  # nothing left that fits the budget
                    skipped += [c.name for c in queue]
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    running.pop(f)
                    finish(f.result())
    if skipped:
        log(f"{len(skipped)} pending cells did not fit the budget (next: {skipped[0]})")
    files = render_experiment(exp, folder, list(seeds), records) if render else []
    return {"experiment": exp.folder(), "ran": ran, "skipped": skipped, "elsewhere": [c.name for c in elsewhere],
            "status": describe(cells, records), "files": files}


def render_experiment(exp: Experiment, folder: Path, seeds: list[int],
                      records: Optional[dict[str, CellRecord]] = None) -> list[str]:
    from .report import render
    records = load_records(folder) if records is None else records
    return render(exp, folder, exp.cells(seeds), records)
