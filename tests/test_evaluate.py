import json

import pytest
import torch
import torch.nn as nn

from robustlth.cli import main
from robustlth.config import AttackConfig, TrainConfig
from robustlth.evaluate import evaluate_robustness, sanity_warnings
from robustlth.datasets import CIFAR10
from robustlth.models import build_model
from robustlth.training import train


@pytest.fixture(scope="module")
def trained(synthetic_data):
    torch.manual_seed(0)
    model = build_model("cnn6", 0.5, CIFAR10)
    train(model, synthetic_data, TrainConfig(epochs=1, lr=0.05, batch_size=50, eval_n=50, eval_steps=0),
          AttackConfig(attack="pgd", attack_steps=3), torch.device("cpu"))
    x, y = synthetic_data.test.x[:64].float() / 255, synthetic_data.test.y[:64]
    return model.eval(), x, y


def test_worst_case_is_per_sample_and_cascade(trained):
    model, x, y = trained
    r = evaluate_robustness(model, x, y, ["fgsm", "pgd10", "cw10"], independent=True)
    own = {a["name"]: a["accuracy"] for a in r["attacks"]}
    assert r["worst_case"] <= min(own.values()) <= r["clean"]
    assert own["pgd10"] <= own["fgsm"] + 1 / 64
    cascade = evaluate_robustness(model, x, y, ["fgsm", "pgd10", "cw10"])
    # Each attack's random start is drawn for the batch it runs on, so running only on points still robust
    # can flip a point either way; the per-sample worst case agrees up to that.
    assert abs(cascade["worst_case"] - r["worst_case"]) <= 2 / 64
    after = [a["robust_after"] for a in cascade["attacks"]]
    assert after == sorted(after, reverse=True)
    assert cascade["attacks"][0]["accuracy"] == own["fgsm"] and cascade["attacks"][1]["accuracy"] is None


def test_autoattack_adapter_runs_on_a_few_images(trained):
    model, x, y = trained
    r = evaluate_robustness(model, x[:8], y[:8], ["pgd10", "autoattack"])
    assert [a["name"] for a in r["attacks"]] == ["pgd10", "autoattack"]
    assert 0 <= r["worst_case"] <= r["attacks"][0]["robust_after"] <= r["clean"]
    assert model.training is False


def test_torchattacks_adapter(trained):
    pytest.importorskip("torchattacks")
    model, x, y = trained
    r = evaluate_robustness(model, x[:16], y[:16], ["ta-pgd"])
    assert 0 <= r["worst_case"] <= r["clean"]


def test_inputs_outside_unit_box_are_rejected(trained):
    model, x, y = trained
    with pytest.raises(ValueError, match="inside the model"):
        evaluate_robustness(model, (x - 0.5) / 0.25, y, ["pgd5"])


def test_zero_gradient_model_triggers_warning():
    class Masked(nn.Module):  # predictions through argmax/one-hot: zero input gradient everywhere
        def forward(self, x):
            hard = nn.functional.one_hot((x.mean((1, 2, 3)) * 10).long().clamp(0, 9), 10).float()
            return hard + 0 * x.mean((1, 2, 3))[:, None]
    x = torch.rand(32, 3, 32, 32)
    y = Masked()(x).argmax(1)
    with pytest.warns(RuntimeWarning, match="zero input gradient"):
        r = evaluate_robustness(Masked(), x, y, ["pgd5"])
    assert any("zero input gradient" in w for w in r["warnings"])


def test_sanity_warning_for_more_steps_helping():
    res = [{"name": "pgd20", "accuracy": 0.30}, {"name": "pgd100", "accuracy": 0.40}, {"name": "fgsm", "accuracy": 0.2}]
    warns = sanity_warnings(0.8, res, 0.0, 1000)
    assert any("PGD-100 accuracy" in w for w in warns) and any("FGSM accuracy" in w for w in warns)
    assert sanity_warnings(0.8, [{"name": "pgd20", "accuracy": 0.3}, {"name": "pgd100", "accuracy": 0.29}], 0, 1000) == []


def test_eval_cli_writes_json(tmp_path, capsys):
    args = ["--model", "cnn6", "--width", "0.25", "--data", "synthetic", "--n-train", "200", "--n-test", "60",
            "--epochs", "1", "--eval-n", "20", "--eval-steps", "1", "--batch-size", "50", "--out", str(tmp_path),
            "--no-progress", "--device", "cpu"]
    assert main(["train", *args]) == 0
    run_dir = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"]
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", run_dir, "--attacks", "pgd5,cw5", "--n", "40", "--output", str(out),
                 "--device", "cpu"]) == 0
    r = json.loads(out.read_text())
    assert r["n"] == 40 and [a["name"] for a in r["attacks"]] == ["pgd5", "cw5"]
    assert r["worst_case"] == r["attacks"][-1]["robust_after"]
    assert "torch" in r["env"]


def test_limits_run_an_attack_on_the_first_images_only(trained):
    model, x, y = trained
    # FGSM is deterministic, so the same points fall whatever the batch.
    r = evaluate_robustness(model, x[:32], y[:32], ["fgsm", "cw10"], limits={"cw10": 8})
    assert r["attacks"][1]["n"] == 8
    full = evaluate_robustness(model, x[:8], y[:8], ["fgsm", "cw10"])
    assert r["worst_case_first_8"] == full["worst_case"]
    # Images beyond the limit keep their verdict from the earlier attacks.
    fgsm_only = evaluate_robustness(model, x[8:32], y[8:32], ["fgsm"])
    assert r["worst_case"] * 32 == pytest.approx(full["worst_case"] * 8 + fgsm_only["worst_case"] * 24)
