"""The lottery ticket hypothesis experiment on Conv-2/4/6 (docs/lth.md): IMP with layer-wise rates, the
early-stopping iteration, controls, and the open questions (robustness, transfer) as options."""
from .config import LTH_MODELS, PRESETS, TRAIN_DEFAULTS, LTHConfig
from .evaluator import EarlyStopEvaluator
from .experiment import run_lth

__all__ = ["LTH_MODELS", "PRESETS", "TRAIN_DEFAULTS", "LTHConfig", "EarlyStopEvaluator", "run_lth"]
