"""The new bench arms (structured, ticket_fast, structured_fast) in a smoke bench; the shrunk arm's checkpoint
round-trips through save, load and `robustlth eval`; the cost-robustness frontier."""
import json

import pytest
import torch

from robustlth.bench.frontier import budget_advice, frontier_rows, mark_front, target_lines
from robustlth.cli import main
from robustlth.data import as_float, load_dataset
from robustlth.evaluate import predict
from robustlth.models.shrink import channel_counts
from robustlth.saved_model import open_checkpoint


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("sbench")
    args = ["bench", "--preset", "smoke", "--out", str(out), "--device", "cpu", "--no-progress",
            "--arms", "dense,ticket,structured,ticket_fast,structured_fast", "--final-attacks", "pgd3"]
    threads = torch.get_num_threads()
    try:  # tiny models: one thread is faster than two on a shared machine
        assert main(args + ["--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    (run,) = out.glob("bench_*")
    return run


def _arm_dir(bench, arm: str):
    return bench.parent / json.loads((bench / "result.json").read_text())["arm_dirs"][arm]


@pytest.mark.extended
def test_new_arms_run_and_record_cost(bench):
    r = json.loads((bench / "result.json").read_text())
    arms = r["arms"]
    assert list(arms) == ["dense", "ticket", "structured", "ticket_fast", "structured_fast"]
    dense, structured = arms["dense"], arms["structured"]
    # The structured arm is a smaller dense model: fewer MACs, channel counts recorded, no mask.
    assert structured["architecture"]["channels"] and structured["sparsity"] == 0
    assert structured["macs"] < 0.4 * dense["macs"]
    assert arms["ticket"]["macs"] == dense["macs"]  # an unstructured ticket still multiplies its zeros
    # Search cost is counted in every ticket arm's total (the structured ones add the channel selection).
    assert structured["search_time"] >= arms["ticket"]["search_time"] > 0
    assert structured["total_time"] == pytest.approx(structured["search_time"] + structured["train_time"])
    # The fast arms train the ticket with the single-step attack (the guard records its PGD check).
    assert all("guard_pgd" in json.loads(line) for line in (_arm_dir(bench, "ticket_fast") / "metrics.jsonl").read_text().splitlines())
    assert arms["ticket_fast"]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert arms["structured_fast"]["architecture"] == structured["architecture"]
    md = (bench / "report.md").read_text()
    assert "## Cost-robustness frontier" in md and (bench / "frontier.png").stat().st_size > 0
    assert "structured_fast" in (bench / "frontier.csv").read_text()


@pytest.mark.extended
def test_shrunk_checkpoint_round_trips_through_load_and_eval(bench, capsys):
    arm = json.loads((_arm_dir(bench, "structured") / "result.json").read_text())
    saved = open_checkpoint(_arm_dir(bench, "structured"), torch.device("cpu"))
    model = saved.model
    assert channel_counts(model) == arm["architecture"]["channels"]
    # The loaded model reproduces the bench's own final clean accuracy on the same test images.
    data = load_dataset(saved.data)
    x, y = as_float(data.test, torch.device("cpu"), 50)
    flags, _ = predict(model, x, y)
    assert float(flags.float().mean()) == pytest.approx(arm["final"]["clean"])
    assert main(["eval", "--checkpoint", str(_arm_dir(bench, "structured")), "--attacks", "pgd3", "--n", "20",
                 "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 20


@pytest.mark.extended
def test_corrupt_architecture_record_is_one_clear_error(bench, tmp_path, capsys):
    import shutil
    from robustlth.safety import safe_torch_load
    run = tmp_path / "structured"
    shutil.copytree(_arm_dir(bench, "structured"), run)
    ckpt = safe_torch_load(run / "checkpoint.pt", "checkpoint")
    ckpt["architecture"] = {"model": "cnn6", "width": 0.25, "channels": ["x"]}
    torch.save(ckpt, run / "checkpoint.pt")
    assert main(["eval", "--checkpoint", str(run), "--attacks", "pgd3", "--n", "5", "--device", "cpu"]) == 2
    assert "architecture record" in capsys.readouterr().err


def _arm(total, val, test=0.3):
    """An arm of one run: its total time, last-epoch validation robustness (chooses) and test robustness (reported)."""
    return {"total_time": total, "search_time": 0.0, "macs": 10, "eval_split": "val",
            "curve": [{"epoch": 1, "clean": 0.5, "pgd20": val, "robust": val}],
            "final": {"n": 100, "clean": 0.9, "attacks": [], "worst_case": test}}


def test_front_and_budget_advice_from_validation_with_noise():
    cfg = {"train": {"eval_n": 256}}
    runs = [{"config": cfg, "arms": {"dense": _arm(100, 0.40), "ticket": _arm(60, 0.41), "fast_at": _arm(20, 0.30),
                                     "slow_bad": _arm(80, 0.35), "broken": _arm(5, 0.0)},
             "headline": {"time_to_target": {"dense": 50.0, "ticket": 30.0}}},
            {"config": cfg, "arms": {"dense": _arm(110, 0.42), "ticket": _arm(70, 0.39), "fast_at": _arm(30, 0.32),
                                     "slow_bad": _arm(90, 0.33), "broken": _arm(6, 0.0)},
             "headline": {"time_to_target": {"dense": 70.0, "ticket": None}}}]
    rows = {r["arm"]: r for r in frontier_rows(runs)}
    assert rows["dense"]["total_s"] == pytest.approx(105) and rows["dense"]["val_robust"] == pytest.approx(0.41)
    assert rows["ticket"]["robust_sd"] == pytest.approx(0.0, abs=1e-12)  # the test numbers: reported only
    # Time to target: averaged over the runs that got there, and how many did is kept beside it.
    assert rows["dense"]["time_to_target_s"] == pytest.approx(60) and rows["dense"]["reached_target"] == "2/2"
    assert rows["ticket"]["time_to_target_s"] == pytest.approx(30) and rows["ticket"]["reached_target"] == "1/2"
    assert rows["fast_at"]["reached_target"] == "0/2"
    assert "ticket (30.0 s, 1/2 runs)" in target_lines(list(rows.values()))[0]
    # Over seeds: ticket beats fast_at by 9 ± 2 (s.e.) points: on the front; dense is 1 ± 2 above the ticket: within
    # noise, not on the front; slow_bad is 6 points below the ticket in both seeds: dominated; broken has no
    # robustness, so being fastest does not put it on the front.
    assert {k: r["front"] for k, r in rows.items()} == {
        "fast_at": "Pareto", "ticket": "Pareto", "dense": "within noise of the front", "slow_bad": "dominated",
        "broken": "no robustness"}
    advice = budget_advice(list(rows.values()))
    assert advice[0].startswith("- under 25.0 s") and "**fast_at**" in advice[1] and "**ticket**" in advice[-1]
    assert "within noise of it" in advice[-1] and "dense" in advice[-1]
    tie = [{"arm": "a", "total_s": 1.0, "val_robust": 0.5, "val_robust_se": 0.03},
           {"arm": "b", "total_s": 1.0, "val_robust": 0.5, "val_robust_se": 0.03}]
    mark_front(tie)
    assert [r["front"] for r in tie] == ["Pareto", "within noise of the front"]  # an equal arm adds nothing


@pytest.mark.parametrize("flags,message", [
    (["--structured-keep", "0"], "structured keep"),
    (["--structured-criterion", "nope"], "structured criterion"),
    (["--structured-scope", "x"], "structured scope"),
    (["--arms", "dense,ticket,structured", "--model", "conv6"], "no structured pruning support")])
def test_bad_structured_values_fail_before_any_work(flags, message, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["bench", "--preset", "smoke", "--out", str(out), "--device", "cpu", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())
