"""Training engine: schedules, hooks, the run context, checkpointed adversarial training."""
from .context import RunContext
from .hooks import EpochHook, Hook, MaskEnforcer, StepHook, TrainingError
from .schedules import lr_at, scaled_for_batch
from .steps import CudaGraphStep, EagerStep, make_step
from .trainer import TrainResult, seed_everything, train

__all__ = ["RunContext", "EpochHook", "Hook", "StepHook", "lr_at", "scaled_for_batch", "CudaGraphStep", "EagerStep",
           "make_step", "MaskEnforcer", "TrainingError", "TrainResult", "seed_everything", "train"]
