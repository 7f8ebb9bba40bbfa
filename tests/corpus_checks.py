"""Bad-input cases: every check before anything is written (models, tickets, architecture records, data, seeds), resume never lies."""
import fcntl
import json
import os
from pathlib import Path

import numpy as np
import torch
import yaml

from corpus import Case, _copy_run, _npz, _yaml  # noqa: F401
from faults import TINY_SEARCH as SEARCH, TINY_TRAIN as TINY  # noqa: F401

# TINY without its model and width: a ticket given with --mask then names the model.
NO_MODEL = [a for i, a in enumerate(TINY) if i >= 4]
assert TINY[:4] == ["--model", "cnn6", "--width", "0.25"]
# A train run on a whole npz file (no subsetting flags, so the file's own splits are used).
NPZ_TRAIN = ["--model", "cnn6", "--width", "0.25", "--epochs", "1", "--batch-size", "10", "--eval-steps", "1",
             "--device", "cpu", "--no-progress"]
SMOKE = ["bench", "--preset", "smoke", "--device", "cpu", "--no-progress"]
_HELD: list = []  # descriptors holding a run's lock for the rest of the session (the "locked run" case)


def _empty(shape):
    return np.zeros((0, *shape), np.uint8)


def _jpeg_no_images(b: Path):
    empty = {"jpeg_train": np.zeros(0, np.uint8), "offsets_train": np.zeros(1, np.int64),
             "y_train": np.zeros(0, np.int64)}
    np.savez(b / "jpeg_no_images.npz", **empty, **{k.replace("train", "test"): v for k, v in empty.items()})


def _ticket_file(name: str, width_in_meta=None, model_in_meta=None, mask_change=None, meta_change=None):
    """A cnn6 width-0.25 ticket whose metadata or mask is changed after the fact."""
    def make(b: Path):
        from robustlth.datasets import CIFAR10
        from robustlth.models import build_model
        from robustlth.pruning import dense_mask
        model = build_model("cnn6", 0.25, CIFAR10)
        mask = dense_mask(model)
        if mask_change:
            mask_change(mask)
        meta = {"model": model_in_meta or "cnn6", "width": width_in_meta or 0.25, **(meta_change or {})}
        torch.save({"format": "robustlth-ticket-v1", "mask": mask, "state_dict": model.state_dict(), "meta": meta},
                   b / name)
    return make


def _first_mask_wrong(mask):
    name = next(iter(mask))
    mask[name] = torch.ones(3, dtype=torch.bool)


