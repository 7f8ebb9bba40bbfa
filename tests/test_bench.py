import json

import pandas as pd
import pytest

from robustlth.bench import time_to_target
from robustlth.cli import main


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rc = main(["bench", "--preset", "smoke", "--out", str(out), "--device", "cpu", "--no-progress"])
    assert rc == 0
    (run,) = [p for p in out.iterdir() if p.name.startswith("bench_")]
    return run


def test_smoke_outputs_and_schema(smoke):
    r = json.loads((smoke / "result.json").read_text())
    assert set(r) == {"config", "environment", "headline", "arms", "arm_dirs"}
    assert list(r["arms"]) == ["dense", "ticket", "reinit"]
    for k in ("torch", "git_commit", "device", "torch_threads"):
        assert k in r["environment"]
    for name, a in r["arms"].items():
        assert len(a["curve"]) == a["epochs"]
        assert all({"epoch", "wall_clock", "clean", "pgd20"} <= set(p) for p in a["curve"])
        assert [x["name"] for x in a["final"]["attacks"]] == ["pgd5", "cw5"]
        assert a["eval_split"] == "val"
    assert r["arms"]["ticket"]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert r["arms"]["dense"]["sparsity"] == 0
    for f in ("results.csv", "report.md", "robust_vs_time.png", "accuracy_vs_epoch.png"):
        assert (smoke / f).stat().st_size > 0, f
    df = pd.read_csv(smoke / "results.csv")
    assert list(df["arm"]) == ["dense", "ticket", "reinit"]
    md = (smoke / "report.md").read_text()
    assert "Total wall-clock ticket / dense" in md and "![robust_vs_time.png]" in md


def test_ratio_consistent_with_phase_times(smoke):
    r = json.loads((smoke / "result.json").read_text())
    d, t = r["arms"]["dense"], r["arms"]["ticket"]
    assert t["total_time"] == pytest.approx(t["search_time"] + t["train_time"])
    assert t["search_time"] > 0 and d["search_time"] == 0
    assert r["headline"]["total_time_ratio"] == pytest.approx(t["total_time"] / d["total_time"])
    assert t["curve"][-1]["wall_clock"] == pytest.approx(t["total_time"], rel=1e-3, abs=1e-2)
    # The reinit control needs the searched mask, so it pays for the search too.
    assert r["arms"]["reinit"]["search_time"] == pytest.approx(t["search_time"])
    # The target is on the strongest per-epoch robustness: the per-image worst case of PGD-20 and CW-20.
    assert r["headline"]["target_metric"] == "robust"
    target = r["arms"]["dense"]["curve"][-1]["robust"] - 0.01
    assert r["headline"]["target"] == pytest.approx(target)
    ttt = r["headline"]["time_to_target"]
    assert ttt["dense"] is not None
    if ttt["ticket"] is not None:
        assert r["headline"]["time_to_target_vs_dense"] == pytest.approx(ttt["ticket"] / ttt["dense"])


