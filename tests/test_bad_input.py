"""Fault injection (a): a corpus of bad inputs across flags, YAML, data files, checkpoints, tickets and output
locations. Each must end with exit status 2, one line on stderr naming the problem, no traceback, and nothing
written to disk."""
from pathlib import Path

import numpy as np
import pytest
import torch

import corpus_checks
import corpus_parsing
import corpus_trust
from corpus import Case, _copy_run, _npz, _truncate, _yaml
from faults import TINY_SEARCH as SEARCH, TINY_TRAIN as TINY, cli
from robustlth.cli import main
from robustlth.datasets import CIFAR10
from robustlth.models import build_model
from robustlth.pruning import Ticket, dense_mask, save_ticket

WITH_OUT = {"train", "find-ticket", "bench", "ablate"}


FIXTURES = [
    _yaml("unknown_section.yaml", {"trian": {"lr": 0.1}}),
    _yaml("unused_section.yaml", {"prune": {"ratio": 0.5}}),
    _yaml("unknown_key.yaml", {"train": {"lrr": 0.1}}),
    _yaml("lr_abc.yaml", {"train": {"lr": "abc"}}),
    _yaml("milestones_scalar.yaml", {"train": {"milestones": 0.5}}),
    _yaml("seed_x.yaml", {"train": {"seed": "x"}}),
    _yaml("data_5.yaml", {"data": {"data": 5}}),
    _yaml("batch_true.yaml", {"train": {"batch_size": True}}),
    _yaml("augment_maybe.yaml", {"data": {"augment": "maybe"}}),
    _yaml("lr_nan.yaml", "train:\n  lr: .nan\n"),
    _yaml("section_list.yaml", {"train": [1, 2]}),
    _yaml("top_list.yaml", [1, 2]),
    _yaml("broken.yaml", "train: {lr: [\n"),
    _yaml("bench_unknown.yaml", {"bench": {"armz": ["dense"]}}),
    _npz("small.npz"),
    _npz("missing_key.npz", y_test=None),
    _npz("float_images.npz", x_train=np.zeros((20, 32, 32, 3), np.float32)),
    _npz("object_array.npz", y_train=np.array([{"a": 1}] * 20, dtype=object)),
    _npz("labels_out_of_range.npz", y_train=np.arange(20) + 5),
    lambda b: (b / "garbage.npz").write_bytes(b"not a zip file at all"),
    lambda b: (b / "a_folder.npz").mkdir(),
    lambda b: (b / "a_file").write_text("x"),
    lambda b: (b / "garbage.pt").write_bytes(b"\x00garbage"),
    lambda b: torch.save({"weights": torch.ones(3)}, b / "foreign.pt"),
    *corpus_trust.FIXTURES, *corpus_parsing.FIXTURES, *corpus_checks.FIXTURES,
]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    b = tmp_path_factory.mktemp("fixtures")
    for make in FIXTURES:
        make(b)
    model = build_model("cnn6", 0.25, CIFAR10)
    meta = {"model": "cnn6", "width": 0.25}
    save_ticket(b / "ticket.pt", Ticket(dense_mask(model), model.state_dict(), meta))
    half = {k: torch.full(m.shape, 0.5) for k, m in dense_mask(model).items()}
    torch.save({"format": "robustlth-ticket-v1", "mask": half, "state_dict": model.state_dict(), "meta": meta},
               b / "half_mask.pt")
    assert main(["train", *TINY, "--out", str(b / "runs")]) == 0  # a finished run, to resume and evaluate
    (b / "not_bench").mkdir()
    (b / "not_bench" / "result.json").write_text("{broken")
    return b


