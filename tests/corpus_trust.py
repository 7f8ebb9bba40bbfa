"""Bad-input cases: checkpoints, tickets and run directories that name a model factory: never imported unless the user names it."""
import torch
import yaml

from corpus import Case, _copy_run, _npz, _yaml  # noqa: F401
from faults import TINY_SEARCH as SEARCH, TINY_TRAIN as TINY  # noqa: F401

# TINY without its --model/--width: the ticket alone says what to build.
assert TINY[:4] == ["--model", "cnn6", "--width", "0.25"]
TINY_NO_MODEL = TINY[4:]


def _ticket_naming(file: str, model: str):
    """A cnn6 ticket whose metadata names `model` (a factory the file, not the user, chooses)."""
    def make(b):
        from robustlth.datasets import CIFAR10
        from robustlth.models import build_model
        from robustlth.pruning import Ticket, dense_mask, save_ticket
        net = build_model("cnn6", 0.25, CIFAR10)
        save_ticket(b / file, Ticket(dense_mask(net), net.state_dict(), {"model": model, "width": 0.25}))
    return make


def _truncated_ticket(b):
    _ticket_naming("ticket_to_truncate.pt", "cnn6")(b)
    data = (b / "ticket_to_truncate.pt").read_bytes()
    (b / "ticket_truncated.pt").write_bytes(data[:len(data) // 2])
    (b / "ticket_to_truncate.pt").unlink()


def _describe(model: str):
    """The run's checkpoint describing its model as `model`."""
    def damage(run):
        ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
        ckpt["describe"]["model"] = model
        torch.save(ckpt, run / "checkpoint.pt")
    return damage


def _old_style(model: str):
    """An older checkpoint (no description) whose run's config.yaml names `model`."""
    def damage(run):
        ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
        del ckpt["describe"]
        torch.save(ckpt, run / "checkpoint.pt")
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["model"]["model"] = model
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return damage


FIXTURES: list = [  # callables (fixtures folder) -> None that write the files the cases below use
    _ticket_naming("ticket_evil.pt", "evil:net"),
    _ticket_naming("ticket_mkdtemp.pt", "tempfile:mkdtemp"),
    _ticket_naming("ticket_getcwd.pt", "os:getcwd"),
    _truncated_ticket,
]

_EVAL = ["eval", "--checkpoint", "{out}/RUN", "--attacks", "fgsm", "--n", "10", "--device", "cpu", "--no-progress"]
_FACTORY = "names the model factory"

CASES: list[Case] = [
    # A checkpoint's own description names the factory.
    Case("trust-eval-evil", _EVAL, f"checkpoint.pt {_FACTORY} evil:net", _copy_run(_describe("evil:net"))),
    Case("trust-eval-mkdtemp", _EVAL, f"{_FACTORY} tempfile:mkdtemp", _copy_run(_describe("tempfile:mkdtemp"))),
    Case("trust-eval-getcwd", _EVAL, f"{_FACTORY} os:getcwd", _copy_run(_describe("os:getcwd"))),
    Case("trust-eval-hint", _EVAL, "pass --model evil:net or --trust-factory evil:net",
         _copy_run(_describe("evil:net"))),
    Case("trust-eval-width-only", [*_EVAL, "--width", "0.25"], f"{_FACTORY} evil:net",
         _copy_run(_describe("evil:net"))),
    Case("trust-eval-other-trusted", [*_EVAL, "--trust-factory", "evil:other,good.mod:net"], f"{_FACTORY} evil:net",
         _copy_run(_describe("evil:net"))),
    Case("trust-eval-invalid-name", _EVAL, "names the model 'os:system; rm'",
         _copy_run(_describe("os:system; rm"))),
    # An older checkpoint: its run's config.yaml names the factory.
    Case("trust-eval-old-config", _EVAL, f"config.yaml {_FACTORY} evil:net", _copy_run(_old_style("evil:net"))),
    Case("trust-eval-old-config-mkdtemp", _EVAL, f"config.yaml {_FACTORY} tempfile:mkdtemp",
         _copy_run(_old_style("tempfile:mkdtemp"))),
    # A ticket's metadata names the factory.
    Case("trust-train-mask-evil", ["train", *TINY_NO_MODEL, "--mask", "{b}/ticket_evil.pt"],
         f"ticket_evil.pt {_FACTORY} evil:net"),
    Case("trust-train-mask-mkdtemp", ["train", *TINY_NO_MODEL, "--mask", "{b}/ticket_mkdtemp.pt"],
         f"{_FACTORY} tempfile:mkdtemp"),
    Case("trust-train-mask-getcwd", ["train", *TINY_NO_MODEL, "--mask", "{b}/ticket_getcwd.pt",
                                     "--trust-factory", "os:getcwdb"], f"{_FACTORY} os:getcwd"),
    Case("trust-train-mask-hint", ["train", *TINY_NO_MODEL, "--mask", "{b}/ticket_evil.pt"],
         "pass --model evil:net or --trust-factory evil:net"),
    Case("trust-train-mask-width-only", ["train", *TINY_NO_MODEL, "--width", "0.25", "--mask",
                                         "{b}/ticket_evil.pt"], "is a ticket for evil:net"),
    Case("trust-control-evil", ["control", "--ticket", "{b}/ticket_evil.pt", "--kind", "reinit",
                                "--output", "{tmp}/c.pt"], f"ticket_evil.pt {_FACTORY} evil:net"),
    Case("trust-control-noise-mkdtemp", ["control", "--ticket", "{b}/ticket_mkdtemp.pt", "--kind", "noise",
                                         "--output", "{tmp}/c.pt"], f"{_FACTORY} tempfile:mkdtemp"),
    Case("trust-control-random", ["control", "--ticket", "{b}/ticket_getcwd.pt", "--kind", "random_layerwise",
                                  "--output", "{tmp}/c.pt"], "pass --trust-factory os:getcwd"),
    # The flag itself.
    Case("trust-flag-not-a-factory", ["control", "--ticket", "{b}/ticket_evil.pt", "--kind", "reinit",
                                      "--output", "{tmp}/c.pt", "--trust-factory", "evil"],
         "--trust-factory: expected package.module:function names"),
    Case("trust-flag-empty-item", [*_EVAL, "--trust-factory", "evil:net,"],
         "--trust-factory: expected package.module:function names"),
    # A truncated ticket: one line naming the file (not a bare [Errno 22]).
    Case("ticket-truncated-train", ["train", *TINY, "--mask", "{b}/ticket_truncated.pt"],
         "ticket_truncated.pt is not a readable ticket file"),
    Case("ticket-truncated-control", ["control", "--ticket", "{b}/ticket_truncated.pt", "--kind", "reinit",
                                      "--output", "{tmp}/c.pt"], "ticket_truncated.pt is not a readable ticket file"),
]
