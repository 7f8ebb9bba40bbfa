"""`robustlth data build|check` and the data-finding rule: the exact subset rebuilt from a cifar-10-python archive
(synthetic ones here, laid out as the official one), pickles read by the restricted unpickler only."""
import hashlib
import io
import json
import pickle
import tarfile

import numpy as np
import pytest

from robustlth.cli import main
from robustlth.data.build import (ARRAYS_SHA256, EXACT_SUBSET_SHA256, ROWS, DataError, arrays_digest,
                                  build_exact_subset, read_batch)

BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")


def batch_pickle(x_nhwc: np.ndarray, y: np.ndarray, name: str) -> bytes:
    """A batch as the official archive stores it: a protocol-2 pickle of a dict with bytes keys, the images as
    (N, 3072) uint8 rows (channel-major), the labels a list."""
    d = {b"batch_label": name.encode(), b"labels": [int(v) for v in y],
         b"data": np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)).reshape(len(y), 3072),
         b"filenames": [f"img_{i}.png".encode() for i in range(len(y))]}
    return pickle.dumps(d, protocol=2)


def write_archive(path, batches: dict) -> None:
    """cifar-10-python.tar.gz: cifar-10-batches-py/<batch> members (plus the readme and meta files it has)."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        members = {**batches, "batches.meta": pickle.dumps({b"label_names": [b"airplane"]}, protocol=2),
                   "readme.html": b"<html></html>"}
        for name, raw in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def synthetic_batches(n: int, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for b in BATCHES:  # random first rows, the rest black: the archive and the npz compress fast
        x = np.zeros((n, 32, 32, 3), np.uint8)
        x[:, 0] = rng.integers(0, 256, (n, 32, 3), dtype=np.uint8)
        arrays[b] = (x, rng.integers(0, 10, n))
    return {b: batch_pickle(x, y, b) for b, (x, y) in arrays.items()}, arrays


def test_a_small_synthetic_archive_builds_the_subset_layout(tmp_path):
    raw, arrays = synthetic_batches(ROWS + 3)
    write_archive(tmp_path / "cifar-10-python.tar.gz", raw)
    out = tmp_path / "data" / "cifar10_exact_subset.npz"
    # Not the published subset: refused (nothing written) unless kept on purpose.
    with pytest.raises(DataError, match="not the published one"):
        build_exact_subset(tmp_path / "cifar-10-python.tar.gz", out)
    assert not out.exists()
    r = build_exact_subset(tmp_path / "cifar-10-python.tar.gz", out, keep_unverified=True)
    assert r.verified == "no" and r.source.archive_md5 is not None and r.source.official_batches == []
    with np.load(out, allow_pickle=False) as f:
        assert f.files == ["x_train", "y_train", "x_test", "y_test"]
        assert f["x_train"].shape == (5 * ROWS, 32, 32, 3) and f["x_train"].dtype == np.uint8
        assert f["y_train"].dtype == np.int64 and f["x_test"].shape == (ROWS, 32, 32, 3)
        # rows 0..1016 of each training batch, in batch order; rows 0..1016 of the test batch
        for i, b in enumerate(BATCHES[:5]):
            assert np.array_equal(f["x_train"][i * ROWS:(i + 1) * ROWS], arrays[b][0][:ROWS])
            assert np.array_equal(f["y_train"][i * ROWS:(i + 1) * ROWS], arrays[b][1][:ROWS])
        assert np.array_equal(f["x_test"], arrays["test_batch"][0][:ROWS])
    # The extracted folder works as well as the archive.
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for b, data in raw.items():
        (folder / b).write_bytes(data)
    again = build_exact_subset(tmp_path, tmp_path / "again.npz", keep_unverified=True)
    assert again.sha256 == r.sha256


def test_the_published_subset_is_rebuilt_byte_for_byte(exact_npz, tmp_path, capsys):
    """The shared subset's arrays re-packed as an official-layout archive give back its exact bytes."""
    with np.load(exact_npz, allow_pickle=False) as f:
        a = {k: f[k] for k in f.files}
    assert arrays_digest(a) == ARRAYS_SHA256
    rng = np.random.default_rng(1)
    raw = {}
    for i, b in enumerate(BATCHES):
        x, y = (a["x_test"], a["y_test"]) if b == "test_batch" else \
            (a["x_train"][i * ROWS:(i + 1) * ROWS], a["y_train"][i * ROWS:(i + 1) * ROWS])
        extra = 40  # rows past 1016 are not in the subset
        x = np.concatenate([x, rng.integers(0, 256, (extra, 32, 32, 3), dtype=np.uint8)])
        y = np.concatenate([y, rng.integers(0, 10, extra)])
        raw[b] = batch_pickle(x, y, b)
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_archive(archive, raw)
    out = tmp_path / "built" / "cifar10_exact_subset.npz"
    assert main(["data", "build", "--archive", str(archive), "--output", str(out)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["verified"] == "bytes" and line["sha256"] == EXACT_SUBSET_SHA256
    assert hashlib.sha256(out.read_bytes()).hexdigest() == EXACT_SUBSET_SHA256
    assert main(["data", "check", str(out)]) == 0
    assert "ok (the published sha256)" in capsys.readouterr().err


class _Boom:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_the_unpickler_rebuilds_arrays_only():
    with pytest.raises(DataError, match=r"refused: it names (posix|os|nt)\.system"):
        read_batch(pickle.dumps({b"data": _Boom(), b"labels": []}, protocol=2), "crafted batch")
    import datetime
    with pytest.raises(DataError, match=r"refused: it names datetime\.date"):
        read_batch(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [datetime.date(2020, 1, 1)]}),
                   "with a date")
    with pytest.raises(DataError, match=r"not a \(N, 3072\) uint8 array"):
        read_batch(pickle.dumps({b"data": np.zeros((1, 5), np.uint8), b"labels": [0]}), "short rows")
    with pytest.raises(DataError, match="labels are not integers 0..9"):
        read_batch(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [12]}), "bad label")
    x, y = read_batch(pickle.dumps({b"data": np.arange(3072, dtype=np.uint8)[None], b"labels": [3]}), "ok")
    assert x.shape == (1, 32, 32, 3) and x[0, 0, 1, 0] == 1 and x[0, 0, 0, 1] == 1024 % 256 and y.tolist() == [3]


