"""robustlth: boosting lottery tickets for cheaper adversarial training."""
__version__ = "0.1.0"