CASES = [
    # Flags.
    Case("flag-lr-text", ["train", "--lr", "abc"], "invalid lr value 'abc'"),
    Case("flag-lr-negative", ["train", "--lr", "-1"], "lr=-1.0"),
    Case("flag-epochs-0", ["train", "--epochs", "0"], "epochs=0"),
    Case("flag-batch-0", ["train", "--batch-size", "0"], "batch_size=0"),
    Case("flag-threads-negative", ["train", "--threads", "-2"], "--threads: expected an integer >= 1"),
    Case("flag-threads-0", ["train", "--threads", "0"], "--threads: expected an integer >= 1"),
    Case("flag-eps-2", ["train", "--eps", "2"], "eps=2.0"),
    Case("flag-eps-division-by-zero", ["train", "--eps", "8/0"], "invalid eps value '8/0'"),
    Case("flag-model", ["train", "--model", "nosuch"], "available models are"),
    Case("flag-width-0", ["train", "--width", "0"], "width=0.0"),
    Case("flag-schedule", ["train", "--schedule", "cosine"], "schedule='cosine'"),
    Case("flag-milestones-order", ["train", "--milestones", "0.9,0.5"], "milestones="),
    Case("flag-precision", ["train", "--precision", "fp64"], "precision='fp64'"),
    Case("flag-device", ["train", "--device", "tpu"], "invalid device 'tpu'"),
    Case("flag-fp16-on-cpu", ["train", *TINY, "--precision", "fp16"], "fp16 is not supported on CPU"),
    Case("flag-search-fp16-on-cpu", ["find-ticket", *SEARCH, "--search-precision", "fp16"],
         "fp16 is not supported on CPU"),
    Case("flag-bench-fp16-on-cpu", ["bench", "--preset", "smoke", "--precision", "fp16", "--device", "cpu"],
         "fp16 is not supported on CPU"),
    Case("flag-data-source", ["train", "--data", "nosuch"], "invalid data='nosuch'"),
    Case("flag-seed-negative", ["train", "--seed", "-1"], "seed=-1"),
    Case("flag-models-width-0", ["models", "--width", "0"], "--width: expected a number in (0"),
    Case("flag-eval-n-0", ["eval", "--checkpoint", "x", "--n", "0"], "--n: expected an integer >= 1"),
    Case("flag-eval-n-negative", ["eval", "--checkpoint", "x", "--n", "-5"], "--n: expected an integer >= 1"),
    Case("flag-eval-attack", ["eval", "--checkpoint", "/no/run", "--attacks", "pgdfoo"], "unknown attack 'pgdfoo'"),
    Case("flag-eval-no-attacks", ["eval", "--checkpoint", "/no/run", "--attacks", ","], "no attacks given"),
    Case("flag-eval-missing-run", ["eval", "--checkpoint", "/no/run"], "not a run directory"),
    Case("flag-ratio", ["find-ticket", "--ratio", "1.5"], "ratio=1.5"),
    Case("flag-rounds-0", ["find-ticket", "--rounds", "0"], "rounds=0"),
    Case("flag-rewind-beyond-search", ["find-ticket", *SEARCH, "--rewind-iteration", "100000"],
         "rewind_iteration=100000"),
    Case("flag-dense-layers-unknown", ["find-ticket", *SEARCH, "--strategy", "global", "--dense-layers", "nosuch"],
         "invalid dense_layers nosuch"),
    Case("flag-bench-final-attack", ["bench", "--preset", "smoke", "--final-attacks", "pgdX"], "unknown attack 'pgdX'"),
    Case("flag-bench-strategy", ["bench", "--preset", "smoke", "--strategy", "foo"], "strategy='foo'"),
    Case("flag-bench-tolerance", ["bench", "--preset", "smoke", "--target-tolerance", "-5"], "target_tolerance=-5.0"),
    Case("flag-bench-arm", ["bench", "--preset", "smoke", "--arms", "dense,nosuch"], "arms='nosuch'"),
    Case("flag-bench-arms-without-ticket", ["bench", "--preset", "smoke", "--arms", "dense"], "dense and ticket"),
    Case("flag-bench-epochs-0", ["bench", "--preset", "smoke", "--dense-epochs", "0"], "dense_epochs=0"),
    Case("flag-ablate-search-attack", ["ablate", "--preset", "smoke", "--grid-search-attack", "foo"],
         "search_attack='foo'"),
    Case("flag-ablate-ratio", ["ablate", "--preset", "smoke", "--grid-ratio", "1.5"], "pruning ratios in [0, 1)"),
    Case("flag-ablate-device", ["ablate", "--preset", "smoke", "--device", "tpu"], "invalid device 'tpu'"),
    Case("flag-control-k", ["control", "--ticket", "{b}/ticket.pt", "--kind", "noise", "--k", "-1",
                            "--output", "{tmp}/c.pt"], "--k: expected a number in [0"),
    # YAML.
    Case("yaml-missing-file", ["train", "--config", "{b}/nosuch.yaml"], "does not exist"),
    Case("yaml-unknown-section", ["train", "--config", "{b}/unknown_section.yaml"], "unknown config section(s) trian"),
    Case("yaml-unused-section", ["train", "--config", "{b}/unused_section.yaml"], "unknown config section(s) prune"),
    Case("yaml-unknown-key", ["train", "--config", "{b}/unknown_key.yaml"], "unknown field(s) lrr"),
    Case("yaml-lr-text", ["train", "--config", "{b}/lr_abc.yaml"], "invalid lr='abc'"),
    Case("yaml-milestones-scalar", ["train", "--config", "{b}/milestones_scalar.yaml"], "invalid milestones=0.5"),
    Case("yaml-seed-text", ["train", "--config", "{b}/seed_x.yaml"], "invalid seed='x'"),
    Case("yaml-data-number", ["train", "--config", "{b}/data_5.yaml"], "invalid data=5"),
    Case("yaml-batch-bool", ["train", "--config", "{b}/batch_true.yaml"], "invalid batch_size=True"),
    Case("yaml-augment-text", ["train", "--config", "{b}/augment_maybe.yaml"], "invalid augment='maybe'"),
    Case("yaml-lr-nan", ["train", "--config", "{b}/lr_nan.yaml"], "invalid lr=nan"),
    Case("yaml-section-list", ["train", "--config", "{b}/section_list.yaml"], "must be a mapping"),
    Case("yaml-top-list", ["train", "--config", "{b}/top_list.yaml"], "must hold a mapping"),
    Case("yaml-broken", ["train", "--config", "{b}/broken.yaml"], "broken.yaml is not valid YAML"),
    Case("yaml-bench-unknown-key", ["bench", "--preset", "smoke", "--config", "{b}/bench_unknown.yaml"],
         "unknown field(s) armz"),
    # Data files.
    Case("data-missing-file", ["train", *TINY, "--data", "npz:/no/such.npz"], "/no/such.npz does not exist"),
    Case("data-missing-key", ["train", *TINY, "--data", "npz:{b}/missing_key.npz"], "missing key(s) y_test"),
    Case("data-float-images", ["train", *TINY, "--data", "npz:{b}/float_images.npz"], "expected uint8 images"),
    Case("data-object-array", ["train", *TINY, "--data", "npz:{b}/object_array.npz"], "not a readable .npz"),
    Case("data-labels", ["train", *TINY, "--data", "npz:{b}/labels_out_of_range.npz"], "expected 0..9"),
    Case("data-not-zip", ["train", *TINY, "--data", "npz:{b}/garbage.npz"], "not a readable .npz"),
    Case("data-folder", ["train", *TINY, "--data", "npz:{b}/a_folder.npz"], "a_folder.npz does not exist"),
    Case("data-jpeg-not-zip", ["train", *TINY, "--data", "cifar10-jpeg:{b}/garbage.npz"], "not a readable .npz"),
    Case("data-n-train-too-big", ["train", *TINY, "--data", "npz:{b}/small.npz"], "n_train=100 but"),
    # Tickets.
    Case("ticket-missing", ["train", *TINY, "--mask", "{b}/nosuch.pt"], "nosuch.pt does not exist"),
    Case("ticket-half-mask", ["train", *TINY, "--mask", "{b}/half_mask.pt"], "is not a boolean tensor"),
    Case("ticket-garbage", ["train", *TINY, "--mask", "{b}/garbage.pt"], "is not a readable ticket file"),
    Case("ticket-foreign", ["train", *TINY, "--mask", "{b}/foreign.pt"], "is not a robustlth ticket"),
    Case("ticket-other-model", ["train", *TINY, "--mask", "{b}/ticket.pt", "--model", "vgg11"], "is a ticket for cnn6"),
    Case("control-garbage", ["control", "--ticket", "{b}/garbage.pt", "--kind", "reinit", "--output", "{tmp}/c.pt"],
         "is not a readable ticket file"),
    # Checkpoints of a run being resumed or evaluated.
    Case("resume-damaged-checkpoint", ["train", *TINY], "start this run over", _copy_run(_truncate)),
    Case("resume-foreign-checkpoint", ["train", *TINY], "not a robustlth-checkpoint-v3 file",
         _copy_run(lambda run: torch.save({"weights": torch.ones(2)}, run / "checkpoint.pt"))),
    Case("eval-damaged-checkpoint", ["eval", "--checkpoint", "{out}/RUN", "--n", "5", "--attacks", "pgd1"],
         "is not a readable robustlth checkpoint", _copy_run(_truncate)),
    Case("eval-foreign-weights", ["eval", "--checkpoint", "{out}/RUN", "--n", "5", "--attacks", "pgd1"],
         "could not be loaded as a cnn6 checkpoint",
         _copy_run(lambda run: torch.save({"model": {"x": torch.ones(1)}}, run / "checkpoint.pt"))),
    Case("eval-n-beyond-test-set", ["eval", "--checkpoint", "{out}/RUN", "--n", "100000", "--attacks", "pgd1"],
         "test set of synthetic has", _copy_run(lambda run: None)),
    # Output locations and report inputs.
    Case("out-empty", ["train", *TINY, "--out", ""], "--out is empty"),
    Case("out-is-file", ["train", *TINY, "--out", "{b}/a_file"], "is a file, not a folder"),
    Case("out-below-file", ["train", *TINY, "--out", "{b}/a_file/runs"], "is a file, not a folder"),
    Case("eval-output-folder", ["eval", "--checkpoint", "{out}/RUN", "--n", "5", "--attacks", "pgd1", "--output",
                                "{b}"], "is a folder", _copy_run(lambda run: None)),
    Case("report-output-folder", ["report", "{b}/runs", "--output", "{b}"], "is a folder"),
    Case("control-output-folder", ["control", "--ticket", "{b}/ticket.pt", "--kind", "reinit", "--output", "{b}"],
         "is a folder"),
    Case("report-train-run", ["report", "{b}/runs/RUN"], "is not a benchmark's result.json"),
    Case("report-corrupt-json", ["report", "{b}/not_bench"], "result.json is not a valid benchmark results file"),
    Case("report-missing", ["report", "/no/such/run"], "has no result.json"),
    *corpus_trust.CASES, *corpus_parsing.CASES, *corpus_checks.CASES,
]


