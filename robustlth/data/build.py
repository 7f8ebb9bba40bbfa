"""`robustlth data build`: the exact CIFAR-10 subset, rebuilt from the official `cifar-10-python.tar.gz`.

`cifar10_exact_subset.npz` holds rows 0-1016 of each of the five official training batches (in batch order) and
rows 0-1016 of the test batch, as uint8 NHWC images and int64 labels, written by `np.savez_compressed` with the
keys in the order x_train, y_train, x_test, y_test. Built from the official archive it is byte-identical to the
published file (its sha256 is checked; `ARRAYS_SHA256` checks the arrays alone, for zlib builds that compress
differently).

The batches are Python pickles. They are read from the archive's members (nothing is extracted to disk) by a
restricted unpickler that can rebuild only plain containers, bytes, numbers and numpy arrays: any other global a
file names is refused unloaded, so a crafted archive cannot run code.
"""
from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..shared_data import EXACT_SUBSET_NAME, JPEG_NAME
from .sources import DataError

ROWS = 1017  # rows 0..1016 of each batch
EXACT_SUBSET_SHA256 = "1000cbce3096a55d68e5b7546a819890224b982e87dd24dcd9a2f0e291962a21"
# sha256 over each key, its dtype, shape and raw bytes, in key order (`arrays_digest`): the content, whatever zlib
# compressed it.
ARRAYS_SHA256 = "d6936240c24860b26d0c9c0bc1a0ac6ec9707864478071b1a92e0c1ce84b2d57"
JPEG_SHA256 = "df47a4fa0db7b1cf51fbdad84104ab883a42cabaa2949b44e3ac706c3663d487"
PUBLISHED = {EXACT_SUBSET_NAME: EXACT_SUBSET_SHA256, JPEG_NAME: JPEG_SHA256}

ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # torchvision's CIFAR10.url
ARCHIVE_NAME = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_MB = 163
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
TEST_BATCH = "test_batch"
BATCH_MD5 = {"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
             "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
             "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e"}
KEYS = ("x_train", "y_train", "x_test", "y_test")

Log = Optional[Callable[[str], None]]


# ----------------------------------------------------------------------------------------------------
# Reading the batches.

def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as f  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as f
    return f


def _allowed() -> dict:
    import codecs
    recon = _reconstruct()
    return {("numpy.core.multiarray", "_reconstruct"): recon, ("numpy._core.multiarray", "_reconstruct"): recon,
            ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
            # Python 3 writes bytes at pickle protocol 2 as _codecs.encode(text, 'latin1')
            ("_codecs", "encode"): codecs.encode,
            ("builtins", "bytes"): bytes, ("builtins", "bytearray"): bytearray}


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds plain containers, bytes, str, numbers and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str):
        found = _allowed().get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR-10 batch never does "
                                         "(only numpy arrays, bytes and plain containers are rebuilt)")
        return found


