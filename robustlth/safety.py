"""Safe file access at the edges: tensors load without unpickling code, appends never follow links, JSON and
output locations fail with one line naming the file, and data files are identified by their content."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

from .errors import FileFormatError, UsageError


def safe_torch_load(path: Path, what: str, start_over: str = "") -> Any:
    """`torch.load(weights_only=True)`: tensors and plain containers only, so a crafted file runs no code.

    Any failure is one FileFormatError naming the file, what it should have been and (`start_over`) what to do.
    """
    import torch  # only this function needs it; file checks and digests stay light
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: the error below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError, TypeError,
            AttributeError, ImportError, IndexError, KeyError, UnicodeDecodeError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if "Weights only load failed" in reason or isinstance(e, pickle.UnpicklingError):
            reason = "it holds more than tensors and plain containers, so it is refused unloaded"
        hint = f"; {start_over}" if start_over else ""
        raise FileFormatError(f"{path} is not a readable {what} ({reason}){hint}") from None
    except OSError as e:
        if e.filename is not None:  # opening it failed (no permission, a folder): the error names the path
            raise
        # Reading its content failed (a truncated zip makes torch's reader fail with a bare [Errno 22]).
        hint = f"; {start_over}" if start_over else ""
        raise FileFormatError(f"{path} is not a readable {what} (damaged or truncated: "
                              f"{e.strerror or type(e).__name__}){hint}") from None


def read_json(path: Path, what: str = "JSON file") -> Any:
    """Parse a JSON file; a damaged one is a clear error naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FileFormatError(f"{path} is not a valid {what} ({e}); delete it to redo that step") from None


def append_line(path: Path, line: str) -> None:
    """Append one line, refusing to follow a symbolic link planted at `path`."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError:
        if Path(path).is_symlink():
            raise FileFormatError(f"{path} is a symbolic link; robustlth only appends to plain files") from None
        raise
    with os.fdopen(fd, "a") as fh:
        fh.write(line)
        fh.flush()


@functools.lru_cache(maxsize=32)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """Short SHA-256 of a file's content, cached per (path, size, mtime) within the process."""
    path = Path(path).expanduser()
    try:
        st = path.stat()
    except OSError:
        raise FileFormatError(f"{path} does not exist or cannot be read") from None
    return _digest(str(path.resolve()), st.st_size, st.st_mtime_ns)


def _writable_dir(path: Path, flag: str) -> None:
    """The nearest existing ancestor of `path` must be a folder we may write into."""
    probe = path
    while not probe.exists():
        if probe.is_symlink():
            raise UsageError(f"{flag} {path}: {probe} is a dangling symbolic link")
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{flag} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: the folder {probe} is not writable")


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """A folder that exists or can be created, checked before any work."""
    if not str(path).strip():
        raise UsageError(f"{flag} is empty: give a folder, e.g. {flag} runs")
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file, not a folder")
    _writable_dir(path.absolute(), flag)
    return path


def check_output_file(path: str | Path, flag: str = "--output") -> Path:
    """A file path whose folder exists or can be created; an existing folder there is an error."""
    if not str(path).strip():
        raise UsageError(f"{flag} is empty: give a file name")
    path = Path(path).expanduser()
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name inside it")
    _writable_dir(path.absolute().parent, flag)
    return path
