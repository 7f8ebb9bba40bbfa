"""The stage layer: one runner (skip if done, lock, commit result.json last), typed results with stable keys,
identities that hash exactly what a stage uses (a bench at another ratio or search length reuses its dense
arm), and the arm registry."""
import dataclasses
import json
from pathlib import Path
from typing import ClassVar, Optional

import pytest
import torch

from robustlth.bench.arms import ARMS, ArmStage, pairs
from robustlth.bench.config import BenchSetup, merge_sections, PRESETS
from robustlth.cli import main
from robustlth.config import DataConfig
from robustlth.errors import ConfigError, FileFormatError, RunLockedError
from robustlth.stages import DONE, Result, Stage, run_stage
from robustlth.training import RunContext

CPU = RunContext(torch.device("cpu"))


@dataclasses.dataclass
class Inner(Result):
    value: float


@dataclasses.dataclass
class Outer(Result):
    name: str
    parts: dict[str, Inner]
    items: list[Inner]
    note: Optional[str] = None


@dataclasses.dataclass
class Counting(Stage):
    kind: ClassVar[str] = "count"
    result: ClassVar[type] = Outer
    x: int
    calls: list = dataclasses.field(default_factory=list, compare=False)

    def sections(self):
        return {"x": self.x}

    def run(self, ctx):
        self.calls.append(ctx.run_dir.path)
        assert not (ctx.run_dir.path / DONE).exists()  # the marker is written after run returns
        return Outer(name=f"x{self.x}", parts={"a": Inner(1.5)}, items=[Inner(2.0), Inner(3.0)])


def test_runner_runs_once_and_loads_a_typed_result(tmp_path):
    stage = Counting(1)
    first = run_stage(stage, tmp_path, CPU)
    again = run_stage(Counting(1), tmp_path, CPU)
    assert len(stage.calls) == 1 and again == first  # the second call loaded result.json
    assert isinstance(again.parts["a"], Inner) and again.items[1].value == 3.0
    saved = json.loads((stage.path(tmp_path) / DONE).read_text())
    assert saved == {"name": "x1", "parts": {"a": {"value": 1.5}}, "items": [{"value": 2.0}, {"value": 3.0}],
                     "note": None}
    assert {p.name for p in stage.path(tmp_path).iterdir()} >= {"config.yaml", "env.json", DONE}
    assert Counting(2).hash() != Counting(1).hash()


def test_a_damaged_result_is_one_clear_error_and_a_held_stage_is_refused(tmp_path):
    stage = Counting(3)
    run_stage(stage, tmp_path, CPU)
    (stage.path(tmp_path) / DONE).write_text(json.dumps({"name": "x"}))
    with pytest.raises(FileFormatError, match="lacks items, parts"):
        run_stage(stage, tmp_path, CPU)
    other = Counting(4)
    other.path(tmp_path).mkdir()
    from robustlth.runs import RunDir
    with RunDir(other.path(tmp_path)).lock():
        with pytest.raises(RunLockedError, match="already"):
            run_stage(other, tmp_path, CPU)


def _setup(**sections) -> BenchSetup:
    return BenchSetup.from_sections(merge_sections(PRESETS["smoke"], sections))


def test_arm_identity_hashes_only_what_the_arm_uses():
    base = _setup()
    other_search = _setup(prune={"ratio": 0.5}, bench={"search_epochs": 3, "search_lr": 0.05, "ticket_epochs": 2})
    assert ArmStage("dense", base).hash() == ArmStage("dense", other_search).hash()
    assert ArmStage("ticket", base).hash() != ArmStage("ticket", other_search).hash()
    assert ArmStage("dense", base).hash() != ArmStage("dense", _setup(bench={"dense_epochs": 3})).hash()
    # a retraining budget is not part of the search: the ticket's search is shared
    a, b = ArmStage("ticket", base), ArmStage("ticket", _setup(bench={"ticket_epochs": 3}))
    assert a.sections()["search"] == b.sections()["search"] and a.hash() != b.hash()