def read_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 32, 32, 3) uint8, labels (N,) int64) of one pickled batch, checked."""
    try:
        d = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            UnicodeDecodeError, MemoryError) as e:
        raise DataError(f"{where} is not a readable CIFAR-10 batch, refused: {e}") from None
    if not isinstance(d, dict):
        raise DataError(f"{where} is not a CIFAR-10 batch: it holds a {type(d).__name__}, not a dict")
    d = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}
    data, labels = d.get("data"), d.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{where}: its 'data' entry is not a (N, 3072) uint8 array "
                        f"({getattr(data, 'shape', None)}, {getattr(data, 'dtype', type(data).__name__)})")
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != data.shape[0]:
        raise DataError(f"{where}: its 'labels' entry is not a list of {data.shape[0]} labels")
    y = np.asarray(labels)
    if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() > 9)):
        raise DataError(f"{where}: its labels are not integers 0..9")
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # the batches store CHW rows; the subset is NHWC
    return np.ascontiguousarray(x), y.astype(np.int64)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def file_md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Source:
    """Where the batches came from, and what their checksums say."""
    path: Path
    archive_md5: Optional[str]  # None for an extracted folder
    official_batches: list  # batch names whose bytes match the official files' md5


def _read_members(path: Path, log: Log) -> tuple[dict, Source]:
    """The raw bytes of the six batches, from the archive (members read in memory) or an extracted folder."""
    names = (*TRAIN_BATCHES, TEST_BATCH)
    raw: dict[str, bytes] = {}
    if path.is_dir():
        folder = path / FOLDER if (path / FOLDER).is_dir() else path
        for n in names:
            f = folder / n
            if not f.is_file():
                raise DataError(f"{folder} has no {n}: expected the extracted {FOLDER} folder (data_batch_1..5, "
                                f"test_batch) or the archive {ARCHIVE_NAME}")
            raw[n] = f.read_bytes()
        md5 = None
    else:
        if not path.is_file():
            raise DataError(f"{path} does not exist: pass --archive PATH to {ARCHIVE_NAME} (or its extracted "
                            f"{FOLDER} folder), or leave --archive out to download it")
        md5 = file_md5(path)
        if log:
            log(f"{path}: md5 {md5}" + (" (the official archive)" if md5 == ARCHIVE_MD5 else
                                        f" (not the official archive's {ARCHIVE_MD5}; the built file's sha256 "
                                        "decides)"))
        try:
            with tarfile.open(path, "r:*") as tar:
                for n in names:
                    try:
                        member = tar.getmember(f"{FOLDER}/{n}")
                    except KeyError:
                        raise DataError(f"{path} has no member {FOLDER}/{n}: not a cifar-10-python archive") from None
                    f = tar.extractfile(member) if member.isfile() else None
                    if f is None:
                        raise DataError(f"{path}: {FOLDER}/{n} is not a regular file")
                    raw[n] = f.read()
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            if isinstance(e, OSError) and e.filename is not None:
                raise
            raise DataError(f"{path} is not a readable .tar.gz archive ({e})") from None
    official = [n for n in names if _md5(raw[n]) == BATCH_MD5[n]]
    return raw, Source(path, md5, official)


def subset_arrays(raw: dict, where: Path, rows: int = ROWS) -> dict:
    """The subset's four arrays from the six batches' bytes."""
    xs, ys = [], []
    for n in TRAIN_BATCHES:
        x, y = read_batch(raw[n], f"{where}: {n}")
        if x.shape[0] < rows:
            raise DataError(f"{where}: {n} holds {x.shape[0]} images, fewer than the {rows} rows the subset takes")
        xs.append(x[:rows])
        ys.append(y[:rows])
    xt, yt = read_batch(raw[TEST_BATCH], f"{where}: {TEST_BATCH}")
    if xt.shape[0] < rows:
        raise DataError(f"{where}: {TEST_BATCH} holds {xt.shape[0]} images, fewer than the {rows} rows the subset "
                        "takes")
    return {"x_train": np.concatenate(xs), "y_train": np.concatenate(ys), "x_test": xt[:rows], "y_test": yt[:rows]}


def npz_bytes(arrays: dict) -> bytes:
    """The file's bytes: np.savez_compressed with the keys in the published order."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: arrays[k] for k in KEYS})
    return buf.getvalue()


