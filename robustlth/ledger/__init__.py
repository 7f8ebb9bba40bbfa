"""The results ledger: experiments as plans of cells whose finished records are committed, so results outlive
the machine that computed them and accumulate across sessions and devices.

    python -m robustlth.ledger status natural_claims
    python -m robustlth.ledger run natural_claims --budget-s 3600 --workers 2 --threads 1
    python -m robustlth.ledger render natural_claims
"""
from .cells import Cell, CellRecord, load_records, metric
from .plans import EXPERIMENTS, Experiment
from .runner import Machine, run_pending

__all__ = ["Cell", "CellRecord", "EXPERIMENTS", "Experiment", "Machine", "load_records", "metric", "run_pending"]
