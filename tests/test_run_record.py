"""A run directory keeps the record of the environment that first ran it."""
import json

import robustlth.runs as runs


def test_reopening_from_another_commit_keeps_the_first_record(tmp_path, monkeypatch):
    run = runs.RunDir.create(tmp_path, "bench", "abc", {"a": 1}, seed=3)
    first = json.loads((run.path / "env.json").read_text())
    assert first["seed"] == 3 and "reopened_with" not in first
    runs.RunDir.create(tmp_path, "bench", "abc", {"a": 1}, seed=3)  # same commit: unchanged
    assert json.loads((run.path / "env.json").read_text()) == first
    real = runs.environment
    monkeypatch.setattr(runs, "environment", lambda device=None: {**real(device), "git_commit": "f00d"})
    runs.RunDir.create(tmp_path, "bench", "abc", {"a": 1}, seed=3)
    env = json.loads((run.path / "env.json").read_text())
    assert env["git_commit"] == first["git_commit"] and env["reopened_with"][0]["git_commit"] == "f00d"