def test_arm_registry_lists_and_pairs():
    assert {"dense", "ticket", "reinit", "structured", "fast_at", "rst"} <= set(ARMS.names())
    assert pairs(["dense", "ticket", "reinit", "fast_at"]) == [("ticket", "dense"), ("ticket", "reinit")]
    with pytest.raises(ConfigError, match="arms='nosuch': expected one of dense"):
        _setup(bench={"arms": ["dense", "ticket", "nosuch"]})
    with pytest.raises(ConfigError, match="'ticket' is given twice"):
        _setup(bench={"arms": ["dense", "ticket", "ticket"]})


def test_old_flat_bench_sections_still_load():
    s = BenchSetup.from_sections(merge_sections({"bench": {"lr": 0.05, "ratio": 0.5, "train_attack": "none",
                                                           "structured_keep": 0.3, "final_n": 7}}))
    assert (s.train.lr, s.prune.ratio, s.attack.attack, s.structured.keep, s.final.final_n) == (0.05, 0.5, "none",
                                                                                               0.3, 7)
    with pytest.raises(ConfigError, match="both the bench and the train section"):
        merge_sections({"bench": {"lr": 0.05}, "train": {"lr": 0.1}})


SMALL = ["--preset", "smoke", "--device", "cpu", "--no-progress", "--threads", "1", "--final-attacks", "pgd2",
         "--final-n", "20", "--arms", "dense,ticket"]


@pytest.mark.extended
def test_a_changed_ratio_or_search_length_reuses_the_finished_dense_arm(tmp_path, capsys):
    assert main(["bench", *SMALL, "--out", str(tmp_path)]) == 0
    (first,) = tmp_path.glob("bench_*")
    dense = tmp_path / json.loads((first / DONE).read_text())["arm_dirs"]["dense"]
    before = (Path(dense) / DONE).stat().st_mtime_ns
    capsys.readouterr()
    assert main(["bench", *SMALL, "--ratio", "0.5", "--search-epochs", "2", "--out", str(tmp_path)]) == 0
    log = capsys.readouterr().err
    benches = sorted(tmp_path.glob("bench_*"))
    assert len(benches) == 2
    second = json.loads((next(b for b in benches if b != first) / DONE).read_text())
    assert tmp_path / second["arm_dirs"]["dense"] == dense  # the same stage directory, not retrained
    assert (Path(dense) / DONE).stat().st_mtime_ns == before
    assert "bench arm dense epoch" not in log and "bench arm ticket epoch" in log
    assert second["arms"]["ticket"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert len(list(tmp_path.glob("arm-dense_*"))) == 1 and len(list(tmp_path.glob("arm-ticket_*"))) == 2


def test_structured_arm_on_cifar100_shaped_data(tmp_path):
    args = ["bench", *SMALL, "--arms", "dense,ticket,structured", "--dataset", "cifar100", "--dense-epochs", "1",
            "--out", str(tmp_path)]
    assert main(args) == 0
    (run,) = tmp_path.glob("bench_*")
    r = json.loads((run / DONE).read_text())
    arm = r["arms"]["structured"]
    assert arm["architecture"]["channels"] and 0 <= arm["final"]["clean"] <= 1
    ckpt = torch.load((tmp_path / r["arm_dirs"]["structured"]) / "checkpoint.pt", weights_only=True)
    classifier = [v for k, v in ckpt["model"].items() if k.endswith("weight") and v.dim() == 2][-1]
    assert classifier.shape[0] == 100  # a 100-class shrunk model, not CIFAR-10's 10


def test_data_config_of_the_setup_is_the_one_hashed():
    s = _setup(data={"data": "synthetic", "n_train": 100})
    assert ArmStage("dense", s).sections()["data"] == DataConfig(data="synthetic", n_train=100, n_test=100,
                                                                  val_size=100)
