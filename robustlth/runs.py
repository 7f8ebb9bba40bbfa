"""Run directories: named by a config hash, written atomically, self-describing.

A run directory holds `config.yaml` (the resolved hyperparameters), `env.json` (seed, library versions,
robustlth's own version, commit and whether its tree had uncommitted changes, device), `metrics.jsonl` (one JSON object per logged event) and results files. Stages check
for their results on disk and skip work already done.
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch

from .version import __version__
from .config import dump_yaml
from .errors import FileFormatError, RunLockedError
from .safety import append_line, read_json

DEFAULT_ROOT = "runs"
TMP_SUFFIX = ".tmp"  # atomic writes' temporary files: `.NAME.<random>.tmp` beside their target
LOCK_FILE = ".lock"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; keep the permissions a plain open() gives
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None:  # a failed write or fsync (a full disk: ENOSPC) does not say which file
            raise OSError(e.errno, f"{e.strerror or e} while writing", str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def csv_text(rows: list[dict], columns: Optional[list[str]] = None) -> str:
    """Rows of dicts as CSV text: `columns`, or every key in order of first appearance."""
    import csv
    keys = columns or list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def source_tree() -> dict:
    """robustlth's own source: its folder, and the commit of the git checkout it lives in (never the current
    directory's repository, nor one that merely contains an installed copy), with whether it has uncommitted
    changes to tracked files."""
    src = Path(__file__).resolve().parent.parent
    out = {"robustlth_source": str(src / "robustlth"), "robustlth_commit": None, "robustlth_dirty": None}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=src, capture_output=True, text=True, timeout=5).stdout.strip()
    try:
        top = git("rev-parse", "--show-toplevel")
        if not top or Path(top).resolve() != src:  # an installed copy (site-packages), not a checkout
            return out
        out["robustlth_commit"] = git("rev-parse", "HEAD") or None
        out["robustlth_dirty"] = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def git_commit() -> Optional[str]:
    """The commit of the robustlth source tree (with '+dirty' when it has local changes), if any."""
    tree = source_tree()
    if not tree["robustlth_commit"]:
        return None
    return tree["robustlth_commit"] + ("+dirty" if tree["robustlth_dirty"] else "")


def environment(device: Optional[torch.device] = None) -> dict:
    import numpy
    env = {
        "robustlth": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
    }
    tree = source_tree()
    env["git_commit"] = (tree["robustlth_commit"] + ("+dirty" if tree["robustlth_dirty"] else "")
                         if tree["robustlth_commit"] else None)
    env.update(tree)
    try:
        import torchvision
        env["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover
        pass
    if device is not None:
        env["device"] = str(device)
        if device.type == "cuda":
            env["device_name"] = torch.cuda.get_device_name(device)
        else:
            env["device_name"] = platform.processor() or platform.machine()
    return env


class RunDir:
    """One run's directory. Creating it records the config and environment once; a later open from another
    commit is added to env.json's `reopened_with`, so the record of what first ran stays."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def create(cls, root: str | Path, kind: str, run_hash: str, config: dict,
               device: Optional[torch.device] = None, seed: Optional[int] = None) -> "RunDir":
        return cls.create_at(Path(root) / f"{kind}_{run_hash}", run_hash, config, device, seed)

    @classmethod
    def create_at(cls, path: str | Path, run_hash: str, config: dict, device: Optional[torch.device] = None,
                  seed: Optional[int] = None) -> "RunDir":
        """Create the run directory at `path` (config.yaml, env.json), or reopen it. A reopened directory's
        record is checked first (`check_record`): a damaged env.json or a config.yaml edited since the run began
        is refused before anything is written. A new directory that cannot be recorded in full (a full disk) is
        removed again, so no half-written run directory is left behind."""
        path = Path(path)
        old = check_record(path, config)
        env = environment(device)
        env["seed"] = seed
        env["hash"] = run_hash
        if old is not None and old.get("git_commit") == env["git_commit"]:  # reopened by the same commit
            if (path / "config.yaml").exists():
                return cls(path)
            env = old  # the first record stays
        elif old is not None:  # reopened from another commit: the first record stays, this one is added
            reopened = old.get("reopened_with", [])
            if not isinstance(reopened, list):
                raise FileFormatError(f"{path / 'env.json'} is damaged (its reopened_with is not a list); delete "
                                      f"the run directory {path} to start this run over")
            env = {**old, "reopened_with": reopened + [{k: env[k] for k in ("git_commit", "torch", "device")
                                                        if k in env}]}
        made = _new_folders(path)
        try:
            run = cls(path)
            if not (run.path / "config.yaml").exists():
                atomic_write_text(run.path / "config.yaml", dump_yaml(config))
            atomic_write_json(run.path / "env.json", env)
        except BaseException:
            _remove_new(made, ("config.yaml", "env.json"))
            raise
        return run

    def file(self, name: str) -> Path:
        return self.path / name

    @contextlib.contextmanager
    def lock(self):
        """Hold this directory for one process: a second one gets a clear 'already running' error.

        The lock is an flock on `.lock`, released by the kernel when the holder dies (kill -9 included), so
        it never goes stale. The holder owns the directory's tree, so it removes the temporary files that
        interrupted writes left anywhere in it.
        """
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLockedError(f"{self.path} is already in use by another robustlth process (already "
                                     "running); wait for it to finish or stop it, then run this again") from None
            self.remove_stale_tmp(recursive=True)
            yield self
        finally:
            os.close(fd)

    def remove_stale_tmp(self, recursive: bool = False) -> None:
        """Delete half-written temporary files of atomic writes killed before their rename."""
        pattern = f".*{TMP_SUFFIX}"
        for tmp in self.path.rglob(pattern) if recursive else self.path.glob(pattern):
            tmp.unlink(missing_ok=True)

    def log(self, record: dict) -> None:
        """Append one JSON line to metrics.jsonl (written whole; never through a planted symbolic link)."""
        append_line(self.path / "metrics.jsonl", json.dumps(record, default=_json_default) + "\n")

    def metrics(self) -> list[dict]:
        return read_jsonl(self.path / "metrics.jsonl")

    def rewrite_metrics(self, records: list[dict]) -> None:
        """Make metrics.jsonl exactly `records` (the checkpointed history), so a resumed run never logs twice."""
        atomic_write_text(self.path / "metrics.jsonl",
                          "".join(json.dumps(r, default=_json_default) + "\n" for r in records))

    def write_json(self, name: str, obj: Any) -> Path:
        atomic_write_json(self.path / name, obj)
        return self.path / name

    def read_json(self, name: str) -> Any:
        return read_json(self.path / name)