def _paths(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _argv(case: Case, b: Path, tmp: Path, out: Path) -> list[str]:
    run = next((p.name for p in (b / "runs").glob("train_*")), "")
    argv = [a.format(b=b, tmp=tmp, out=out).replace("RUN", run) for a in case.argv]
    if argv[0] in WITH_OUT and "--out" not in argv:
        argv += ["--out", str(out)]
    return argv


def test_the_corpus_is_large_and_distinct():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(case, fixtures, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs"
    if case.prepare:
        case.prepare(fixtures, out)
    before, fixtures_before = _paths(tmp_path), _paths(fixtures)
    argv = _argv(case, fixtures, tmp_path, out)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"robustlth {argv[0]}: error: "), err
    assert case.needle in lines[0], lines[0]
    assert _paths(tmp_path) == before and _paths(fixtures) == fixtures_before  # nothing written, nothing left


@pytest.mark.parametrize("args,needle", [
    (["train", "--config", "/no/such.yaml"], "does not exist"),
    (["bench", "--preset", "smoke", "--final-attacks", "pgdX", "--out", "/no/such/root"], "unknown attack 'pgdX'"),
])
def test_bad_input_in_a_real_process_has_no_traceback(args, needle):
    r = cli(*args, check=False)
    assert r.returncode == 2 and needle in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
