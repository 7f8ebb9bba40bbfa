"""IMP on fully connected networks and the locality analysis of its first-layer masks (docs/locality.md)."""
from .analysis import (coverage, dense_histograms, displacement_histograms, in_degree, locality_scores,
                       most_connected, shuffle_units)
from .config import PRESETS, TRAIN_DEFAULTS, LocalityConfig
from .controls import merge_labels, superclass_map, train_fraction
from .imp import ImpRun, RoundSummary, best_round, connected_fractions, run_imp, stop_reason
from .pipeline import run_locality

__all__ = ["coverage", "dense_histograms", "displacement_histograms", "in_degree", "locality_scores",
           "most_connected", "shuffle_units", "PRESETS", "TRAIN_DEFAULTS", "LocalityConfig", "merge_labels", "superclass_map",
           "train_fraction", "ImpRun", "RoundSummary", "best_round", "connected_fractions", "run_imp", "stop_reason", "run_locality"]