def _new_folders(path: Path) -> list[Path]:
    """The folders that creating `path` will make, deepest first."""
    made = []
    while not path.exists() and path != path.parent:
        made.append(path)
        path = path.parent
    return made


def _remove_new(made: list[Path], files: tuple[str, ...]) -> None:
    """Undo a directory creation that failed half-way: the records written into it, then the new folders."""
    if not made:
        return
    for name in files:
        (made[0] / name).unlink(missing_ok=True)
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            return


# config.yaml keys that describe how a run was asked for, not what it runs: which preset chose the settings, the
# path a ticket was read from (its content is in the hash). They may differ when the same run is reopened.
DESCRIPTIVE_KEYS = ("preset", "mask")


def _difference(recorded: Any, current: Any, where: str = "") -> Optional[str]:
    """The first setting the file records differently from `current` (keys the file lacks, written by an older
    version, are not a difference), or None."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        for key, value in recorded.items():
            name = f"{where}.{key}" if where else str(key)
            if key not in current:
                return f"it records {name}, which is not a setting of this run"
            if not where and key in DESCRIPTIVE_KEYS and all(isinstance(v, (str, type(None)))
                                                              for v in (value, current[key])):
                continue
            found = _difference(value, current[key], name)
            if found:
                return found
        return None
    if recorded != current or isinstance(recorded, bool) != isinstance(current, bool):
        return f"{where or 'its content'} is {_short(recorded)} there but {_short(current)} in this run"
    return None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_record(path: str | Path, config: dict) -> Optional[dict]:
    """Check the record of an existing run directory before it is reopened, and return its env.json (None
    for a directory not made yet). Resume never lies: a config.yaml that no longer matches the run its
    directory's hash names (edited by hand) is refused, as is a damaged config.yaml or env.json; each is one
    line naming the file and what to do. Only reads, so every process of a data-parallel run may call it."""
    import yaml
    path = Path(path)
    start_over = f"delete the run directory {path} to start this run over"
    cfg_file, env_file = path / "config.yaml", path / "env.json"
    if cfg_file.exists():
        try:
            recorded = yaml.safe_load(cfg_file.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise FileFormatError(f"{cfg_file} is damaged (not readable YAML: {reason}); {start_over}") from None
        diff = _difference(recorded, yaml.safe_load(dump_yaml(config)))
        if diff:
            raise FileFormatError(f"{cfg_file} no longer matches the run its directory is named for ({diff}; "
                                  "edited by hand?): resuming would run other settings than the file says; restore "
                                  f"the file, or {start_over}")
    if not env_file.exists():
        return None
    try:
        old = json.loads(env_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        old = None
    if not isinstance(old, dict):
        raise FileFormatError(f"{env_file} is damaged (not a JSON object recording the run's environment); "
                              f"{start_over}")
    return old


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut off by a crash ends the log
    return out
