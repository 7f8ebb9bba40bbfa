"""The Python API and the custom-model example: a user's own nn.Module factory through ticket search, PGD
training and evaluation; its checkpoint opens with `robustlth eval`."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import robustlth as rl
from robustlth.config import ConfigError, ModelConfig
from robustlth.data.loader import TrainLoader
from robustlth.data.sources import Split
from robustlth.models import Normalized

ROOT = Path(__file__).resolve().parents[1]


def tiny_net(width: float = 1.0) -> nn.Module:
    c = max(1, int(8 * width))
    return Normalized(nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10)))


def no_width_net() -> nn.Module:
    return tiny_net()


def test_factory_names_resolve_and_errors_are_one_line():
    assert rl.model_name(tiny_net) == "test_api:tiny_net" or rl.model_name(tiny_net).endswith("test_api:tiny_net")
    assert rl.model_name("cnn6") == "cnn6"
    from robustlth.models import check_model_name  # the registry checks names; the config module knows no models
    with pytest.raises(ConfigError, match="cannot import"):
        check_model_name("no_such_pkg.mod:f")
    with pytest.raises(ConfigError, match="has no callable"):
        check_model_name("robustlth.api:nope")
    with pytest.raises(ConfigError, match="not importable by name"):
        rl.model_name(lambda: tiny_net())
    from robustlth.datasets import CIFAR10
    from robustlth.models import build_model
    name = rl.model_name(no_width_net)
    with pytest.raises(ConfigError, match="width must be 1"):
        build_model(name, 0.5, CIFAR10)


def test_factory_digest_enters_the_run_hash():
    a = ModelConfig(model=rl.model_name(tiny_net)).identity()
    assert len(a["factory_sha256"]) >= 12
    assert "factory_sha256" not in ModelConfig(model="cnn6").identity()


def test_loader_keeps_non_32_pixel_images():
    split = Split(torch.randint(0, 256, (8, 3, 40, 24), dtype=torch.uint8), torch.arange(8) % 10)
    xb, _ = next(TrainLoader(split, 4, torch.device("cpu"), seed=0, augment=True).epoch(0))
    assert tuple(xb.shape) == (4, 3, 40, 24)


def test_api_ticket_train_evaluate_and_cli_eval(tmp_path, capsys):
    data = rl.data_config("synthetic").replace(n_train=200, n_test=40, val_size=40)
    common = dict(batch_size=50, eval_n=20, out=tmp_path, device="cpu", log=None)
    ticket = rl.find_ticket(tiny_net, data, epochs=1, rounds=2, ratio=0.5, **common)
    assert ticket.meta.model.endswith("tiny_net") and abs(ticket.sparsity()["sparsity"] - 0.75) < 0.05
    (round2,) = tmp_path.glob("ticket_*/round_2")  # an IMP round's checkpoint opens on its own too
    assert rl.load_checkpoint(round2, "cpu", trust_factory=tiny_net).kind == "IMP round 2"
    trained = rl.adversarial_train(ticket, data, epochs=2, steps=2, eval_steps=2, **common)
    # The paper's warm-up is on by default for tickets: from the search LR over a quarter of the budget.
    assert trained.result.settings["warmup_epochs"] == 0.5
    r = rl.evaluate_model(trained.model, data, attacks=["pgd3"], n=30, log=None)
    assert r["n"] == 30 and r["worst_case"] <= r["clean"]
    saved = rl.load_checkpoint(trained.run_dir, "cpu", trust_factory=ticket.meta.model)
    assert saved.model_name == ticket.meta.model and saved.data == data and abs(saved.sparsity - 0.75) < 0.05
    assert (trained.run_dir / "run.log").read_text().count("ticket training epoch") == 2
    from robustlth.cli import main
    assert main(["eval", "--checkpoint", str(trained.run_dir), "--attacks", "pgd3", "--device", "cpu",
                 "--no-progress", "--trust-factory", ticket.meta.model]) == 0  # the file's factory, trusted
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["n"] == 40  # the run's own test set, all of it


@pytest.mark.extended
def test_custom_model_example_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = ["--n-train", "200", "--search-epochs", "1", "--epochs", "1", "--n", "20", "--width", "0.25",
            "--out", str(tmp_path)]
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_model.py"), *args], env=env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "worst case over PGD-20 and AutoAttack on the first 20 test images" in done.stdout
    run_dir = done.stdout.split("checkpoint: ")[-1].splitlines()[0].strip()
    worst = float(done.stdout.split("test images: ")[1].split()[0])
    assert done.stdout.strip().splitlines()[-1].endswith("--attacks pgd20,autoattack --n 20")
    # The script's factory is recorded as custom_model:small_cnn: `robustlth eval` imports it from examples/
    # when the user trusts it (a factory a checkpoint names is never imported on the file's word alone). The command
    # the example prints repeats its evaluation: the same images, attacks and seed give the same worst case.
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{ROOT / 'examples'}"
    ev = subprocess.run([sys.executable, "-m", "robustlth", "eval", "--checkpoint", run_dir, "--attacks",
                         "pgd20,autoattack", "--n", "20", "--device", "cpu", "--no-progress", "--trust-factory",
                         "custom_model:small_cnn"], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert "evaluating custom_model:small_cnn" in ev.stderr
    assert json.loads(ev.stdout.strip().splitlines()[-1])["worst_case"] == pytest.approx(worst, abs=1e-3)
