"""Safe and strict: files load without running code, appends never follow links, run directories are locked
and keyed by the data's content, degenerate tickets are refused, and genuine bugs still surface."""
import argparse
import os
import pickle
import stat

import numpy as np
import pytest
import torch

import robustlth.cli as cli
from faults import TINY_SEARCH, TINY_TRAIN as TINY
from robustlth.bench.config import BenchSetup, FinalEvalConfig
from robustlth.bench.harness import headline
from robustlth.bench.report import render_markdown
from robustlth.config import DataConfig, PruneConfig, TrainConfig, add_config_args, config_from_args, config_hash
from robustlth.errors import FileFormatError, RunLockedError
from robustlth.pruning.finder import SearchTraining, check_layers
from robustlth.pruning.masks import sparsity_report
from robustlth.pruning import TicketError
from robustlth.runs import RunDir, atomic_write_text



class Payload:
    """Unpickling this runs a shell command that creates `marker`: what a crafted checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def craft(path, marker, raw=False):
    """A checkpoint-, ticket- or data-shaped file that executes code when unpickled."""
    obj = {"format": "robustlth-ticket-v1", "model": Payload(marker), "mask": {}, "state_dict": {},
           "meta": {"model": "cnn6", "width": 0.25}, "payload": Payload(marker)}
    if raw:
        with open(path, "wb") as fh:
            pickle.dump(obj, fh)
    else:
        torch.save(obj, path)


def refused(argv, marker, capsys, progress_lines=False):
    """Exit 2 with one error line (after progress lines, in a long pipeline) and the file's code never ran."""
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "refused unloaded" in err[-1] and err[-1].startswith(f"robustlth {argv[0]}: error:"), err
    assert len(err) == 1 or (progress_lines and not any("error" in line for line in err[:-1])), err
    assert not os.path.exists(marker), "the crafted file ran code"


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    assert cli.main(["train", *TINY, "--out", str(out)]) == 0
    (run,) = out.glob("train_*")
    return run


@pytest.mark.parametrize("raw", [False, True], ids=["torch-zip", "raw-pickle"])
def test_crafted_checkpoint_is_refused_on_resume_and_eval(train_run, tmp_path, capsys, raw):
    marker = tmp_path / "pwned"
    good = train_run / "checkpoint.pt"
    saved = good.read_bytes()
    try:
        craft(good, marker, raw)
        refused(["train", *TINY, "--out", train_run.parent], marker, capsys)
        refused(["eval", "--checkpoint", train_run, "--n", "5", "--attacks", "pgd1"], marker, capsys)
    finally:
        good.write_bytes(saved)


def test_crafted_ticket_is_refused_by_train_and_control(tmp_path, capsys):
    marker, ticket = tmp_path / "pwned", tmp_path / "ticket.pt"
    craft(ticket, marker)
    refused(["train", *TINY, "--mask", ticket, "--out", tmp_path / "runs"], marker, capsys)
    refused(["control", "--ticket", ticket, "--kind", "reinit", "--output", tmp_path / "c.pt"], marker, capsys)
    assert not (tmp_path / "runs").exists()


SEARCH = ["find-ticket", *TINY_SEARCH, "--rounds", "2", "--rewind-iteration", "1"]


@pytest.mark.faults
@pytest.mark.parametrize("path", ["round ticket", "final ticket", "rewind state", "search checkpoint"])
def test_crafted_files_are_refused_when_a_search_resumes(tmp_path, capsys, path):
    out, marker = tmp_path / "runs", tmp_path / "pwned"
    argv = [*SEARCH, "--out", out]
    assert cli.main([str(a) for a in argv]) == 0
    (ticket_dir,), (search_dir,) = out.glob("ticket_*"), out.glob("search_*")
    if path == "final ticket":  # the search is done: find-ticket loads its ticket
        craft(ticket_dir / "ticket.pt", marker)
    elif path == "round ticket":  # round 1 is done: the resumed search loads its ticket
        (ticket_dir / "result.json").unlink()
        craft(ticket_dir / "round_1" / "ticket.pt", marker)
    else:  # round 1 is redone: it loads the (done) search training's weights
        (ticket_dir / "result.json").unlink()
        (ticket_dir / "round_1" / "result.json").unlink()
        craft(search_dir / ("rewind.pt" if path == "rewind state" else "checkpoint.pt"), marker)
    refused(argv, marker, capsys)


@pytest.mark.faults
def test_crafted_checkpoint_is_refused_when_a_bench_arm_resumes(tmp_path, capsys):
    out, marker = tmp_path / "runs", tmp_path / "pwned"
    argv = ["bench", "--preset", "smoke", "--final-attacks", "", "--dense-epochs", "1", "--device", "cpu",
            "--no-progress", "--out", out]
    assert cli.main([str(a) for a in argv]) == 0
    (bench,) = out.glob("bench_*")
    (dense,) = out.glob("arm-dense_*")
    (bench / "result.json").unlink()
    (dense / "result.json").unlink()
    craft(dense / "checkpoint.pt", marker)
    refused(argv, marker, capsys, progress_lines=True)  # "benchmark directory: ...", "--- arm dense ---"


