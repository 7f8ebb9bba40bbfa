"""Training engine: schedules, sparse-mask enforcement, checkpointed adversarial training."""
from .schedules import lr_at
from .trainer import MaskEnforcer, TrainingError, TrainResult, make_step, seed_everything, train

__all__ = ["lr_at", "MaskEnforcer", "TrainingError", "TrainResult", "make_step", "seed_everything", "train"]
