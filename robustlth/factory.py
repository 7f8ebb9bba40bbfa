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
from typing import Callable, Iterable, Union

import torch.nn as nn

from .errors import ConfigError, UsageError

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


# ------------------------------------------------------------------------------------------------------
# A factory named by a file (a checkpoint's description, an old run's config.yaml, a ticket's metadata) is code
# that file chooses: it is imported only when the user names that same factory (--model on the command line, a
# YAML given by --config, a Python call's model=) or trusts it explicitly (--trust-factory, trust_factory=).
# Registry names (cnn6, vgg16, wrn-28-10, ...) import nothing and are never asked about.

TRUST_FLAG = "--trust-factory"
TrustSpec = Union[None, str, Callable, Iterable[Union[str, Callable]]]


def trusted_factories(trust: TrustSpec) -> frozenset:
    """The factory names `trust` allows: None (none), a name or comma-separated names, a factory itself (its
    `module:function`), or an iterable of those (a repeated --trust-factory)."""
    if trust is None:
        return frozenset()
    items = [trust] if isinstance(trust, str) or callable(trust) else list(trust)
    names: set = set()
    for item in items:
        if callable(item):
            names.add(factory_path(item))
        elif isinstance(item, str):
            names.update(part.strip() for part in item.split(",") if part.strip())
        elif item is not None:
            raise ConfigError(f"trust_factory: expected factory names (package.module:function) or factories, "
                              f"got a {type(item).__name__}")
    return frozenset(names)


def parse_trust_flag(text: str) -> list:
    """argparse type of --trust-factory: package.module:function names, comma-separated."""
    import argparse
    names = [part.strip() for part in text.split(",")]
    bad = [n for n in names if not _PATH.match(n)]
    if bad:
        raise argparse.ArgumentTypeError(f"expected package.module:function names (comma-separated), got {text!r}")
    return names


def check_trusted(name: object, source: str, trust: TrustSpec = None, allow: str = "cli") -> None:
    """Refuse (one UsageError, nothing imported) a model factory `name` that the file `source` names unless
    `trust` allows it. Registry names pass. `allow` words the way out: "cli" (--trust-factory), "cli+model"
    (--model or --trust-factory) or "api" (trust_factory=)."""
    if not is_factory_path(name) or name in trusted_factories(trust):
        return
    if not _PATH.match(name):  # nothing to trust: not even the shape of a factory name
        raise UsageError(f"{source} names the model {name!r}: neither a registered model nor a "
                         "package.module:function factory (nothing was imported)")
    if allow == "api":
        how = f"trust_factory={name!r}"
    elif allow == "cli+model":
        how = f"--model {name} or {TRUST_FLAG} {name}"
    else:
        how = f"{TRUST_FLAG} {name}"
    raise UsageError(f"{source} names the model factory {name}: robustlth imports no code a file names; if you "
                     f"trust that code, pass {how}")
