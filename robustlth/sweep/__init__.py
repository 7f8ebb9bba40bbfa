"""Dense vs IMP ticket vs random ticket vs RST at several sparsities (the dual-ticket paper's claim, docs/rst.md)."""
from .config import FINETUNE_DEFAULTS, METHODS, PRESETS, SweepConfig
from .experiment import run_sweep

__all__ = ["FINETUNE_DEFAULTS", "METHODS", "PRESETS", "SweepConfig", "run_sweep"]
