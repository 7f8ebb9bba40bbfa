"""Benchmark harness: ticket pipeline vs dense adversarial training, with reports."""
from .config import ARMS, PRESETS, BenchConfig
from .harness import headline, run_bench, time_to_target

__all__ = ["ARMS", "PRESETS", "BenchConfig", "headline", "run_bench", "time_to_target"]
