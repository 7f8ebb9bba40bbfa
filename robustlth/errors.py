"""The project's own error types. The CLI prints these (and OSError) as one line with exit status 2; any other
exception is a bug and surfaces as a traceback."""
from __future__ import annotations


class RobustLTHError(Exception):
    """Bad input or a bad file: the message names what is wrong and how to fix it."""


class FileFormatError(RobustLTHError, ValueError):
    """A file robustlth reads (checkpoint, JSON result, ...) is damaged, foreign, or unsafe to load."""


class RunLockedError(RobustLTHError):
    """Another process is working in the same run directory."""


class UsageError(RobustLTHError, ValueError):
    """A command-line value or path that cannot work (an output folder that is a file, ...)."""


class ConfigError(RobustLTHError, ValueError):
    """A hyperparameter has a value that is not allowed; the message names the field."""
