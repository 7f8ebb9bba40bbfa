"""`robustlth export`: a trained run as a RobustBench-style folder whose own loader, in a fresh process, gives the
model back (same clean accuracy as the run's evaluation); `eval --n all`."""
import json
import subprocess
import sys

import pytest
import torch

from faults import TINY_TRAIN, env
from robustlth.cli import main
from robustlth.export import _accuracies, eps_text

# In a fresh interpreter: the exported folder's load.py rebuilds the model; its clean accuracy on the evaluation's
# images (the first N test images of the run's data) is printed.
CHECK = """
import json, sys
from pathlib import Path
import torch
out = Path(sys.argv[1])
sys.path.insert(0, str(out))
from load import load_model
from robustlth.config import DataConfig
from robustlth.data import as_float, load_dataset
state = torch.load(out / "model.pt", weights_only=True)
assert all(isinstance(v, torch.Tensor) for v in state.values())
info = json.loads((out / "model_info.json").read_text())
ev = info["robustlth"]["evaluation"]
model = load_model()
data = load_dataset(DataConfig(data=ev["data"], n_train=int(sys.argv[2]), n_test=int(sys.argv[3])))
x, y = as_float(data.test, torch.device("cpu"), ev["n_test_images"])
with torch.no_grad():
    clean = (model(x).argmax(1) == y).float().mean().item()
print(json.dumps({"clean": clean, "x_range": [float(x.min()), float(x.max())]}))
"""


def test_export_then_load_in_a_fresh_process_gives_the_same_clean_accuracy(tmp_path, capsys):
    assert main(["train", *TINY_TRAIN, "--out", str(tmp_path / "runs")]) == 0
    run = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"]
    # eval --n all: the run's whole test set (50 images)
    assert main(["eval", "--checkpoint", run, "--attacks", "fgsm", "--n", "all", "--device", "cpu",
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 50
    out = tmp_path / "export"
    assert main(["export", run, str(out)]) == 0
    captured = capsys.readouterr()
    line = json.loads(captured.out.strip().splitlines()[-1])
    assert "autoattack_acc is empty" in captured.err  # fgsm only: no AutoAttack number is claimed
    assert sorted(p.name for p in out.iterdir()) == ["load.py", "model.pt", "model_info.json"]
    info = json.loads((out / "model_info.json").read_text())
    assert info["threat_model"] == "Linf" and info["eps"] == "8/255" and info["additional_data"] is False
    assert info["dataset"] == "cifar10" and info["autoattack_acc"] is None and line["n_test_images"] == 50
    ev, rl = info["robustlth"]["evaluation"], info["robustlth"]
    assert ev["data"] == "synthetic" and "not CIFAR-10" in ev["data_copy"] and ev["attacks"] == ["fgsm"]
    assert rl["architecture"]["model"] == "cnn6" and rl["architecture"]["width"] == 0.25
    assert rl["version"] and "commit" in rl and rl["training"]["device"] == "cpu"
    assert isinstance(rl["training"]["time_s"], float)
    assert info["clean_acc"] == f"{100 * ev['clean']:.2f}"
    r = subprocess.run([sys.executable, "-c", CHECK, str(out), "100", "50"], cwd=tmp_path, env=env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    loaded = json.loads(r.stdout.strip().splitlines()[-1])
    assert loaded["clean"] == pytest.approx(ev["clean"], abs=1e-9)
    assert 0.0 <= loaded["x_range"][0] and loaded["x_range"][1] <= 1.0  # the model took [0, 1] images


def test_autoattack_accuracy_is_claimed_only_for_autoattack_alone():
    alone = {"n": 100, "clean": 0.8, "worst_case": 0.4, "eps": 8 / 255,
             "attacks": [{"name": "autoattack", "accuracy": 0.4, "robust_after": 0.4, "n": 100}]}
    assert _accuracies(alone)["autoattack"] == 0.4
    chained = {"n": 100, "clean": 0.8, "worst_case": 0.35, "worst_case_first_50": 0.3,
               "attacks": [{"name": "pgd20", "accuracy": 0.45, "robust_after": 0.45, "n": 100},
                           {"name": "autoattack", "accuracy": None, "robust_after": 0.35, "n": 50}]}
    a = _accuracies(chained)
    assert a["autoattack"] is None and a["worst_case"] == 0.3 and a["worst_case_n"] == 50
    assert eps_text(8 / 255) == "8/255" and eps_text(0.1) == "0.1"


def test_export_refuses_what_is_not_a_run(tmp_path, capsys):
    assert main(["export", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "no checkpoint.pt there" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.extended
def test_a_bench_arm_exports_with_its_final_evaluation(tmp_path, capsys):
    assert main(["bench", "--preset", "smoke", "--arms", "dense,ticket", "--out", str(tmp_path / "runs"),
                 "--device", "cpu", "--no-progress"]) == 0
    capsys.readouterr()
    (arm,) = (tmp_path / "runs").glob("arm-ticket_*")
    assert main(["export", str(arm), str(tmp_path / "export")]) == 0
    info = json.loads((tmp_path / "export" / "model_info.json").read_text())
    ev = info["robustlth"]["evaluation"]
    assert ev["file"].endswith("result.json (final evaluation)") and ev["n_test_images"] > 0
    assert info["robustlth"]["sparsity"] > 0.5 and info["robustlth"]["training"]["search_time_s"] > 0
    state = torch.load(tmp_path / "export" / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
