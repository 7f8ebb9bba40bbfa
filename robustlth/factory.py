"""A user's own architecture, named `package.module:factory`.

The factory is imported and called to build a fresh model, so a ticket's θ0 can be rebuilt and any checkpoint
names what to build. It is called as `factory(width=W)` when it takes a `width` argument, else as `factory()`
(then only width 1 is allowed). The model it returns takes [0, 1] images: the normalisation belongs inside it.
A factory defined in a script `my_script.py` is recorded as `my_script:factory`: other processes (`robustlth
eval`) import it with the script's folder on PYTHONPATH.
"""
from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Callable

import torch.nn as nn

from .errors import ConfigError

_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_factory_path(name: str) -> bool:
    """True for `package.module:callable` names (registry names never contain a colon)."""
    return isinstance(name, str) and ":" in name


def factory_path(fn: Callable) -> str:
    """The `module:qualname` a callable is found under (what checkpoints and run hashes record)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise ConfigError(f"model factory {fn!r} is not importable by name (a lambda or a nested function?): define "
                          "it at the top level of a module")
    if module == "__main__":  # a script: name it by its file, so `robustlth eval` can import it later
        script = getattr(sys.modules.get("__main__"), "__file__", None)
        stem = Path(script).stem if script else ""
        if stem.isidentifier():
            return f"{stem}:{qualname}"
    return f"{module}:{qualname}"


def resolve_factory(path: str) -> Callable:
    """The callable named by `package.module:factory`, or one clear error."""
    if not _PATH.match(path):
        raise ConfigError(f"invalid model={path!r}: a model factory is written package.module:function")
    module_name, attr = path.split(":", 1)
    try:
        module = sys.modules.get(module_name) if module_name == "__main__" else importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"model factory {path}: cannot import {module_name} ({e}); put the folder of "
                          f"{module_name.replace('.', '/')}.py on PYTHONPATH") from None
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise ConfigError(f"model factory {path}: {module_name} has no callable {attr}")
    return obj


def _takes_width(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "width" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def build_factory_model(path: str, width: float = 1.0) -> nn.Module:
    fn = resolve_factory(path)
    if _takes_width(fn):
        model = fn(width=width)
    elif width != 1.0:
        raise ConfigError(f"model factory {path} takes no width argument, so width must be 1, not {width:g}")
    else:
        model = fn()
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model factory {path} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def factory_digest(path: str) -> str:
    """sha256 of the source file that defines the factory (what run hashes use, so edits make new runs)."""
    import hashlib
    fn = resolve_factory(path)
    try:
        source = inspect.getsourcefile(inspect.unwrap(fn))
    except TypeError:
        source = None
    if source is None:
        return hashlib.sha256(path.encode()).hexdigest()
    from .safety import file_digest
    return file_digest(source)
