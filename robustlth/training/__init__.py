"""Training engine: schedules, sparse-mask enforcement, checkpointed adversarial training."""
from .schedules import lr_at, scaled_for_batch
from .steps import CudaGraphStep, EagerStep, make_step
from .trainer import MaskEnforcer, TrainingError, TrainResult, seed_everything, train

__all__ = ["lr_at", "scaled_for_batch", "CudaGraphStep", "EagerStep", "make_step", "MaskEnforcer", "TrainingError",
           "TrainResult", "seed_everything", "train"]