def test_bad_archives_are_one_line(tmp_path, capsys):
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    assert main(["data", "build", "--archive", str(tmp_path / "junk.tar.gz"), "--output", str(tmp_path / "o.npz")]) == 2
    assert "not a readable .tar.gz archive" in capsys.readouterr().err
    with tarfile.open(tmp_path / "empty.tar.gz", "w:gz"):
        pass
    assert main(["data", "build", "--archive", str(tmp_path / "empty.tar.gz"), "--output", str(tmp_path / "o.npz")]) == 2
    assert "has no member cifar-10-batches-py/data_batch_1" in capsys.readouterr().err
    assert main(["data", "build", "--archive", str(tmp_path / "nope.tar.gz"), "--output", str(tmp_path / "o.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


def test_one_data_finding_rule(tmp_path, monkeypatch, capsys):
    from robustlth import shared_data
    monkeypatch.setenv("ROBUSTLTH_DATA", str(tmp_path / "mine"))
    folders = shared_data.data_folders()
    assert folders[0] == tmp_path / "mine" and folders[-1] == shared_data.SHARED_DATA
    assert shared_data.find_data_file("nothing.npz") is None
    assert shared_data.named_data_file("nothing.npz") == tmp_path / "mine" / "nothing.npz"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "cifar10_exact_subset.npz").write_bytes(b"x")
    assert shared_data.find_data_file("cifar10_exact_subset.npz") == tmp_path / "mine" / "cifar10_exact_subset.npz"
    # check: a file under a published name that differs is reported (exit 2)
    assert main(["data", "check"]) == 2
    err = capsys.readouterr().err
    assert "searched in this order" in err and "DIFFERS from the published sha256" in err
    # Every preset that reads the subset names the same file, found by the rule.
    from robustlth.ablate import PRESETS as ABLATE
    from robustlth.bench import PRESETS as BENCH
    from robustlth.locality import PRESETS as LOCALITY
    from robustlth.lth import PRESETS as LTH
    from robustlth.sweep import PRESETS as SWEEP
    sources = {p["cpu"]["data"]["data"] for p in (ABLATE, BENCH, LOCALITY, LTH, SWEEP)}
    assert sources == {shared_data.EXACT_SUBSET_SOURCE}


def test_download_is_md5_checked_and_a_failed_one_is_one_line(tmp_path, monkeypatch, capsys):
    import urllib.request
    from robustlth.data import build
    raw, _ = synthetic_batches(ROWS)
    write_archive(tmp_path / "served.tar.gz", raw)
    served = (tmp_path / "served.tar.gz").read_bytes()

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(served))}

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Response(served))
    monkeypatch.setenv("ROBUSTLTH_DATA", str(tmp_path / "data"))
    # Not the official md5 (a proxy page, say): removed, one line.
    assert main(["data", "build"]) == 2
    assert "is not the official archive" in capsys.readouterr().err
    assert not (tmp_path / "data" / "cifar-10-python.tar.gz").exists()
    # With the served file's md5 taken as the official one, the download is kept and the subset built from it.
    monkeypatch.setattr(build, "ARCHIVE_MD5", hashlib.md5(served).hexdigest())
    assert main(["data", "build", "--keep-unverified"]) == 0
    assert (tmp_path / "data" / "cifar-10-python.tar.gz").read_bytes() == served
    assert (tmp_path / "data" / "cifar10_exact_subset.npz").is_file()

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("ROBUSTLTH_DATA", str(tmp_path / "other"))
    assert main(["data", "build"]) == 2
    assert "could not download" in capsys.readouterr().err
