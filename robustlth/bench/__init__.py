"""Benchmark harness: ticket pipeline vs dense adversarial training, with reports."""
from .arms import ARMS, ArmResult, ArmStage
from .config import PRESETS, BenchConfig, BenchSetup
from .harness import BenchResult, BenchStage, run_bench
from .metrics import headline, time_to_target

__all__ = ["ARMS", "ArmResult", "ArmStage", "PRESETS", "BenchConfig", "BenchSetup", "BenchResult", "BenchStage",
           "headline", "run_bench", "time_to_target"]