def arrays_digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for k in KEYS:
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode())
        h.update(a.dtype.str.encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------
# The command.

def _fetch(url: str, target: Path, timeout: float = 30.0) -> None:
    """`url` into `target` (via a .part file), with progress in MB; a stalled connection fails after `timeout` s."""
    import os
    import urllib.request
    from ..progress import Progress
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "robustlth"}),
                                timeout=timeout) as r:
        size = int(r.headers.get("Content-Length") or 0)
        with open(part, "wb") as f, Progress(f"download {target.name}", -(-size // (1 << 20)) if size else ARCHIVE_MB,
                                             unit="MB") as bar:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                f.write(chunk)
                bar.update(1)
    os.replace(part, target)


def download_archive(folder: Path, log: Log) -> Path:
    """The official archive in `folder`, downloaded from torchvision's URL when missing, md5-checked."""
    target = folder / ARCHIVE_NAME
    if target.is_file() and file_md5(target) == ARCHIVE_MD5:
        return target
    if log:
        log(f"downloading {ARCHIVE_URL} ({ARCHIVE_MB} MB) to {folder}")
    try:
        _fetch(ARCHIVE_URL, target)
    except (OSError, ValueError) as e:  # no network, a refused or stalled connection, a truncated body
        raise DataError(f"could not download {ARCHIVE_URL} ({type(e).__name__}: {e}); download {ARCHIVE_NAME} on a "
                        f"machine with internet (md5 {ARCHIVE_MD5}) and pass --archive PATH") from None
    if file_md5(target) != ARCHIVE_MD5:
        target.unlink()
        raise DataError(f"the download of {ARCHIVE_URL} is not the official archive (md5 {ARCHIVE_MD5}; a proxy "
                        "page or a truncated file?): removed; try again, or pass --archive PATH")
    return target


@dataclass
class BuildResult:
    output: Optional[Path]  # None when an unverified file was not kept
    sha256: str
    arrays_sha256: str
    verified: str  # "bytes": byte-identical; "arrays": same arrays, other zip bytes; "no": differs
    source: Source
    shapes: dict


def build_exact_subset(archive: Optional[Path], output: Path, *, download_to: Optional[Path] = None,
                       keep_unverified: bool = False, log: Log = None) -> BuildResult:
    """Build the subset from `archive` (None: `download_to`/cifar-10-python.tar.gz, downloaded when missing) into
    `output`, and check it against the published sha256. A file that differs is removed unless `keep_unverified`
    (a DataError says so); a downloaded archive must have the official md5."""
    if archive is None:
        archive = download_archive(download_to, log)
    raw, source = _read_members(Path(archive), log)
    if log:
        n = len(source.official_batches)
        log(f"read {TRAIN_BATCHES[0]}..{TRAIN_BATCHES[-1][-1]} and {TEST_BATCH}: {n} of 6 are byte-identical to the "
            "official batches (md5)")
    arrays = subset_arrays(raw, Path(archive))
    data = npz_bytes(arrays)
    sha = hashlib.sha256(data).hexdigest()
    content = arrays_digest(arrays)
    verified = "bytes" if sha == EXACT_SUBSET_SHA256 else "arrays" if content == ARRAYS_SHA256 else "no"
    shapes = {k: [list(arrays[k].shape), str(arrays[k].dtype)] for k in KEYS}
    from ..runs import atomic_write_bytes
    if verified == "no" and not keep_unverified:
        raise DataError(f"the subset built from {archive} is not the published one (sha256 {sha}, published "
                        f"{EXACT_SUBSET_SHA256}; its arrays differ too): not written. Use the official {ARCHIVE_NAME} "
                        f"(md5 {ARCHIVE_MD5}), or pass --keep-unverified to keep it anyway")
    atomic_write_bytes(output, data)
    if log:
        what = {"bytes": "byte-identical to the published file",
                "arrays": "its arrays are the published ones (zlib compressed them to other bytes)",
                "no": "NOT the published subset (kept because of --keep-unverified)"}[verified]
        log(f"wrote {output}: sha256 {sha}; {what}")
    return BuildResult(output, sha, content, verified, source, shapes)


def check_file(path: Path) -> dict:
    """A data file against its published sha256 (by file name): {path, sha256, published, ok}."""
    path = Path(path)
    if not path.is_file():
        return {"path": str(path), "exists": False}
    sha = file_sha256(path)
    published = PUBLISHED.get(path.name)
    out = {"path": str(path), "exists": True, "sha256": sha, "published": published,
           "ok": None if published is None else sha == published}
    if published is not None and sha != published and path.name == EXACT_SUBSET_NAME:
        try:
            with np.load(path, allow_pickle=False) as f:
                out["arrays_ok"] = arrays_digest({k: f[k] for k in KEYS}) == ARRAYS_SHA256
        except Exception:  # not a readable npz: the sha256 already says it differs
            out["arrays_ok"] = False
    return out
