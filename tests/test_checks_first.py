"""Every check before anything is written: a user's model factory is built and tried on one sample batch of the
data before a run directory exists (train, bench, find-ticket), and a full disk names the file and leaves no
half-made run directory. Each failure is exit 2 with one line, and the output folder is never created."""
import errno
import os
import sys

import pytest

from faults import TINY_SEARCH, TINY_TRAIN
from robustlth.cli import main

FACTORIES = '''
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, classes=10, fail=False, out=None):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, classes))
        self.fail, self.out = fail, out

    def forward(self, x):
        if self.fail:
            raise RuntimeError("forward is broken")
        y = self.body(x)
        return self.out(y) if self.out else y


def raises(width=1.0):
    raise ValueError("cannot build this\\nsecond line")


def forward_raises(width=1.0):
    return Net(fail=True)


def five_logits(width=1.0):
    return Net(classes=5)


def returns_tuple(width=1.0):
    return Net(out=lambda y: (y, y))


def not_a_module(width=1.0):
    return 42


def no_width():
    return Net()


def good(width=1.0):
    return Net()
'''
MOD = "checks_first_factories"
NO_MODEL_TRAIN = TINY_TRAIN[4:]
NO_MODEL_SEARCH = TINY_SEARCH[4:]
SMOKE = ["bench", "--preset", "smoke", "--device", "cpu", "--no-progress"]


@pytest.fixture
def factories(tmp_path, monkeypatch):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / f"{MOD}.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, MOD, raising=False)
    return folder


def _one_line(argv, capsys, tmp_path, needle):
    out = tmp_path / "runs"
    capsys.readouterr()
    code = main([*argv, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith(f"robustlth {argv[0]}: error: "), err
    assert needle in err[0], err[0]
    assert not out.exists()  # no run directory, not even the output folder
    return err[0]


BAD = [("raises", "model factory checks_first_factories:raises failed: ValueError: cannot build this"),
       ("forward_raises", "its model fails on a batch of (2, 3, 32, 32) images (RuntimeError: forward is broken)"),
       ("five_logits", "outputs shape (2, 5) for a batch of 2 images of 3x32x32; expected (2, 10)"),
       ("returns_tuple", "outputs a tuple for a batch of 2 images"),
       ("not_a_module", "returned int, not a torch.nn.Module"),
       ("no_width", "takes no width argument")]


@pytest.mark.parametrize("name,needle", BAD, ids=[b[0] for b in BAD])
def test_train_refuses_a_bad_factory_before_the_run_directory(name, needle, factories, tmp_path, capsys):
    line = _one_line(["train", "--model", f"{MOD}:{name}", "--width", "0.5", *NO_MODEL_TRAIN], capsys, tmp_path,
                     needle)
    assert "second line" not in line


@pytest.mark.parametrize("name,needle", BAD[:3], ids=[b[0] for b in BAD[:3]])
def test_find_ticket_refuses_a_bad_factory_before_the_search_directory(name, needle, factories, tmp_path, capsys):
    _one_line(["find-ticket", "--model", f"{MOD}:{name}", *NO_MODEL_SEARCH], capsys, tmp_path, needle)


@pytest.mark.parametrize("name,needle", BAD[:3], ids=[b[0] for b in BAD[:3]])
def test_bench_refuses_a_bad_factory_before_the_bench_directory(name, needle, factories, tmp_path, capsys):
    _one_line([*SMOKE, "--model", f"{MOD}:{name}"], capsys, tmp_path, needle)


def test_bench_structured_arms_refuse_a_factory_model(factories, tmp_path, capsys):
    _one_line([*SMOKE, "--model", f"{MOD}:good", "--arms", "dense,ticket,structured"], capsys, tmp_path,
              "is a user factory: the structured arms cannot shrink it")


def test_a_good_factory_still_passes_the_checks(factories):
    from robustlth.datasets import CIFAR10
    from robustlth.models import build_checked_model
    model = build_checked_model(f"{MOD}:good", 1.0, CIFAR10, (3, 32, 32))
    assert model.training  # the check leaves the model as it was built


def test_the_model_check_leaves_the_random_state_alone():
    import torch
    from robustlth.datasets import CIFAR10
    from robustlth.models import build_checked_model
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    build_checked_model("cnn6", 0.25, CIFAR10)
    assert torch.equal(torch.rand(3), expected)


def test_a_full_disk_names_the_file_and_leaves_no_run_directory(tmp_path, capsys, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full)
    line = _one_line(["train", *TINY_TRAIN], capsys, tmp_path, "No space left on device")
    assert "config.yaml" in line and str(tmp_path / "runs") in line


def test_a_full_disk_while_reopening_keeps_the_existing_run(tmp_path, capsys, monkeypatch):
    from robustlth.runs import RunDir
    run = RunDir.create_at(tmp_path / "runs" / "x_1", "1", {"a": 1})
    before = sorted(p.name for p in run.path.iterdir())
    import robustlth.runs as runs
    monkeypatch.setattr(runs, "environment", lambda device=None: {"git_commit": "other", "torch": "x"})

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="env.json"):
        RunDir.create_at(run.path, "1", {"a": 1})
    assert sorted(p.name for p in run.path.iterdir()) == before  # an existing run is never removed


def test_resume_checks_the_record_but_not_how_the_run_was_asked_for(tmp_path):
    from robustlth.errors import FileFormatError
    from robustlth.runs import RunDir
    path = tmp_path / "train_1"
    RunDir.create_at(path, "1", {"preset": "smoke", "mask": "/a/t.pt", "train": {"lr": 0.1, "epochs": 2}})
    # The same run asked for another way (no preset, the ticket moved: its content is in the hash): reopened.
    RunDir.create_at(path, "1", {"preset": None, "mask": "/b/t.pt", "train": {"lr": 0.1, "epochs": 2}})
    # A newer version recording one more setting reopens an older run whose file lacks it.
    RunDir.create_at(path, "1", {"preset": None, "mask": None, "train": {"lr": 0.1, "epochs": 2, "new": 1}})
    with pytest.raises(FileFormatError, match=r"train.lr is 0.1 there but 0.2 in this run"):
        RunDir.create_at(path, "1", {"preset": None, "mask": None, "train": {"lr": 0.2, "epochs": 2}})
    with pytest.raises(FileFormatError, match=r"train.epochs is 2 there but True in this run"):
        RunDir.create_at(path, "1", {"preset": None, "mask": None, "train": {"lr": 0.1, "epochs": True}})
