"""Named things in one style: arms, pruning strategies, attacks, models, datasets, optimisers, losses.

A `Registry` maps a name to an object (a class or a function). Adding one is one decorated definition; every
lookup of an unknown name is one `ConfigError` line that lists the names there are, and `--help` texts list
them from the same place, so a name can never be accepted by one layer and refused by another.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, Optional, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str):
        self.what = what  # "arm", "pruning strategy", ... (the error message's noun)
        self._items: dict[str, T] = {}

    def register(self, name: str, item: Optional[T] = None) -> Callable[[T], T] | T:
        """`registry.register("name", obj)`, or `@registry.register("name")` above a definition."""
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._items[name] = obj
            return obj
        return add(item) if item is not None else add

    def __getitem__(self, name: str) -> T:
        self.check(name)
        return self._items[name]

    def check(self, name: str, field: Optional[str] = None) -> None:
        """One line naming the bad value and the allowed ones (`field`: the setting it came from)."""
        if name not in self._items:
            where = f"invalid {field}={name!r}" if field else f"unknown {self.what} {name!r}"
            raise ConfigError(f"{where}: expected one of {', '.join(self._items)}")

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def items(self):
        return self._items.items()

    def help(self) -> str:
        return ", ".join(self._items)
