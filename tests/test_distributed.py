"""Data parallelism on CPU (gloo, two processes started as torchrun starts them): the ranks stay identical,
train like one process with the same global batch, keep a ticket's pruned weights at zero, resume exactly
after a kill, and all stop with a clear error when one dies; a benchmark runs data-parallel with one writer."""
import json
import signal
import sys
import time

import pytest
import torch

from ddp import WORKER, finish, launch
from faults import assert_same_runs

TRAIN = ["-m", "robustlth", "train", "--model", "cnn6", "--width", "0.25", "--data", "synthetic", "--n-train",
         "192", "--n-test", "64", "--eval-n", "32", "--eval-steps", "1", "--batch-size", "32", "--attack", "pgd",
         "--attack-steps", "2", "--device", "cpu", "--no-progress", "--dist-timeout", "30"]


def _worker(tmp_path, world: int, mode: str = "dense") -> list[dict]:
    results = finish(launch(["-c", WORKER, tmp_path, mode], world))
    for rc, _, err in results:
        assert rc == 0, err[-2000:]
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]


@pytest.mark.extended
def test_two_processes_stay_identical_and_train_like_one(tmp_path):
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    (single,) = _worker(tmp_path / "one", 1)
    r0, r1 = _worker(tmp_path / "two", 2)
    for name, value in r0["state"].items():
        assert torch.equal(value, r1["state"][name]), name  # averaged gradients, same updates, shared BN stats
    # The same global batches, split over two processes: the loss curve of one process with the same batch,
    # up to per-process BatchNorm statistics and attack random starts.
    assert r0["loss"] == r1["loss"]
    for a, b in zip(r0["loss"], single["loss"]):
        assert abs(a - b) < 0.05 * b, (r0["loss"], single["loss"])
    assert r0["history"][-1]["eval_clean"] == r1["history"][-1]["eval_clean"]


def test_masked_ticket_keeps_pruned_weights_zero_on_every_rank(tmp_path):
    r0, r1 = _worker(tmp_path, 2, "mask")
    for name, m in r0["mask"].items():
        for r in (r0, r1):
            w = r["state"]["net." + name] if "net." + name in r["state"] else r["state"][name]
            assert torch.count_nonzero(w[~m]) == 0, name
            assert torch.count_nonzero(w[m]) > 0.9 * m.sum()


@pytest.mark.extended
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    argv = TRAIN + ["--epochs", "3"]
    for rc, _, err in finish(launch(argv + ["--out", tmp_path / "ref"], 2)):
        assert rc == 0, err[-2000:]
    out = tmp_path / "killed"
    procs = launch(argv + ["--out", out], 2)
    deadline = time.time() + 180
    while not list(out.glob("train_*/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.2)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    finish(procs)
    (run,) = out.glob("train_*")
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] < 3, "killed too late to test resuming"
    results = finish(launch(argv + ["--out", out], 2))
    assert [rc for rc, _, _ in results] == [0, 0], results[0][2][-2000:]
    assert assert_same_runs(tmp_path / "ref", out) >= 4


@pytest.mark.extended
def test_a_dead_rank_stops_every_rank_with_a_clear_error(tmp_path):
    procs = launch(TRAIN + ["--epochs", "50", "--out", tmp_path], 2)
    deadline = time.time() + 180
    while not list(tmp_path.glob("train_*/metrics.jsonl")) and time.time() < deadline:
        time.sleep(0.2)  # both ranks are training
    procs[1].send_signal(signal.SIGKILL)
    t0 = time.time()
    rc, _, err = finish(procs[:1], timeout=120)[0]
    assert time.time() - t0 < 60
    assert rc == 2
    assert "another process of this run failed or stopped answering" in err, err[-2000:]
    assert err.strip().count("\n") == 0 or "Traceback" not in err


def test_bad_data_parallel_setups_are_one_clear_error(monkeypatch, capsys):
    from robustlth.cli import main
    from robustlth.distributed import start
    from robustlth.errors import ConfigError
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="--sync-bn needs GPUs"):
        start("cpu", sync_bn=True)
    assert main(["locality", "--preset", "smoke", "--device", "cpu"]) == 2
    assert "does not run under torchrun" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ConfigError, match="RANK=5"):
        start("cpu")


BENCH = ["-m", "robustlth", "bench", "--preset", "smoke", "--n-train", "200", "--arms", "dense,ticket",
         "--dense-epochs", "1", "--eval-n", "20", "--final-attacks", "pgd5", "--final-n", "50", "--device", "cpu",
         "--no-progress", "--dist-timeout", "60"]


@pytest.mark.extended
def test_bench_runs_data_parallel_with_one_writer(tmp_path):
    from robustlth.data import as_float, load_dataset
    from robustlth.evaluate import predict
    from robustlth.saved_model import open_checkpoint
    from robustlth.stats import unpack_flags
    results = finish(launch(BENCH + ["--out", tmp_path], 2))
    for rc, _, err in results:
        assert rc == 0, err[-2000:]
    assert results[1][1] == "" and "run_dir" in results[0][1]  # only the primary reports
    (found,) = tmp_path.glob("bench_*/result.json")
    r = json.loads(found.read_text())
    assert list(r["arms"]) == ["dense", "ticket"] and r["environment"]["world_size"] == 2
    dense = r["arms"]["dense"]
    assert dense["settings"]["world_size"] == 2
    final = dense["final"]
    assert final["n"] == 50 and [a["name"] for a in final["attacks"]] == ["pgd5"]
    # Each process classified and attacked its share of the 50 test images; the gathered verdicts are those of
    # the one model every process holds: the saved dense weights, evaluated here in one process, agree.
    saved = open_checkpoint(found.parent.parent / r["arm_dirs"]["dense"], torch.device("cpu"))
    x, y = as_float(load_dataset(saved.data).test, torch.device("cpu"), 50)
    correct, _ = predict(saved.model, x, y)
    clean, robust = unpack_flags(final["flags"]["clean"]), unpack_flags(final["flags"]["pgd5"])
    assert clean.tolist() == correct.tolist()
    assert len(robust) == 50 and not (robust & ~clean).any()
    assert final["worst_case"] == pytest.approx(robust.mean())
    # Replicate seeds under torchrun: seed 0 is the run above (every arm loads from disk on both processes),
    # aggregated by the primary alone.
    results = finish(launch(BENCH + ["--out", tmp_path, "--seeds", "0"], 2))
    for rc, _, err in results:
        assert rc == 0, err[-2000:]
    assert results[1][1] == "" and "aggregate_dir" in results[0][1]
    assert [p.parent.name for p in tmp_path.glob("bench_*/result.json")] == [found.parent.name]
    (agg,) = tmp_path.glob("benchseeds_*/aggregate.json")
    assert json.loads(agg.read_text())["runs"] == {"0": found.parent.name}
    assert json.loads(found.read_text())["arms"] == r["arms"]  # reused, not retrained
