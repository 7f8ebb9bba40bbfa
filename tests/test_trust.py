"""No code from files: a model factory (`package.module:function`) named by a checkpoint, an old run's
config.yaml or a ticket is imported only when the user names it (--model) or trusts it (--trust-factory,
trust_factory=). The marker file an `evil.py` in the current folder would write never appears unless allowed."""
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
import yaml

from faults import REPO
from robustlth.datasets import CIFAR10
from robustlth.errors import UsageError
from robustlth.factory import check_trusted, trusted_factories
from robustlth.models import build_model
from robustlth.pruning import Ticket, dense_mask, save_ticket

DATA = {"data": "synthetic", "n_train": 100, "n_test": 50}
EVAL = ["--attacks", "fgsm", "--n", "10", "--device", "cpu", "--no-progress"]
TRAIN = ["--data", "synthetic", "--n-train", "100", "--n-test", "50", "--epochs", "1", "--eval-n", "20",
         "--eval-steps", "1", "--batch-size", "50", "--device", "cpu", "--no-progress"]

# Writes a marker file when imported (code a file chose, running), and builds the real cnn6 when called.
EVIL = """
from pathlib import Path
Path(__file__).with_name("MARKER").write_text("evil ran")
def net(width=1.0):
    from robustlth.datasets import CIFAR10
    from robustlth.models import build_model
    return build_model("cnn6", width, CIFAR10)
"""


