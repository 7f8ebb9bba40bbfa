"""`robustlth bench`: the ticket pipeline against dense PGD adversarial training, same data, model, seed and
device, one arm after another. The bench and each of its arms and searches are stages (robustlth.stages), so an
interrupted benchmark resumes at the arm and epoch where it stopped, and arms shared with another bench (the
dense run of a bench at another pruning ratio, say) are reused, not retrained.

Under torchrun (a `RunContext` of several processes) every process trains each arm data-parallel and
evaluates its share of the final test images; only the primary process writes, and its wall-clock times are
the ones recorded."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import torch

from ..config import ConfigError
from ..data import Dataset, load_dataset
from ..errors import FileFormatError, UsageError
from ..models import build_checked_model
from ..progress import tee_log
from ..runs import RunDir, environment
from ..stages import Result, Stage, run_stage
from ..training import RunContext
from .arms import Arm, ArmResult, ArmStage
from .config import MIN_TRAIN_IMAGES, BenchSetup
from .metrics import headline

Log = Optional[Callable[[str], None]]


def stdout_summary(results: dict, run_dir: str) -> dict:
    """The JSON line `robustlth bench` prints last: the headline's own numbers, each with its n."""
    h = results["headline"]
    return {"run_dir": run_dir, "ticket_vs_dense_time_to_target": h.get("time_to_target_vs_dense"),
            "ticket_vs_dense_cpu_time_to_target": h.get("cpu_time_to_target_vs_dense"),
            "total_time_ratio": round(h["total_time_ratio"], 4),
            "total_cpu_time_ratio": (None if h.get("total_cpu_time_ratio") is None
                                     else round(h["total_cpu_time_ratio"], 4)),
            "target": h.get("target", h.get("target_pgd20")), "target_metric": h.get("target_metric", "pgd20"),
            "target_n": h.get("target_n"),
            "final_images": (h.get("final_images") or {}).get("words"),
            "final_worst_case_diff": h.get("final_worst_case_diff"), "final_worst_case_n": h.get("final_worst_case_n"),
            "final_worst_case_se": h.get("final_worst_case_se"), "final_worst_case_ci": h.get("final_worst_case_ci")}


@dataclass
class BenchResult(Result):
    config: dict
    environment: dict
    headline: dict
    arms: dict[str, ArmResult]
    arm_dirs: dict  # arm -> its stage directory's name: arms live beside the bench, shared with other benches


@dataclass
class BenchStage(Stage):
    kind: ClassVar[str] = "bench"
    result: ClassVar[type] = BenchResult
    setup: BenchSetup
    preset: Optional[str] = None
    data: Optional[Dataset] = field(default=None, compare=False)
    progress: bool = field(default=False, compare=False)
    log: Log = field(default=None, compare=False)

    def sections(self) -> dict[str, Any]:
        return self.setup.sections()

    def record(self) -> dict:
        return {"preset": self.preset, **self.setup.to_dict()}

    @property
    def seed(self) -> int:
        return self.setup.seed

    def arm_stage(self, arm: str, log: Log = None) -> ArmStage:
        return ArmStage(arm, self.setup, self.data, self.progress, log)

    def run(self, ctx: RunContext) -> BenchResult:
        run = ctx.run_dir
        log = tee_log(self.log, run.file("run.log")) if ctx.is_primary else None
        if log:
            log(f"benchmark directory: {run.path}" + (f" ({ctx.world_size} processes)" if ctx.distributed else ""))
        root = run.path.parent
        stages = {arm: self.arm_stage(arm, log) for arm in self.setup.bench.arms}
        arms = {}
        for arm, stage in stages.items():
            arms[arm] = run_stage(stage, root, ctx)
            if log:
                log(f"arm {arm}: {stage.path(root)}")
        plain = {k: a.to_dict() for k, a in arms.items()}
        result = BenchResult(config=self.record(),
                             environment={**environment(ctx.device), "world_size": ctx.world_size},
                             headline=headline(plain, self.setup), arms=arms,
                             arm_dirs={arm: stage.name() for arm, stage in stages.items()})
        if ctx.is_primary:
            from .report import write_report
            write_report(result.to_dict(), run.path)
        return result


