"""AutoAttack runs its four attacks one at a time with counts and progress, and its verdicts are those of one
reference `run_standard_evaluation` call (the attacks shortened here by the same amount on both sides)."""
import pytest
import torch
import torch.nn as nn

from robustlth.evaluate import AUTOATTACK_STANDARD


@pytest.fixture
def short_autoattack(monkeypatch):
    from pyautoattack import AutoAttack
    standard = AutoAttack._set_version

    def short(self, version="standard"):
        standard(self, version)
        self.apgd.n_iter = self.apgd_targeted.n_iter = self.fab.n_iter = 4
        self.apgd_targeted.n_target_classes = self.fab.n_target_classes = 3
        self.square.n_queries = 30
    monkeypatch.setattr(AutoAttack, "_set_version", short)
    return AutoAttack


def test_autoattack_one_attack_at_a_time_is_standard_autoattack(short_autoattack, capsys):
    from robustlth.evaluate import autoattack_flags
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    x = torch.rand(15, 3, 8, 8)
    with torch.no_grad():
        y = net(x).argmax(1)
    y[:3] = (y[:3] + 1) % 10  # three images misclassified to begin with
    for eps in (1 / 255, 4 / 255):
        ref = short_autoattack(net, eps=eps, norm="Linf", version="standard", seed=0)
        ref.verbose = False
        _, y_adv = ref.run_standard_evaluation(x, y, batch_size=5)
        lines = []
        mine = autoattack_flags(net, x, y, eps, seed=0, batch_size=5, log=lines.append, progress=True)
        assert torch.equal(mine, y_adv == y), eps
        assert any(line.startswith("autoattack apgd-ce (1/4): on 12 images still robust, 3 batches") for line in lines)
        assert any("fooled" in line and "still robust" in line for line in lines)
    assert not mine[:3].any()


def test_evaluate_robustness_reports_each_autoattack_attack(short_autoattack):
    from robustlth.evaluate import evaluate_robustness
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    x = torch.rand(12, 3, 8, 8)
    with torch.no_grad():
        y = net(x).argmax(1)
    lines = []
    r = evaluate_robustness(net, x, y, ["autoattack"], eps=1 / 255, batch_size=6, log=lines.append)
    names = [line.split(" (")[0] for line in lines if line.startswith("autoattack ")]
    assert list(dict.fromkeys(names)) == [f"autoattack {n}" for n, _ in AUTOATTACK_STANDARD]  # each, in order
    assert 0 < r["attacks"][0]["robust_after"] < 1  # some points survive to the last attack, some are fooled
