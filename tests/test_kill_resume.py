"""Fault injection (b): SIGKILL at random points (bounded delays, real subprocesses) and inside atomic writes,
during train, IMP, bench and ablate; every resumed run must equal the uninterrupted one exactly (weights,
optimiser and RNG states, histories, tickets, results), timings excluded. The kills inside a write run in the
default suite; the random kills across all four commands run with `-m faults`."""
import random

import pytest
import torch

from faults import assert_same_runs, cli, files, kill_after, kill_in_write, timed_cli

COMMON = ["--data", "synthetic", "--n-test", "100", "--device", "cpu", "--threads", "1", "--no-progress"]
TRAIN = ["train", "--model", "cnn6", "--width", "0.25", "--n-train", "300", "--epochs", "3", "--eval-n", "50",
         "--eval-steps", "2", "--batch-size", "50", "--attack", "fgsm_rs", *COMMON]
IMP = ["find-ticket", "--model", "cnn6", "--width", "0.25", "--n-train", "300", "--rounds", "2", "--ratio", "0.5",
       "--search-epochs", "2", "--search-batch-size", "50", "--search-eval-n", "50", "--search-eval-steps", "1",
       "--rewind-iteration", "3", *COMMON]
BENCH = ["bench", "--preset", "smoke", "--final-attacks", "pgd3", "--final-n", "40", *COMMON[-5:]]
ABLATE = ["ablate", "--preset", "smoke", "--grid-search-lr", "0.01", "--grid-width", "0.25", "--grid-ratio",
          "0.5,0.8", *COMMON[-5:]]


def _no_tmp(root):
    return not [f for f in files(root) if f.endswith(".tmp")]


@pytest.mark.extended
def test_kill_inside_a_checkpoint_write_resumes_identically(tmp_path):
    cli(*TRAIN, "--out", tmp_path / "ref")
    out = tmp_path / "killed"
    assert kill_in_write("checkpoint.pt", 2, *TRAIN, "--out", out) == -9
    (run,) = out.glob("train_*")
    assert [f for f in files(run) if f.endswith(".tmp")], "the kill should leave the temporary checkpoint"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2  # epoch 2 logged, not checkpointed
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1
    cli(*TRAIN, "--out", out)
    assert _no_tmp(out) and len((run / "metrics.jsonl").read_text().splitlines()) == 3  # no line doubled
    assert assert_same_runs(tmp_path / "ref", out) >= 4


@pytest.mark.faults  # 45 s: kept out of the default run, which stays under 10 minutes
def test_imp_round_killed_between_its_ticket_and_result_is_redone(tmp_path):
    cli(*IMP, "--out", tmp_path / "ref")
    out = tmp_path / "killed"
    assert kill_in_write("round_1/result.json", 1, *IMP, "--out", out) == -9
    (search,) = out.glob("ticket_*")
    assert (search / "round_1" / "ticket.pt").exists() and not (search / "round_1" / "result.json").exists()
    cli(*IMP, "--out", out)  # once failed on every re-run until files were deleted by hand
    assert assert_same_runs(tmp_path / "ref", out) >= 8


def _random_kills(tmp_path, argv, kills: int, seed: int):
    """Kill a run `kills` times at random points of its duration, finish it, compare with the reference."""
    duration = timed_cli(*argv, "--out", tmp_path / "ref")
    rng = random.Random(seed)
    out = tmp_path / "killed"
    points = [rng.uniform(0.1, 0.7) * duration for _ in range(kills)]  # each resumed run is killed again
    hits = 0
    for delay in points:
        hits += kill_after(delay, *argv, "--out", out)
    cli(*argv, "--out", out)
    compared = assert_same_runs(tmp_path / "ref", out)
    print(f"{argv[0]}: {kills} kills at {[round(p, 1) for p in points]} s of {duration:.1f} s, {hits} hit a "
          f"running process; {compared} files identical")
    assert hits >= 1 and compared >= 3


@pytest.mark.faults
@pytest.mark.parametrize("seed", [0, 1])
def test_train_killed_at_random_points_resumes_identically(tmp_path, seed):
    _random_kills(tmp_path, TRAIN, 3, seed)


@pytest.mark.faults
@pytest.mark.parametrize("seed", [0, 1])
def test_imp_killed_at_random_points_resumes_identically(tmp_path, seed):
    _random_kills(tmp_path, IMP, 3, seed)


@pytest.mark.faults
def test_imp_killed_inside_a_rewind_and_a_ticket_write(tmp_path):
    cli(*IMP, "--out", tmp_path / "ref")
    out = tmp_path / "killed"
    assert kill_in_write("rewind.pt", 1, *IMP, "--out", out) == -9
    assert kill_in_write("round_2/ticket.pt", 1, *IMP, "--out", out) == -9
    cli(*IMP, "--out", out)
    assert assert_same_runs(tmp_path / "ref", out) >= 8


@pytest.mark.faults
def test_bench_killed_at_random_points_and_inside_an_arm_write(tmp_path):
    _random_kills(tmp_path, BENCH, 3, 2)
    out = tmp_path / "killed_in_write"
    assert kill_in_write("result.json", 2, *BENCH, "--out", out) == -9  # the second arm's done marker
    cli(*BENCH, "--out", out)
    assert assert_same_runs(tmp_path / "ref", out) >= 10


@pytest.mark.faults
def test_ablate_killed_at_random_points_and_inside_a_cell_write(tmp_path):
    _random_kills(tmp_path, ABLATE, 3, 3)
    out = tmp_path / "killed_in_write"
    assert kill_in_write("result.json", 3, *ABLATE, "--out", out) == -9  # an arm or cell's done marker
    cli(*ABLATE, "--out", out)
    assert assert_same_runs(tmp_path / "ref", out) >= 10
