"""Bad-input cases: strict parsing and one error line at the edges (flags, lists, YAML, JSON, reports, OS errors)."""
from corpus import Case, _copy_run, _npz, _yaml  # noqa: F401
from faults import TINY_SEARCH as SEARCH, TINY_TRAIN as TINY  # noqa: F401

FIXTURES: list = []  # callables (fixtures folder) -> None that write the files the cases below use
CASES: list[Case] = []
