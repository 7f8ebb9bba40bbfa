"""Labelled progress for long phases (search, training, each final attack, ablation cells): a tqdm bar on a
terminal, plain `label: done/total (elapsed, ETA)` lines at most every few seconds when stderr is redirected, so
logs never fill with bar redraws. `tee_log` also copies every log line into a run directory's run.log."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Optional, TextIO

Log = Optional[Callable[[str], None]]


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def format_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """`with Progress("search epoch 1/8", total=35) as p: ... p.update()`; disabled: does nothing."""

    def __init__(self, label: str, total: int, enabled: bool = True, unit: str = "batches",
                 stream: Optional[TextIO] = None, every_s: float = 10.0):
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.done, self.t0, self.last = 0, time.perf_counter(), time.perf_counter()
        self.bar = None
        if self.enabled and is_terminal(self.stream):
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=label, unit=unit.rstrip("es") or "it", leave=False, file=self.stream)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1, **info) -> None:
        if not self.enabled:
            return
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if info:
                self.bar.set_postfix(**info)
            return
        now = time.perf_counter()
        if now - self.last >= self.every_s and self.done < self.total:
            self.last = now
            self.stream.write(self.line(info) + "\n")
            self.stream.flush()

    def line(self, info: Optional[dict] = None) -> str:
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        extra = "".join(f", {k} {v}" for k, v in (info or {}).items())
        return (f"{self.label}: {self.done}/{self.total} {self.unit} ({format_seconds(elapsed)} elapsed"
                + (f", ETA {format_seconds(eta)}" if eta is not None else "") + f"{extra})")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def tee_log(log: Log, path: Path) -> Callable[[str], None]:
    """`log`, plus each line appended with a UTC time stamp to `path` (a run's run.log)."""
    from .safety import append_line

    def both(msg: str) -> None:
        if log:
            log(msg)
        append_line(Path(path), time.strftime("%Y-%m-%dT%H:%M:%SZ ", time.gmtime()) + msg + "\n")
    return both
