"""Dense vs IMP ticket vs random ticket vs RST at several sparsities (SPEC section 3's claim)."""
from .config import FINETUNE_DEFAULTS, METHODS, PRESETS, SweepConfig
from .experiment import run_sweep

__all__ = ["FINETUNE_DEFAULTS", "METHODS", "PRESETS", "SweepConfig", "run_sweep"]