def check_data_size(preset: Optional[str], data: Dataset) -> None:
    """A full-scale preset on a few hundred images is a mistake (e.g. the paper preset's 5,000 validation images
    held out of a 5,085-image subset), not a benchmark."""
    need = MIN_TRAIN_IMAGES.get(preset or "")
    if need and len(data.train) < need:
        raise ConfigError(f"the {preset} preset is full scale but would train on {len(data.train)} images (after "
                          f"{0 if data.val is None else len(data.val)} held out for validation; it expects at least "
                          f"{need:,}): use --preset cpu for small data, or --allow-small-data to run it anyway")


def check_world_size(s: BenchSetup, ctx: RunContext) -> None:
    """The global batch is split over the processes; the split must be even."""
    if s.train.batch_size % ctx.world_size:
        raise UsageError(f"--batch-size {s.train.batch_size} (the global batch) does not split over "
                         f"{ctx.world_size} processes; use a multiple of {ctx.world_size}")


def check_bench(s: BenchSetup, data: Dataset, preset: Optional[str], allow_small_data: bool, ctx,
                root: Optional[str | Path] = None) -> None:
    """Everything a bench can check before any arm trains or any directory is written."""
    check_world_size(s, ctx)
    # The model, tried on one sample batch of the data (a user factory that fails, or the wrong class count).
    model = build_checked_model(s.model.model, s.model.width, data.spec, tuple(data.train.x.shape[1:]))
    if {"structured", "structured_fast"} & set(s.bench.arms):  # a model that cannot be shrunk
        from ..models.shrink import channel_groups
        if not hasattr(model, "net"):  # a user factory's own module: no channel groups robustlth knows
            raise ConfigError(f"model={s.model.model!r} is a user factory: the structured arms cannot shrink it; "
                              "drop structured and structured_fast from --arms")
        channel_groups(model)
    if not allow_small_data:
        check_data_size(preset, data)
    check_done_arms(s, data, ctx, root)


def check_done_arms(s: BenchSetup, data: Dataset, ctx, root) -> None:
    """The arms (and their searches) already on disk, shared with other benches, are read before this bench's
    directory is made: a damaged or edited result.json or config.yaml is one line now, not a half-made bench."""
    if root is None:
        return
    from ..runs import check_record
    from ..stages import DONE, load_result
    for arm in s.bench.arms:
        stage = ArmStage(arm, s, data)
        path = stage.path(root)
        if not path.is_dir():
            continue
        check_record(path, stage.record())
        if (path / DONE).exists():
            load_result(stage, path / DONE)
        elif (path / "checkpoint.pt").exists() and type(stage.recipe).build is Arm.build:
            check_arm_checkpoint(path / "checkpoint.pt", s, data)


def check_arm_checkpoint(ckpt: Path, s: BenchSetup, data: Dataset) -> None:
    """An interrupted arm that trains the bench's own model (dense, fast AT) resumes from its checkpoint: one of
    another model (a copied or replaced file) is refused before anything is written."""
    from ..models.shrink import state_mismatch
    from ..training.checkpoint import read_description
    saved = read_description(ckpt)[1]
    problem = state_mismatch(s.model.model, s.model.width, data.spec, saved["model"])
    if problem:
        raise FileFormatError(f"{ckpt} is not a checkpoint of this arm's {s.model.model} at width {s.model.width:g} "
                              f"({problem}); delete {ckpt.parent} to start this arm over")


def run_bench(s: BenchSetup, device: torch.device, root: str | Path = "runs", preset: Optional[str] = None,
              progress: bool = False, log: Log = None, allow_small_data: bool = False,
              ctx: Optional[RunContext] = None) -> tuple[dict, RunDir]:
    """Run (or resume) the benchmark; returns its results (the plain dict the reports read) and its directory.
    `ctx` runs it data-parallel (then only the primary process writes and logs, and every process returns the
    same results)."""
    ctx = ctx if ctx is not None else RunContext(device)
    data = load_dataset(s.data)  # bad data fails before anything is written
    check_bench(s, data, preset, allow_small_data, ctx, root)
    stage = BenchStage(s, preset, data, progress, log if ctx.is_primary else None)
    result = run_stage(stage, root, ctx)
    return result.to_dict(), RunDir(stage.path(root))