def _run(cwd: Path, *args) -> subprocess.CompletedProcess:
    """`python -m robustlth ARGS` from `cwd` (so `cwd` is importable, as for a user in that folder)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TMPDIR": str(cwd / "tmpdir")}
    return subprocess.run([sys.executable, "-m", "robustlth", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _refused(r: subprocess.CompletedProcess, command: str, needle: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith(f"robustlth {command}: error: ") and needle in lines[0], lines[0]


def _checkpoint(folder: Path, model: str, old_style: bool = False) -> Path:
    """A cnn6 checkpoint describing its model as `model` (old_style: no description, a config.yaml names it)."""
    folder.mkdir()
    net = build_model("cnn6", 0.25, CIFAR10)
    ckpt = {"model": net.state_dict()}
    if old_style:
        (folder / "config.yaml").write_text(yaml.safe_dump({"model": {"model": model, "width": 0.25}, "data": DATA}))
    else:
        ckpt["describe"] = {"model": model, "width": 0.25, "data": DATA, "eval_n": None, "kind": "train"}
    torch.save(ckpt, folder / "checkpoint.pt")
    return folder


def _ticket(path: Path, model: str) -> Path:
    net = build_model("cnn6", 0.25, CIFAR10)
    return save_ticket(path, Ticket(dense_mask(net), net.state_dict(), {"model": model, "width": 0.25}))


@pytest.fixture
def evil_folder(tmp_path):
    (tmp_path / "evil.py").write_text(EVIL)
    (tmp_path / "tmpdir").mkdir()
    return tmp_path


@pytest.mark.extended
@pytest.mark.parametrize("old_style", [False, True], ids=["description", "old-config-yaml"])
def test_eval_never_imports_the_factory_a_checkpoint_names(evil_folder, old_style):
    run = _checkpoint(evil_folder / "run", "evil:net", old_style)
    before = sorted(p.name for p in run.iterdir())
    r = _run(evil_folder, "eval", "--checkpoint", run, *EVAL)
    where = "config.yaml" if old_style else "checkpoint.pt"
    _refused(r, "eval", f"{where} names the model factory evil:net")
    assert not (evil_folder / "MARKER").exists()  # evil.py was never imported
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written
    # Allowed: the user trusts it (the marker proves the flag is what lets the code run).
    r = _run(evil_folder, "eval", "--checkpoint", run, *EVAL, "--trust-factory", "evil:net")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (evil_folder / "MARKER").read_text() == "evil ran"


@pytest.mark.extended
def test_eval_runs_the_factory_the_user_names_with_model(evil_folder):
    run = _checkpoint(evil_folder / "run", "evil:net")
    r = _run(evil_folder, "eval", "--checkpoint", run, *EVAL, "--model", "evil:net")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (evil_folder / "MARKER").exists()


@pytest.mark.extended
@pytest.mark.parametrize("name", ["tempfile:mkdtemp", "os:getcwd"])
def test_standard_library_names_are_refused_then_allowed(evil_folder, name):
    run = _checkpoint(evil_folder / "run", name)
    _refused(_run(evil_folder, "eval", "--checkpoint", run, *EVAL), "eval", f"names the model factory {name}")
    assert not any((evil_folder / "tmpdir").iterdir())  # mkdtemp never ran
    r = _run(evil_folder, "eval", "--checkpoint", run, *EVAL, "--width", "1", "--trust-factory", f"cnn6:x,{name}")
    _refused(r, "eval", f"model factory {name} returned str, not a torch.nn.Module")  # it ran: past the gate
    if name == "tempfile:mkdtemp":
        assert len(list((evil_folder / "tmpdir").iterdir())) == 1


@pytest.mark.extended
def test_a_ticket_names_a_factory_train_and_control(evil_folder):
    ticket = _ticket(evil_folder / "t.pt", "evil:net")
    out = evil_folder / "runs"
    _refused(_run(evil_folder, "train", *TRAIN, "--mask", ticket, "--out", out), "train",
             f"ticket {ticket} names the model factory evil:net")
    _refused(_run(evil_folder, "control", "--ticket", ticket, "--kind", "reinit", "--output", evil_folder / "c.pt"),
             "control", "names the model factory evil:net")
    assert not (evil_folder / "MARKER").exists() and not out.exists() and not (evil_folder / "c.pt").exists()
    r = _run(evil_folder, "control", "--ticket", ticket, "--kind", "reinit", "--output", evil_folder / "c.pt",
             "--trust-factory", "evil:net")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (evil_folder / "MARKER").exists() and (evil_folder / "c.pt").is_file()
    (evil_folder / "MARKER").unlink()
    r = _run(evil_folder, "train", *TRAIN, "--mask", ticket, "--out", out, "--trust-factory", "evil:net")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (evil_folder / "MARKER").exists() and len(list(out.glob("train_*"))) == 1


@pytest.mark.extended
def test_train_mask_runs_the_factory_the_user_names_with_model(evil_folder):
    ticket = _ticket(evil_folder / "t.pt", "evil:net")
    r = _run(evil_folder, "train", *TRAIN, "--mask", ticket, "--model", "evil:net", "--width", "0.25",
             "--out", evil_folder / "runs")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (evil_folder / "MARKER").exists()


@pytest.fixture
def evil_module(tmp_path, monkeypatch):
    """An importable module (a fresh name per test) that marks its import."""
    name = f"evil_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(EVIL)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{name}:net", tmp_path / "MARKER"
    sys.modules.pop(name, None)


def test_api_load_checkpoint_needs_trust_factory(tmp_path, evil_module):
    import robustlth as rl
    name, marker = evil_module
    run = _checkpoint(tmp_path / "run", name)
    with pytest.raises(UsageError, match=f"names the model factory {name}.*trust_factory='{name}'"):
        rl.load_checkpoint(run, "cpu")
    with pytest.raises(UsageError, match="names the model factory"):
        rl.load_checkpoint(run, "cpu", trust_factory=["other.mod:net"])
    assert not marker.exists()
    saved = rl.load_checkpoint(run, "cpu", trust_factory=name)
    assert marker.exists() and saved.model_name == name


def test_api_ticket_from_a_file_needs_trust_factory(tmp_path, evil_module):
    import robustlth as rl
    from robustlth.api import load_ticket
    from robustlth.pruning import load_ticket as read_ticket
    name, marker = evil_module
    path = _ticket(tmp_path / "t.pt", name)
    with pytest.raises(UsageError, match=f"names the model factory {name}"):
        load_ticket(path)
    with pytest.raises(UsageError, match=f"names the model factory {name}"):  # read low-level, used from the API
        rl.adversarial_train(read_ticket(path), "synthetic", epochs=1, device="cpu", out=tmp_path / "runs", log=None)
    assert not marker.exists() and not (tmp_path / "runs").exists()
    assert load_ticket(path, trust_factory=name).meta.model == name  # reading alone imports nothing
    assert not marker.exists()
    # A ticket made in memory names what its maker chose: no question asked.
    assert Ticket(dense_mask(build_model("cnn6", 0.25, CIFAR10)), {}, {"model": name, "width": 0.25}).source is None


def test_registry_names_never_ask(tmp_path):
    check_trusted("cnn6", "a file")
    check_trusted("wrn-28-10", "a file")
    from robustlth.saved_model import open_checkpoint
    saved = open_checkpoint(_checkpoint(tmp_path / "run", "cnn6"), torch.device("cpu"))
    assert saved.model_name == "cnn6"


def test_trusted_factories_parsing():
    assert trusted_factories(None) == frozenset()
    assert trusted_factories("a.b:c, d:e") == {"a.b:c", "d:e"}
    assert trusted_factories(["a:b", "c:d,e:f"]) == {"a:b", "c:d", "e:f"}
    assert trusted_factories(build_model) == {"robustlth.models:build_model"}
    with pytest.raises(UsageError, match="names the model factory x.y:z.*--trust-factory x.y:z"):
        check_trusted("x.y:z", "f.pt", ["x.y:w"])


def test_truncated_ticket_names_the_file(tmp_path):
    from robustlth.pruning import TicketError, load_ticket
    data = _ticket(tmp_path / "t.pt", "cnn6").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:len(data) // 2])
    with pytest.raises(TicketError, match=r"cut\.pt is not a readable ticket file \(damaged or truncated"):
        load_ticket(tmp_path / "cut.pt")


def test_a_ticket_planted_in_a_finished_search_cannot_choose_code(tmp_path, capsys):
    """A stage reading its own ticket trusts the model its config names, nothing else: a search's ticket.pt
    replaced by one naming a factory is refused when a bench arm (or anything) builds it, and never imported."""
    from robustlth.cli import main
    from robustlth.pruning import load_ticket, ticket_model
    (tmp_path / "planted_evil.py").write_text(EVIL)
    sys.path.insert(0, str(tmp_path))
    try:
        argv = ["find-ticket", "--data", "synthetic", "--n-train", "100", "--n-test", "50", "--model", "cnn6",
                "--width", "0.25", "--search-epochs", "1", "--search-batch-size", "50", "--search-eval-n", "20",
                "--device", "cpu", "--no-progress", "--out", str(tmp_path / "runs")]
        assert main(argv) == 0
        (path,) = (tmp_path / "runs").glob("ticket_*/ticket.pt")
        real = load_ticket(path, trust_factory="cnn6")
        ticket_model(real)  # the search's own ticket builds
        planted = {k: v for k, v in vars(real.meta).items() if k != "extra" and v is not None}
        save_ticket(path, Ticket(real.mask, real.state_dict, {**planted, "model": "planted_evil:net"}))
        assert main(argv) == 0  # the finished search reopens; its ticket is read, nothing is built
        reread = load_ticket(path, trust_factory="cnn6")  # as the search stage reads it for the arms
        with pytest.raises(UsageError, match="names the model factory planted_evil:net"):
            ticket_model(reread)
        assert not (tmp_path / "MARKER").exists(), "a planted ticket chose the code to run"
    finally:
        sys.path.remove(str(tmp_path))