def _edit_yaml(change):
    def damage(run: Path):
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        change(cfg)
        (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return damage


def _edit_result(change):
    def damage(run: Path):
        result = json.loads((run / "result.json").read_text())
        change(result)
        (run / "result.json").write_text(json.dumps(result))
    return damage


def _edit_checkpoint(change):
    def damage(run: Path):
        ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
        change(ckpt)
        torch.save(ckpt, run / "checkpoint.pt")
    return damage


def _huge_channels(ckpt):
    from robustlth.datasets import CIFAR10
    from robustlth.models import build_model
    from robustlth.models.shrink import channel_counts
    counts = channel_counts(build_model("cnn6", 0.25, CIFAR10))
    ckpt["architecture"] = {"model": "cnn6", "width": 0.25, "channels": [c * 10 ** 9 for c in counts]}


def _channels_one_off(ckpt):
    from robustlth.datasets import CIFAR10
    from robustlth.models import build_model
    from robustlth.models.shrink import channel_counts
    counts = channel_counts(build_model("cnn6", 0.25, CIFAR10))
    ckpt["architecture"] = {"model": "cnn6", "width": 0.25, "channels": [c - 1 for c in counts]}


def _hold_lock(run: Path):
    (run / "result.json").unlink()  # unfinished: a resume must take the lock
    fd = os.open(run / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another open file: the run sees it as another process's
    _HELD.append(fd)


def _search_run(b: Path):
    """A finished tiny ticket search, to damage its files."""
    from robustlth.cli import main
    assert main(["find-ticket", *SEARCH, "--out", str(b / "search")]) == 0


def _copy_search(damage):
    def prepare(b: Path, out: Path):
        import shutil
        shutil.copytree(b / "search", out)
        (run,) = out.glob("ticket_*")
        damage(run)
    return prepare


def _undone(run: Path):
    (run / "result.json").unlink()
    (run / "ticket.pt").unlink()


def _arm_dir(arm: str, damage):
    """A dense arm on disk (shared by every smoke bench on this data), damaged, for a new bench to reuse."""
    def prepare(b: Path, out: Path):
        from robustlth.bench import PRESETS
        from robustlth.bench.arms import ArmStage
        from robustlth.cli import _bench_setup, build_parser
        args = build_parser().parse_args([*SMOKE, "--out", str(out)])
        setup, _ = _bench_setup(args, PRESETS)
        path = ArmStage(arm, setup).path(out)
        path.mkdir(parents=True)
        damage(path, ArmStage(arm, setup))
    return prepare


def _arm_result(text: str):
    def damage(path: Path, stage):
        from robustlth.config import dump_yaml
        (path / "config.yaml").write_text(dump_yaml(stage.record()))
        (path / "result.json").write_text(text)
    return damage


def _arm_config_edited(path: Path, stage):
    from robustlth.config import dump_yaml
    record = stage.record()
    record["train"]["lr"] = 123.0
    (path / "config.yaml").write_text(dump_yaml(record))
    (path / "result.json").write_text("{}")


def _arm_checkpoint_of(model_name: str):
    def damage(path: Path, stage):
        from robustlth.config import dump_yaml
        from robustlth.datasets import CIFAR10
        from robustlth.models import build_model
        (path / "config.yaml").write_text(dump_yaml(stage.record()))
        torch.save({"model": build_model(model_name, 0.25, CIFAR10).state_dict()}, path / "checkpoint.pt")
    return damage


FIXTURES: list = [
    _npz("empty_test.npz", x_test=_empty((32, 32, 3)), y_test=np.zeros(0, np.int64)),
    _npz("no_images.npz", x_train=_empty((32, 32, 3)), y_train=np.zeros(0, np.int64), x_test=_empty((32, 32, 3)),
         y_test=np.zeros(0, np.int64)),
    _jpeg_no_images,
    _npz("labels_100.npz", y_train=np.arange(20) * 5),
    _ticket_file("ticket_wrong_width.pt", width_in_meta=0.5),
    _ticket_file("ticket_huge_width.pt", width_in_meta=1e9),
    _ticket_file("ticket_other_model.pt", model_in_meta="vgg11"),
    _ticket_file("ticket_bad_mask_shape.pt", mask_change=_first_mask_wrong),
    _ticket_file("ticket_data_spec_text.pt", meta_change={"data_spec": "cifar10"}),
    _ticket_file("ticket_width_text.pt", width_in_meta="wide"),
    _ticket_file("ticket_100_classes.pt", meta_change={"data_spec": {
        "name": "cifar100", "num_classes": 100, "mean": [0.5] * 3, "std": [0.25] * 3}}),
    _search_run,
]

CASES: list[Case] = [
    # Data: every split non-empty, named by the file and key (before: a torch.cat traceback in evaluation after the
    # run directory was made; a file with no images blamed --batch-size).
    Case("data-empty-test-split", ["train", *NPZ_TRAIN, "--data", "npz:{b}/empty_test.npz"],
         "key 'x_test' holds no images"),
    Case("data-no-images", ["train", *NPZ_TRAIN, "--data", "npz:{b}/no_images.npz"], "key 'x_train' holds no images"),
    Case("data-jpeg-no-images", ["train", *NPZ_TRAIN, "--data", "cifar10-jpeg:{b}/jpeg_no_images.npz"],
         "key 'jpeg_train' holds no images"),
    Case("data-labels-beyond-dataset", ["train", *NPZ_TRAIN, "--data", "npz:{b}/labels_100.npz", "--dataset", "svhn"],
         "expected 0..9 for dataset svhn"),
    # Tickets fitted to the model before anything is written, the file named.
    Case("ticket-other-width", ["train", *NO_MODEL, "--mask", "{b}/ticket_wrong_width.pt"],
         "ticket_wrong_width.pt does not fit cnn6 at width 0.5"),
    Case("ticket-huge-width", ["train", *NO_MODEL, "--mask", "{b}/ticket_huge_width.pt"],
         "ticket_huge_width.pt does not fit cnn6 at width 1e+09"),
    Case("ticket-meta-other-model", ["train", *NO_MODEL, "--mask", "{b}/ticket_other_model.pt"],
         "ticket_other_model.pt does not fit vgg11"),
    Case("ticket-mask-shape", ["train", *NO_MODEL, "--mask", "{b}/ticket_bad_mask_shape.pt"],
         "ticket_bad_mask_shape.pt: "),
    Case("ticket-data-spec-text", ["train", *NO_MODEL, "--mask", "{b}/ticket_data_spec_text.pt"],
         "ticket_data_spec_text.pt: its metadata's data_spec is not"),
    Case("ticket-width-text", ["train", *NO_MODEL, "--mask", "{b}/ticket_width_text.pt"],
         "ticket_width_text.pt: its metadata names no usable model"),
    Case("ticket-classes-vs-data", ["train", *NO_MODEL, "--mask", "{b}/ticket_100_classes.pt"],
         "is a ticket for cifar100 (100 classes)"),
    # Resume never lies: a run directory's record is checked before it is reopened.
    Case("resume-corrupt-env-json", ["train", *TINY], "env.json is damaged",
         _copy_run(lambda run: (run / "env.json").write_text("{broken"))),
    Case("resume-env-json-not-object", ["train", *TINY], "env.json is damaged",
         _copy_run(lambda run: (run / "env.json").write_text("[1, 2]"))),
    Case("resume-config-edited", ["train", *TINY], "config.yaml no longer matches",
         _copy_run(_edit_yaml(lambda cfg: cfg["train"].update(lr=0.5)))),
    Case("resume-config-key-added", ["train", *TINY], "it records train.momentumm",
         _copy_run(_edit_yaml(lambda cfg: cfg["train"].update(momentumm=0.5)))),
    Case("resume-config-not-yaml", ["train", *TINY], "config.yaml is damaged",
         _copy_run(lambda run: (run / "config.yaml").write_bytes(b"\xff\xfe: [\x00"))),
    Case("resume-config-emptied", ["train", *TINY], "config.yaml no longer matches",
         _copy_run(lambda run: (run / "config.yaml").write_text(""))),
    Case("resume-locked-run", ["train", *TINY], "already in use by another robustlth process", _copy_run(_hold_lock)),
    # A finished stage's result.json: typed on load, the file named.
    Case("done-result-wrong-type", ["train", *TINY], "result.json.final is list",
         _copy_run(_edit_result(lambda r: r.update(final=[])))),
    Case("done-result-number-as-text", ["train", *TINY], "result.json.train_time is str",
         _copy_run(_edit_result(lambda r: r.update(train_time="fast")))),
    Case("done-result-missing-keys", ["train", *TINY], "TrainRunResult lacks",
         _copy_run(lambda run: (run / "result.json").write_text("{}"))),
    Case("done-result-not-json", ["train", *TINY], "result.json is not a valid",
         _copy_run(lambda run: (run / "result.json").write_text("{broken"))),
    # Architecture records checked against the stored tensors before anything of their size is allocated.
    Case("eval-structured-channels-huge", ["eval", "--checkpoint", "{out}/RUN", "--n", "5", "--attacks", "pgd1"],
         "does not fit its stored weights", _copy_run(_edit_checkpoint(_huge_channels))),
    Case("eval-structured-channels-edited", ["eval", "--checkpoint", "{out}/RUN", "--n", "5", "--attacks", "pgd1"],
         "does not fit its stored weights", _copy_run(_edit_checkpoint(_channels_one_off))),
    Case("eval-description-width-huge", ["eval", "--checkpoint", "{out}/RUN", "--n", "5", "--attacks", "pgd1"],
         "could not be loaded as a cnn6 checkpoint at width 1e+09",
         _copy_run(_edit_checkpoint(lambda c: c["describe"].update(width=1e9)))),
    # Stages of a ticket search.
    Case("search-ticket-garbage", ["find-ticket", *SEARCH], "ticket.pt is not a readable ticket file",
         _copy_search(lambda run: (run / "ticket.pt").write_bytes(b"garbage"))),
    Case("search-round-result-wrong-type", ["find-ticket", *SEARCH], "round_1/result.json.sparsity is str",
         _copy_search(lambda run: (_undone(run), _edit_result(lambda r: r.update(sparsity="half"))(run / "round_1")))),
    Case("search-round-ticket-garbage", ["find-ticket", *SEARCH], "round_1/ticket.pt is not a readable ticket file",
         _copy_search(lambda run: (_undone(run), (run / "round_1" / "ticket.pt").write_bytes(b"\x00")))),
    Case("search-config-edited", ["find-ticket", *SEARCH], "config.yaml no longer matches",
         _copy_search(_edit_yaml(lambda cfg: cfg["prune"].update(ratio=0.9)))),
    # A bench reusing arms on disk: read before the bench's directory is made.
    Case("bench-done-arm-damaged", [*SMOKE], "result.json is not a valid", _arm_dir("dense", _arm_result("{broken"))),
    Case("bench-done-arm-wrong-type", [*SMOKE], "result.json.epochs is str",
         _arm_dir("dense", _arm_result(json.dumps({"arm": "dense", "search_time": 0, "train_time": 1,
                                                   "total_time": 1, "eval_time": 0, "epochs": "two",
                                                   "stopped": None, "eval_split": "test", "sparsity": 0,
                                                   "architecture": None, "macs": 1, "settings": {},
                                                   "train_config": {}, "curve": [], "final": None})))),
    Case("bench-done-arm-config-edited", [*SMOKE], "config.yaml no longer matches",
         _arm_dir("dense", _arm_config_edited)),
    Case("bench-arm-checkpoint-of-another-model", [*SMOKE], "is not a checkpoint of this arm's",
         _arm_dir("dense", _arm_checkpoint_of("vgg11"))),
    Case("bench-structured-unshrinkable", [*SMOKE, "--model", "lenet300", "--arms", "dense,ticket,structured"],
         "has no structured pruning support"),
]
