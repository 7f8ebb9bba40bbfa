import json
import subprocess
import sys

import pytest
import yaml

from robustlth.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "robustlth", *args], capture_output=True, text=True)


def test_models_lists_counts():
    r = run_cli("models")
    assert r.returncode == 0
    assert "11,173,962" in r.stdout and "46,160,474" in r.stdout and "resnet18" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["train", "--model", "nosuch"], "available models are vgg11"),
    (["train", "--lr", "-1"], "lr=-1.0"),
    (["train", "--eps", "2"], "eps=2.0"),
    (["train", "--data", "npz:/no/such.npz", "--model", "cnn6"], "/no/such.npz does not exist"),
    (["train", "--epochs", "two"], "invalid epochs value 'two'"),
    (["eval", "--checkpoint", "/no/run"], "not a run directory"),
    (["eval", "--checkpoint", "/no/run", "--attacks", "pgdfoo"], "unknown attack 'pgdfoo'"),
])
def test_bad_input_is_one_clear_line(args, needle):
    r = run_cli(*args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_train_writes_run_directory(tmp_path, capsys):
    rc = main(["train", "--model", "cnn6", "--width", "0.25", "--data", "synthetic", "--n-train", "300",
               "--n-test", "100", "--epochs", "1", "--eval-n", "50", "--eval-steps", "2", "--batch-size", "64",
               "--out", str(tmp_path), "--no-progress", "--device", "cpu"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run = tmp_path / out["run_dir"].split("/")[-1]
    for f in ("config.yaml", "env.json", "metrics.jsonl", "checkpoint.pt", "result.json"):
        assert (run / f).exists(), f
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["model"] == "cnn6" and cfg["train"]["epochs"] == 1
    env = json.loads((run / "env.json").read_text())
    assert {"torch", "git_commit", "seed", "device"} <= set(env)
    # Same config again: same directory, nothing retrained (the run is complete on disk).
    rc = main(["train", "--model", "cnn6", "--width", "0.25", "--data", "synthetic", "--n-train", "300",
               "--n-test", "100", "--epochs", "1", "--eval-n", "50", "--eval-steps", "2", "--batch-size", "64",
               "--out", str(tmp_path), "--no-progress", "--device", "cpu"])
    assert rc == 0 and len(list(tmp_path.iterdir())) == 1
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_train_from_yaml_with_flag_override(tmp_path):
    cfgfile = tmp_path / "c.yaml"
    cfgfile.write_text(yaml.safe_dump({"model": {"model": "cnn6", "width": 0.25},
                                       "data": {"data": "synthetic", "n_train": 200, "n_test": 50},
                                       "train": {"epochs": 1, "eval_n": 20, "eval_steps": 1, "batch_size": 50}}))
    rc = main(["train", "--config", str(cfgfile), "--lr", "0.02", "--out", str(tmp_path / "runs"),
               "--no-progress", "--device", "cpu"])
    assert rc == 0
    (run,) = (tmp_path / "runs").iterdir()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["train"]["lr"] == 0.02 and cfg["train"]["epochs"] == 1 and cfg["model"]["width"] == 0.25


@pytest.mark.extended
def test_find_ticket_then_train_the_ticket(tmp_path, capsys):
    common = ["--data", "synthetic", "--n-train", "200", "--n-test", "50", "--out", str(tmp_path), "--no-progress",
              "--device", "cpu"]
    assert main(["find-ticket", "--model", "cnn6", "--width", "0.25", "--search-epochs", "1",
                 "--search-batch-size", "50", "--search-eval-n", "20", "--search-eval-steps", "1", *common]) == 0
    found = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert found["sparsity"] == pytest.approx(0.8, abs=1e-4)
    summary = json.loads((tmp_path / found["ticket"].split("/")[-2] / "result.json").read_text())
    density = summary["layer_density"]  # per layer, so a layer pruned to nothing cannot hide in the total
    assert len(density) >= 6 and all(0 < d <= 1 for d in density.values())
    ticket = found["ticket"]
    assert main(["control", "--ticket", ticket, "--kind", "reinit", "--output", str(tmp_path / "reinit.pt")]) == 0
    capsys.readouterr()
    assert main(["train", "--mask", ticket, "--epochs", "2", "--attack", "fgsm", "--batch-size", "50",
                 "--eval-n", "20", "--eval-steps", "1", *common]) == 0
    run = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"]
    cfg = yaml.safe_load((tmp_path / run.split("/")[-1] / "config.yaml").read_text())
    assert cfg["model"]["model"] == "cnn6" and cfg["model"]["width"] == 0.25  # taken from the ticket
    assert cfg["train"]["warmup_start_lr"] == 0.01 and cfg["train"]["warmup_epochs"] == 0.5
    r = run_cli("train", "--mask", ticket, "--model", "vgg16", *common)
    assert r.returncode == 2 and "is a ticket for cnn6" in r.stderr


def test_every_flag_of_every_command_has_help():
    import argparse
    from robustlth.cli import SECTIONS, build_parser

    def commands(parser, prefix=()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield (*prefix, name), sub
                    yield from commands(sub, (*prefix, name))
    missing, seen = [], []
    for path, sub in commands(build_parser()):
        seen.append(" ".join(path))
        for a in sub._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not (a.help or "").strip() or a.help == argparse.SUPPRESS:
                missing.append(f"{' '.join(path)} {'/'.join(a.option_strings) or a.dest}")
    assert not missing, missing
    assert {"report", "control", "data build", "data check", "export", "eval"} <= set(seen)
    # --config names exactly the YAML sections the command reads; no help cites a SPEC that does not ship
    parser = build_parser()
    for name, secs in SECTIONS.items():
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        text = sub.format_help()
        assert "SPEC" not in text, name
        config = next(a for a in sub._actions if a.dest == "config")
        assert config.help.startswith(f"YAML file with the sections {', '.join(secs)} "), name