def test_crafted_data_file_is_refused(tmp_path, capsys):
    marker, path = tmp_path / "pwned", tmp_path / "data.npz"
    x = np.zeros((10, 32, 32, 3), np.uint8)
    np.savez(path, x_train=x, y_train=np.array([Payload(marker)] * 10, dtype=object), x_test=x,
             y_test=np.arange(10))
    capsys.readouterr()
    assert cli.main(["train", *TINY, "--data", f"npz:{path}", "--out", str(tmp_path / "runs")]) == 2
    assert "not a readable .npz" in capsys.readouterr().err and not marker.exists()


def test_atomic_files_keep_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_metrics_never_follow_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = RunDir(tmp_path / "run")
    run.file("metrics.jsonl").symlink_to(victim)
    with pytest.raises(FileFormatError, match="symbolic link"):
        run.log({"epoch": 1})
    run.rewrite_metrics([{"epoch": 1}])  # what a (re)started training does first: replaces the link itself
    run.log({"epoch": 2})
    assert victim.read_text() == "precious\n"
    assert not run.file("metrics.jsonl").is_symlink() and len(run.metrics()) == 2


def test_a_locked_run_directory_is_already_running_and_stale_tmp_files_go(tmp_path):
    run = RunDir(tmp_path / "run")
    stale = run.file(".checkpoint.pt.abc.tmp")
    stale.write_bytes(b"half a checkpoint")
    with run.lock():
        assert not stale.exists()
        with pytest.raises(RunLockedError, match="already running"):
            with RunDir(tmp_path / "run").lock():
                pass
    with RunDir(tmp_path / "run").lock():  # released when the holder is done (or dies)
        pass


def test_run_identity_follows_the_data_files_content(tmp_path):
    path = tmp_path / "d.npz"
    x = np.zeros((10, 32, 32, 3), np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(10), x_test=x, y_test=np.arange(10))
    cfg = DataConfig(data=f"npz:{path}")
    first = config_hash("train", {"data": cfg})
    assert config_hash("train", {"data": cfg}) == first
    np.savez(path, x_train=x + 1, y_train=np.arange(10), x_test=x, y_test=np.arange(10))
    os.utime(path, ns=(1, 1))  # a different mtime too, as a real replacement would have
    assert config_hash("train", {"data": cfg}) != first
    # Sources without a file keep their hashes (the golden hashes in test_config).
    assert "content_sha256" not in DataConfig(data="synthetic").identity()


def test_a_layer_pruned_to_nothing_is_an_error_unless_allowed():
    mask = {"a.weight": torch.zeros(4, 3, dtype=torch.bool), "b.weight": torch.ones(2, 4, dtype=torch.bool)}
    report = sparsity_report(mask)
    with pytest.raises(TicketError, match="left no weights in a.weight"):
        check_layers(report, PruneConfig(strategy="global", ratio=0.97), 1)
    said = []
    check_layers(report, PruneConfig(strategy="global", ratio=0.97, allow_empty_layers=True), 1, said.append)
    assert said and said[0].startswith("warning:") and "a.weight" in said[0]


def test_fraction_flags_as_the_help_prints_them():
    parser = argparse.ArgumentParser()
    add_config_args(parser, TrainConfig)
    from robustlth.config import AttackConfig
    add_config_args(parser, AttackConfig)
    args = parser.parse_args(["--eps", "8/255", "--milestones", "1/2,3/4"])
    assert config_from_args(AttackConfig, args).eps == 8 / 255
    assert config_from_args(TrainConfig, args).milestones == (0.5, 0.75)


def test_an_empty_final_attack_list_means_no_final_evaluation():
    b = BenchSetup(final=FinalEvalConfig(final_attacks=()))
    arm = {"curve": [{"epoch": 1, "wall_clock": 1.0, "clean": 0.5, "pgd20": 0.3, "loss": 1.0, "eval_loss": 1.0}],
           "total_time": 2.0, "search_time": 0.0, "train_time": 2.0, "eval_time": 0.1, "epochs": 1, "sparsity": 0.0,
           "stopped": None, "eval_split": "val", "final": None}
    arms = {"dense": arm, "ticket": {**arm, "sparsity": 0.8}}
    h = headline(arms, b)
    assert "final_clean_diff" not in h
    results = {"config": {**b.to_dict(), "model": {"model": "cnn6", "width": 1.0}, "data": {"data": "x"}},
               "environment": {}, "headline": h, "arms": arms}
    assert "No final test-set evaluation" in render_markdown(results, [])


def test_the_cli_does_not_turn_bugs_into_bad_input(monkeypatch):
    def bug(args):
        raise KeyError("a genuine bug")
    monkeypatch.setattr(cli, "cmd_models", bug)
    with pytest.raises(KeyError):
        cli.main(["models"])


def test_two_searches_never_train_the_same_search_directory(tmp_path, capsys):
    """A second search needing the same dense training (another ratio) is told it is already running."""
    argv = ["find-ticket", "--model", "cnn6", "--width", "0.25", "--data", "synthetic", "--n-train", "100",
            "--search-epochs", "1", "--device", "cpu", "--no-progress", "--out", str(tmp_path)]
    spec = cli.search_spec_from_args(cli.build_parser().parse_args(argv), {})
    stage = SearchTraining(spec)  # the directory as the first search made it
    held = RunDir.create_at(stage.path(tmp_path), stage.hash(), stage.record())
    with held.lock():  # the first search, still training
        capsys.readouterr()
        assert cli.main([*argv, "--ratio", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already running" in err[0] and str(held.path) in err[0]
    assert not list(held.path.glob("*.pt"))  # nothing trained
