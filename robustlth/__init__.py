"""robustlth: boosting lottery tickets for cheaper adversarial training.

The Python API (robustlth.api) is exported here: `find_ticket`, `adversarial_train`, `evaluate_model`, `run_bench`,
`load_checkpoint`, `load_ticket`. They are imported on first use, so `import robustlth` (and the CLI's start) stays light.
"""
from .version import __version__

_API = ("Trained", "adversarial_train", "data_config", "evaluate_model", "find_ticket", "load_checkpoint",
        "load_ticket", "model_name", "run_bench")


def __getattr__(name: str):
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'robustlth' has no attribute {name!r}")


__all__ = ["__version__", *_API]
