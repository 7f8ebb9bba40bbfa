"""Bad-input cases: every check before anything is written (models, tickets, architecture records, data, seeds), resume never lies."""
from corpus import Case, _copy_run, _npz, _yaml  # noqa: F401
from faults import TINY_SEARCH as SEARCH, TINY_TRAIN as TINY  # noqa: F401

FIXTURES: list = []  # callables (fixtures folder) -> None that write the files the cases below use
CASES: list[Case] = []