def test_rerun_resumes_from_disk_and_report_rerenders(smoke, capsys):
    before = (smoke / "result.json").read_text()
    (smoke / "report.md").unlink()
    assert main(["report", str(smoke)]) == 0
    assert (smoke / "report.md").exists()
    out = smoke.parent
    assert main(["bench", "--preset", "smoke", "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    after = json.loads((smoke / "result.json").read_text())
    assert after["arms"] == json.loads(before)["arms"]  # every arm came from disk
    assert main(["report", str(smoke), str(smoke), "--output", str(out / "cmp.md")]) == 0
    table = (out / "cmp.md").read_text().split("## Cost-robustness frontier")[0]  # the frontier follows it
    assert table.count("| ticket |") == 2


def test_time_to_target():
    curve = [{"wall_clock": 1.0, "pgd20": 0.1}, {"wall_clock": 2.0, "pgd20": 0.3}, {"wall_clock": 3.0, "pgd20": 0.2}]
    assert time_to_target(curve, 0.25) == 2.0
    assert time_to_target(curve, 0.5) is None


def test_bad_bench_values(capsys):
    assert main(["bench", "--preset", "smoke", "--arms", "dense,nosuch", "--device", "cpu"]) == 2
    assert "arms='nosuch'" in capsys.readouterr().err
    assert main(["bench", "--preset", "smoke", "--arms", "ticket", "--device", "cpu"]) == 2


@pytest.mark.extended
def test_all_control_arms_run(tmp_path):
    args = ["bench", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu", "--no-progress",
            "--arms", "dense,ticket,random_prune,winning,fast_at", "--final-attacks", "pgd3"]
    assert main(args) == 0
    (run,) = tmp_path.glob("bench_*")
    r = json.loads((run / "result.json").read_text())
    arms = r["arms"]
    assert list(arms) == ["dense", "ticket", "random_prune", "winning", "fast_at"]
    assert arms["random_prune"]["search_time"] == 0 and arms["random_prune"]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert arms["winning"]["search_time"] > 0 and arms["winning"]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert arms["fast_at"]["train_config"]["schedule"] == "onecycle" and arms["fast_at"]["sparsity"] == 0
    # The winning control searched at LR 0.1, the ticket at the model's small default: two different searches.
    assert len(list(tmp_path.glob("ticket_*"))) == 2


def test_headline_first_and_arm_checkpoints_open_with_eval(smoke, capsys):
    from robustlth.bench.report import headline_lines
    r = json.loads((smoke / "result.json").read_text())
    lines = headline_lines(r)
    assert lines[0].startswith(("Time to target, ticket vs the dense run's own", "Time to target: the ticket never"))
    assert lines[1].startswith("Total wall-clock ticket / dense") and "worst case over all attacks" in lines[2]
    md = (smoke / "report.md").read_text()
    assert md.index(lines[0]) < md.index("Total wall-clock")
    df = pd.read_csv(smoke / "results.csv")
    assert {"test_worst_case_n50", "test_clean_n50", "test_pgd5_cum_n50", "test_cw5_cum_n50"} <= set(df.columns)
    assert "robustlth_dirty" in r["environment"] and (smoke / "run.log").read_text().count("bench arm dense epoch") == 2
    capsys.readouterr()
    # A bench arm folder opens with `robustlth eval`, on the run's own 50 final test images by default.
    assert main(["eval", "--checkpoint", str(smoke.parent / r["arm_dirs"]["ticket"]), "--attacks", "pgd2", "--device", "cpu",
                 "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["n"] == 50 and out["clean"] == pytest.approx(r["arms"]["ticket"]["final"]["clean"])
    assert "pgd2" in out["cumulative"]


def test_presets_listed_in_help_and_data_checks(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    assert "presets (section: values):" in text and "dense_epochs=100" in text and "autoattack_n=200" in text
    from robustlth.config import ConfigError, DataConfig
    from robustlth.shared_data import check_preset_data
    missing = f"npz:{tmp_path / 'nowhere.npz'}"
    with pytest.raises(ConfigError, match="pass --data npz:PATH to a copy"):
        check_preset_data("bench", "cpu", missing, DataConfig(data=missing))
    check_preset_data("bench", "cpu", missing, DataConfig(data="synthetic"))  # the user's own data: not this check
    # A full-scale preset on a few hundred images is refused before anything is written.
    assert main(["bench", "--preset", "paper", "--data", "synthetic", "--n-train", "400", "--val-size", "100",
                 "--device", "cpu", "--out", str(tmp_path / "runs")]) == 2
    assert "would train on 400 images" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_per_epoch_cw_worst_case_and_cpu_seconds(smoke):
    """The per-epoch validation metric has CW-margin PGD beside cross-entropy PGD, their per-image worst case (which
    the target uses) and the per-image verdicts; every arm records CPU-seconds and the machine's load."""
    from robustlth.stats import unpack_flags
    r = json.loads((smoke / "result.json").read_text())
    assert r["headline"]["target_metric"] == "robust"
    for name, a in r["arms"].items():
        for p in a["curve"]:
            flags = {k: unpack_flags(v) for k, v in p["flags"].items()}
            assert set(flags) == {"clean", "pgd", "cw"} and all(len(f) == 50 for f in flags.values())
            assert p["cw20"] == pytest.approx(flags["cw"].mean()) and p["pgd20"] == pytest.approx(flags["pgd"].mean())
            assert p["robust"] == pytest.approx((flags["clean"] & flags["pgd"] & flags["cw"]).mean())
            assert p["robust"] <= min(p["pgd20"], p["cw20"], p["clean"]) + 1e-9
        assert a["train_cpu_time"] > 0 and a["total_cpu_time"] >= a["train_cpu_time"]
        assert a["curve"][-1]["cpu_time"] == pytest.approx(a["total_cpu_time"])
        assert a["load_avg_range"][0] <= a["load_avg_range"][1]
    assert r["headline"]["total_cpu_time_ratio"] == pytest.approx(r["arms"]["ticket"]["total_cpu_time"]
                                                                  / r["arms"]["dense"]["total_cpu_time"])


def test_one_number_in_stdout_report_json_and_aggregate(smoke, capsys):
    """The final worst-case difference: the same number, n and interval in the stdout JSON, the stdout headline,
    result.json, report.md and the seed aggregate (all read the one headline)."""
    from robustlth.bench.aggregate import aggregate
    capsys.readouterr()
    assert main(["bench", "--preset", "smoke", "--out", str(smoke.parent), "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    printed = json.loads(out[-1])
    r = json.loads((smoke / "result.json").read_text())
    h = r["headline"]
    wc = h["differences"]["ticket - dense"]["test_worst_case"]  # smoke: every attack ran on all 50 images
    assert printed["final_worst_case_diff"] == h["final_worst_case_diff"] == wc["mean"]
    assert printed["final_worst_case_n"] == h["final_worst_case_n"] == wc["n_images"] == 50
    assert printed["final_worst_case_se"] == wc["se"] and printed["final_worst_case_ci"] == [wc["lo"], wc["hi"]]
    assert wc["how"] == "paired over images" and printed["target"] == h["target"]
    sentence = f"ticket − dense {100 * wc['mean']:+.1f} ± {100 * wc['half']:.1f} points"
    md = (smoke / "report.md").read_text()
    assert sentence in md and sentence in "\n".join(out[:-1]) and "n = 50" in md
    agg = aggregate({0: r})["differences"]["ticket - dense"]["test_worst_case"]
    assert (agg["mean"], agg["se"], agg["n_images"]) == (wc["mean"], wc["se"], 50)


def test_choices_are_made_without_test_data(smoke, tmp_path):
    """Only the test labels change (every final evaluation redone against other labels): the test numbers move, and
    every choice (the target, the best epochs, the frontier's marks and the advice) stays the same."""
    import copy

    import torch
    from robustlth.bench.config import BenchSetup
    from robustlth.bench.frontier import budget_advice, frontier_rows
    from robustlth.bench.harness import headline
    from robustlth.data import as_float, load_dataset
    from robustlth.evaluate import evaluate_robustness
    from robustlth.saved_model import open_checkpoint
    r = json.loads((smoke / "result.json").read_text())
    setup = BenchSetup.from_sections({k: v for k, v in r["config"].items() if k != "preset"})
    x, y = as_float(load_dataset(setup.data).test, torch.device("cpu"), setup.final.final_n)
    y = (y + 1 + torch.arange(len(y)) % 3) % 10  # another label for every test image
    other = copy.deepcopy(r)
    for name, d in r["arm_dirs"].items():
        model = open_checkpoint(smoke.parent / d, torch.device("cpu")).model
        other["arms"][name]["final"] = evaluate_robustness(model, x, y, setup.final.final_attacks,
                                                           eps=setup.attack.eps, seed=setup.seed)
    other["headline"] = headline(other["arms"], setup)
    assert [a["final"]["flags"]["clean"] for a in other["arms"].values()] != \
        [a["final"]["flags"]["clean"] for a in r["arms"].values()]  # the test results did change
    for key in ("target", "target_metric", "time_to_target", "best_epoch_val"):
        assert other["headline"][key] == r["headline"][key], key
    before, after = frontier_rows([r]), frontier_rows([other])
    assert [(row["arm"], row["front"]) for row in after] == [(row["arm"], row["front"]) for row in before]
    assert budget_advice(after) == budget_advice(before)


def test_full_scale_presets_run_autoattack_on_at_least_1000_images():
    from robustlth.bench.config import PRESETS, FinalEvalConfig
    for name in ("gpu", "paper"):
        final = FinalEvalConfig.from_dict(PRESETS[name].get("final", {}))
        assert "autoattack" in final.final_attacks
        assert min(final.final_n, final.autoattack_n or final.final_n) >= 1000, name
