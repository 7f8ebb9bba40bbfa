"""The speedrun and its ingredients, on CPU: the one-cycle schedule against a hand computation, the captured
step's arithmetic with single-step attacks (N-FGSM, FGSM-RS) against the eager step, capture gated to CUDA, the
`robustlth speedrun --quick` dry run (AutoAttack included), curve mode, the full recipe's settings, the
`--ticket boosting|structured` dry runs (the search counted in the training time, the ticket in the identity), and
the benchmark script's dry run with its ticket rows and verdicts. Tests marked `gpu` check the CUDA-graph step with
single-step attacks and the weight average against the eager step (they skip without CUDA). The weight average's
own tests are in test_hooks.py; label smoothing's hand computation is in test_optim.py.
"""
import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robustlth.attacks import FGSMRS, NFGSM
from robustlth.cli import main as cli_main
from robustlth.config import AttackConfig, ConfigError, DataConfig, TrainConfig
from robustlth.data import load_dataset
from robustlth.datasets import CIFAR10
from robustlth.device import autocast, check_device_settings, resolve_cuda_graphs
from robustlth.models import build_model
from robustlth.training import EagerStep, MaskEnforcer, lr_at, make_step, scaled_for_batch, train
from robustlth.training.hooks import WeightAverage
from robustlth.training.steps import CudaGraphStep, StaticStep

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
EPS = 8 / 255


# ----------------------------------------------------------------------------------------------------
# One-cycle LR.

def test_one_cycle_schedule_at_hand_computed_points():
    """Linear 0 -> peak over the first 40 % of the budget, linear back to 0 at the end, per iteration."""
    cfg = TrainConfig(epochs=15, lr=0.2, schedule="onecycle", lr_reference_batch=None)
    ipe = 10  # iterations per epoch: the peak is at epoch 6 = iteration 60
    by_hand = {0: 0.0, 1: 0.2 * 0.1 / 6, 30: 0.1, 45: 0.15, 60: 0.2, 61: 0.2 * (15 - 6.1) / 9, 105: 0.1,
               120: 0.2 * 3 / 9, 149: 0.2 * 0.1 / 9, 150: 0.0}
    for it, lr in by_hand.items():
        assert lr_at(cfg, it, ipe) == pytest.approx(lr, abs=1e-12), it
    # The same curve as fast AT's np.interp form (Andriushchenko & Flammarion, de Jorge et al.) at every iteration.
    ts = np.arange(0, 151) / ipe
    assert np.allclose([lr_at(cfg, i, ipe) for i in range(151)], np.interp(ts, [0, 6, 15], [0, 0.2, 0]))

    # At batch 512 with the LR given at 128: peak x4, and the large-batch warm-up (from the unscaled LR, over
    # min(5, epochs / 10) = 1.5 epochs) blends into the cycle's own ramp.
    big = scaled_for_batch(TrainConfig(epochs=15, lr=0.1, batch_size=512, schedule="onecycle"))
    assert big.lr == pytest.approx(0.4) and big.warmup_epochs == pytest.approx(1.5)
    assert big.warmup_start_lr == pytest.approx(0.1)
    for e, lr in {0.0: 0.1, 0.75: 0.1 + (0.4 * 0.75 / 6 - 0.1) * 0.5, 1.5: 0.1, 3.0: 0.2, 6.0: 0.4,
                  10.5: 0.2}.items():
        assert lr_at(big, round(e * 4), 4) == pytest.approx(lr), e  # 4 iterations per epoch


# ----------------------------------------------------------------------------------------------------
# Single-step attacks in the captured step, and capture gated to CUDA.

def _single_step_steps(attack_cls, precision="fp32", device=CPU, kinds=(EagerStep, StaticStep), ema=0.0):
    torch.manual_seed(0)
    base = build_model("preactresnet18", 0.125, CIFAR10).to(device)
    out = []
    for kind in kinds:
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        hooks = [MaskEnforcer(model, None)] + ([WeightAverage(model, ema)] if ema else [])
        attack = attack_cls(EPS, model_mode="train") if attack_cls is not None else None
        out.append((model, kind(model, opt, attack, device, precision, hooks=hooks), hooks[1:]))
    return out


@pytest.mark.parametrize("attack_cls", [NFGSM, FGSMRS])
def test_captured_arithmetic_with_a_single_step_attack_is_the_eager_step(attack_cls, one_thread):
    """What the CUDA graph records (StaticStep) run eagerly on CPU with N-FGSM or FGSM-RS: the same adversarial
    examples (from the same random start), loss and weights as the eager step. One step is compared exactly; after
    it the sign of near-zero input gradients turns last-bit weight differences into other examples."""
    (m_e, eager, _), (m_s, static, _) = _single_step_steps(attack_cls)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
    torch.manual_seed(7)
    x_adv = attack_cls(EPS, model_mode="train")(copy.deepcopy(m_e), x, y)
    losses = []
    for step in (eager, static):
        step.set_lr(0.05)
        torch.manual_seed(7)
        losses.append(float(step(x, y)[0]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert torch.equal(static.x_adv, x_adv)
    bound = 3 * EPS if attack_cls is NFGSM else EPS  # N-FGSM: noise 2ε plus a step of ε, no projection
    assert float((x_adv - x).abs().max()) <= bound + 1e-6 and 0 <= float(x_adv.min()) and float(x_adv.max()) <= 1
    for (k, a), b in zip(m_e.state_dict().items(), m_s.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6), k


def test_graph_capture_is_gated_to_cuda(synthetic_data, one_thread):
    """On a CPU the default resolves to the eager step and training with N-FGSM runs; an explicit request is one
    configuration error before anything runs; the graph step itself refuses a non-CUDA device."""
    assert resolve_cuda_graphs(CPU, None, "fp32", False) is False
    check_device_settings(CPU, "auto", None)  # the speedrun's settings pass on a CPU
    with pytest.raises(ConfigError, match="CUDA graphs need a CUDA device"):
        check_device_settings(CPU, "auto", True)
    cfg = TrainConfig(epochs=1, batch_size=100, eval_n=20, eval_steps=0, schedule="onecycle", ema=0.9,
                      label_smoothing=0.1)
    torch.manual_seed(0)
    result = train(build_model("cnn6", 0.25, CIFAR10), synthetic_data, cfg, AttackConfig(attack="nfgsm"), CPU)
    assert result.settings["cuda_graphs"] is False and result.history[-1]["weights"] == "average"
    with pytest.raises(ConfigError, match="CUDA graphs need a CUDA device"):
        train(build_model("cnn6", 0.25, CIFAR10), synthetic_data, cfg.replace(cuda_graphs=True),
              AttackConfig(attack="nfgsm"), CPU)
    model = build_model("cnn6", 0.25, CIFAR10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="need a CUDA device"):
        CudaGraphStep(model, opt, NFGSM(EPS), CPU)
    with pytest.raises(ValueError, match="need a CUDA device"):
        make_step(model, opt, NFGSM(EPS), CPU, cuda_graphs=True)
    assert type(make_step(model, opt, NFGSM(EPS), CPU, cuda_graphs=False)) is EagerStep


@pytest.mark.parametrize("attack_cls", [NFGSM, FGSMRS])
@pytest.mark.parametrize("precision,agree", [("fp32", 0.99), ("bf16", 0.9)])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_step_with_a_single_step_attack_matches_eager(attack_cls, precision, agree):
    """The captured step with N-FGSM / FGSM-RS on CUDA: the eager step's adversarial examples on the first batch,
    its loss curve on the next ones (within bf16 tolerance), no re-capture when the LR changes, and a weight
    average updated inside the graph once per step (the capture's warm-up steps undone)."""
    cuda = torch.device("cuda")
    (m_e, eager, [avg_e]), (m_g, graphed, [avg_g]) = _single_step_steps(attack_cls, precision, cuda,
                                                                        (EagerStep, CudaGraphStep), ema=0.9)
    g = torch.Generator().manual_seed(2)
    batches = [(torch.rand(64, 3, 32, 32, generator=g).to(cuda), torch.randint(0, 10, (64,), generator=g).to(cuda))
               for _ in range(6)]
    x, y = batches[0]
    torch.cuda.manual_seed(5)
    with autocast(cuda, precision):
        x_adv = attack_cls(EPS, model_mode="train")(copy.deepcopy(m_e), x, y)
    graph = None
    for i, (x, y) in enumerate(batches):
        lr = 0.05 / (i + 1)
        eager.set_lr(lr)
        graphed.set_lr(lr)
        torch.cuda.manual_seed(5 if i == 0 else 10 + i)
        loss_e, _ = eager(x, y)
        torch.cuda.manual_seed(5 if i == 0 else 10 + i)
        loss_g, _ = graphed(x, y)
        if i == 0:
            assert float(((x_adv - graphed.x_adv).abs() <= 1e-6).float().mean()) >= agree
        graph = graph or graphed.graph
        assert graphed.graph is graph, "an LR change forced a re-capture"
        assert abs(float(loss_e) - float(loss_g)) <= 0.05 * max(1.0, abs(float(loss_e))), (i, loss_e, loss_g)
    assert float(avg_g.updates) == float(avg_e.updates) == 6  # the capture's warm-up steps were undone


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_weight_average_in_the_cuda_graph_matches_eager():
    """Natural fp32 steps (no sign of a gradient to amplify last-bit differences): the average updated inside the
    captured step is the eager step's, its warm-up steps undone."""
    cuda = torch.device("cuda")
    (_, eager, [avg_e]), (_, graphed, [avg_g]) = _single_step_steps(None, "fp32", cuda, (EagerStep, CudaGraphStep),
                                                                    ema=0.9)
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        x, y = torch.rand(64, 3, 32, 32, generator=g).to(cuda), torch.randint(0, 10, (64,), generator=g).to(cuda)
        eager(x, y)
        graphed(x, y)
    assert float(avg_g.updates) == float(avg_e.updates) == 5
    for k, v in avg_e.averaged_state().items():
        assert torch.allclose(v.float(), avg_g.averaged_state()[k].float(), atol=1e-4, rtol=1e-3), k


# ----------------------------------------------------------------------------------------------------
# The speedrun.

def _bench_module():
    """benchmarks/speedrun.py as a module (registered, so its dataclasses resolve their annotations)."""
    import sys
    if "speedrun_bench" not in sys.modules:
        spec = importlib.util.spec_from_file_location("speedrun_bench", ROOT / "benchmarks" / "speedrun.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["speedrun_bench"] = module
        spec.loader.exec_module(module)
    return sys.modules["speedrun_bench"]


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _cli(capsys, *argv) -> dict:
    assert cli_main(["speedrun", "--device", "cpu", "--no-progress", "--threads", "1", *argv]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_speedrun_quick_dry_run(tmp_path, capsys, restore_threads, exact_npz):
    """`robustlth speedrun --device cpu --quick`: the recipe end to end at a tiny size (PreActResNet-18 at 1/8 width,
    N-FGSM, one-cycle, label smoothing, EMA, the guard on), PGD-50 and AutoAttack on 8 exact test images."""
    out = _cli(capsys, "--quick", "--out", str(tmp_path))
    assert out["epochs"] == 1 and out["n"] == 8 and out["guard_fired"] is False
    assert {"clean", "pgd50", "autoattack", "worst_case", "train_time_s", "final_eval_time_s"} <= set(out)
    assert out["autoattack"] <= out["clean"] and out["pgd50"] <= out["clean"]
    run = Path(out["run_dir"])
    report = (run / "report.md").read_text()
    assert "s of training" in report and "AutoAttack, standard" in report and "guard: did not fire" in report
    assert (run / "curve.png").stat().st_size > 0 and (run / "curve.csv").read_text().startswith("epochs,")
    result = json.loads((run / "result.json").read_text())
    point, = result["points"]
    assert point["settings"]["cuda_graphs"] is False and point["train_config"]["ema"] > 0
    assert point["train_config"]["schedule"] == "onecycle" and point["train_config"]["label_smoothing"] > 0
    trained = Path(result["runs"]["1"])
    ckpt = torch.load(trained / "checkpoint.pt", weights_only=True)
    for k, v in ckpt["hooks"]["WeightAverage"]["average"].items():  # the saved, evaluated model is the average
        assert torch.equal(ckpt["model"][k], v), k
    assert ckpt["describe"]["eval_n"] == 8 and ckpt["describe"]["kind"] == "speedrun"


def test_speedrun_curve_mode_reuses_each_budget(tmp_path, capsys, restore_threads, exact_npz):
    """--curve: one run per budget (robust accuracy against training seconds); a later call with one of those
    budgets reuses its run."""
    small = ["--quick", "--out", str(tmp_path), "--n-train", "64", "--final-attacks", "pgd5", "--final-n", "4",
             "--no-guard"]
    out = _cli(capsys, *small, "--curve", "2")
    assert [c["epochs"] for c in out["curve"]] == [1, 2]
    rows = (Path(out["run_dir"]) / "curve.csv").read_text().splitlines()
    assert rows[0].startswith("epochs,") and len(rows) == 3 and "pgd5" in rows[0]
    again = _cli(capsys, *small, "--epochs", "2")  # the 2-epoch run is done: reopened, not retrained
    assert again["train_time_s"] == out["curve"][1]["train_time_s"] and again["run_dir"] != out["run_dir"]


@pytest.mark.parametrize("ticket", ["boosting", "structured"])
def test_speedrun_ticket_dry_run_counts_the_search(ticket, tmp_path, capsys, restore_threads, exact_npz):
    """`--quick --ticket boosting|structured`: a short ticket search (a stage of its own beside the run), then the
    recipe trains the ticket; the search's seconds are in the training time and reported on their own."""
    out = _cli(capsys, "--quick", "--out", str(tmp_path), "--n-train", "64", "--final-attacks", "pgd5",
               "--final-n", "4", "--eval-n", "8", "--ticket", ticket)
    assert out["ticket"] == ticket and out["search_time_s"] > 0 and out["train_time_s"] > out["search_time_s"]
    result = json.loads((Path(out["run_dir"]) / "result.json").read_text())
    point, = result["points"]
    search_dir = Path(point["ticket"]["search_dir"])
    searched = json.loads((search_dir / "result.json").read_text())["search_time"]
    assert search_dir.parent == tmp_path and searched > 0
    # The total is the search plus the ticket's own training (its history's cumulative training seconds).
    assert point["train_time"] == pytest.approx(point["search_time"] + point["history"][-1]["train_time"], abs=0.01)
    trained = Path(result["runs"]["1"])
    assert trained.name.startswith(f"speedrun-{ticket}-e1_")
    ckpt = torch.load(trained / "checkpoint.pt", weights_only=True)
    t = point["ticket"]
    if ticket == "boosting":  # a mask on the dense network; its search time is the search's own
        assert point["search_time"] == pytest.approx(searched)
        assert t["sparsity"] == pytest.approx(0.8, abs=0.01) and t["macs"] == t["dense_macs"]
        assert ckpt["describe"]["mask"] is not None
    else:  # a shrunk network (its shrinking counted with the search)
        assert point["search_time"] >= searched and t["keep"] == 0.5
        assert t["macs"] < 0.6 * t["dense_macs"] and ckpt["architecture"]["channels"] is not None
    report = (Path(out["run_dir"]) / "report.md").read_text()
    assert f"{ticket} ticket" in report and "are counted** in the training time" in report
    assert "of it search s" in report


def test_speedrun_identity_follows_the_ticket_settings(exact_npz):
    """The ticket is part of a run's identity (the stage's hash): none, boosting and structured are three runs,
    and a search setting counts only where the ticket reads it (none without a ticket, the ratio not for the
    structured ticket, the kept fraction not for the boosting one)."""
    from robustlth.speedrun import Speedrun, SpeedrunSetup, SpeedrunTraining

    def ids(**speedrun):
        s = SpeedrunSetup.from_preset("quick", speedrun=speedrun)
        return SpeedrunTraining(s, 1).hash(), Speedrun(s).hash()

    plain, boosting, structured = ids(), ids(ticket="boosting"), ids(ticket="structured")
    for k in (0, 1):
        assert len({plain[k], boosting[k], structured[k]}) == 3
    assert ids(search_epochs=3, ticket_ratio=0.5, ticket_keep=0.25) == plain  # unused without a ticket
    assert ids(ticket="boosting", ticket_keep=0.25) == boosting
    assert ids(ticket="structured", ticket_ratio=0.5) == structured
    for ticket, base in (("boosting", boosting), ("structured", structured)):
        for change in ({"search_epochs": 2}, {"search_lr": 0.02}, {"search_attack": "fgsm"}):
            changed = ids(ticket=ticket, **change)
            assert changed[0] != base[0] and changed[1] != base[1], (ticket, change)
    assert ids(ticket="boosting", ticket_ratio=0.5)[0] != boosting[0]
    assert ids(ticket="structured", ticket_keep=0.25)[0] != structured[0]
    # The curve budgets of a ticket run share one search: the search is not in a budget's own settings.
    s = SpeedrunSetup.from_preset("quick", speedrun={"ticket": "boosting"})
    one, two = SpeedrunTraining(s, 1), SpeedrunTraining(s, 2)
    assert one.ticket_sections()["search"] == two.ticket_sections()["search"] and one.hash() != two.hash()
    with pytest.raises(ConfigError, match="ticket"):
        SpeedrunSetup.from_preset("quick", speedrun={"ticket": "winning"})


def _point(epochs, seconds, robust, search=0.0):
    from robustlth.speedrun import SpeedrunPoint
    return SpeedrunPoint(epochs=epochs, epochs_trained=epochs, train_time=seconds, epoch_eval_time=0.0,
                         final_eval_time=0.0, images_per_second=1.0, n=1000, clean=0.8,
                         accuracy={"pgd50": robust + 0.02, "autoattack": robust}, worst_case=robust,
                         guard_fired=False, stopped=None, settings={}, train_config={}, history=[], final=None,
                         search_time=search, ticket={"kind": "structured"} if search else None)


def test_ticket_verdict_says_plainly_whether_the_ticket_beats_the_recipe():
    """Time to an equal or higher accuracy than the plain recipe's at its main budget, the search counted."""
    from robustlth.speedrun import SpeedrunResult
    bench = _bench_module()

    def run(main, *points):
        return SpeedrunResult(epochs=main, points=list(points), environment={}, runs={})
    plain = run(15, _point(10, 60.0, 0.40), _point(15, 90.0, 0.45))
    faster = run(15, _point(10, 50.0, 0.45, search=8.0), _point(15, 70.0, 0.46, search=8.0))
    v = bench.ticket_verdict(plain, faster, "structured", "robust", dry=False)
    assert v["beats"] is True and v["ticket_s"] == 50.0 and v["plain_s"] == 90.0
    assert "**beats**" in v["text"] and "AutoAttack" in v["text"] and "search included" in v["text"]
    slower = run(15, _point(10, 80.0, 0.44, search=8.0), _point(15, 100.0, 0.45, search=8.0))
    v = bench.ticket_verdict(plain, slower, "structured", "pgd50", dry=False)
    assert v["beats"] is False and v["ticket_s"] == 100.0 and "does **not** beat" in v["text"]
    short = run(15, _point(15, 45.0, 0.40, search=8.0))  # twice as fast, less robust: not a win
    v = bench.ticket_verdict(plain, short, "structured", "robust", dry=True)
    assert v["beats"] is False and "never reaches" in v["text"] and v["text"].startswith("DRY RUN")
    verdicts = [bench.ticket_verdict(plain, r, "structured", "robust", False) for r in (faster,)]
    assert "beats the recipe without one" in bench.overall_verdict(verdicts, dry=False)
    verdicts = [dict(bench.ticket_verdict(plain, short, k, "robust", False)) for k in ("boosting", "structured")]
    assert "does not beat" in bench.overall_verdict(verdicts, dry=False)


def test_full_recipe_settings_and_its_data(tmp_path, jpeg_npz, exact_npz):
    from robustlth.speedrun import PRESETS, SpeedrunSetup, check_data_files
    s = SpeedrunSetup.from_preset("full")
    assert (s.model.model, s.attack.attack, s.attack.eps) == ("preactresnet18", "nfgsm", EPS)
    t = s.train
    assert t.schedule == "onecycle" and t.ema > 0 and t.label_smoothing > 0 and t.guard and t.precision == "auto"
    assert t.channels_last is None and t.cuda_graphs is None  # bf16, channels_last and CUDA graphs on a GPU
    assert scaled_for_batch(t).lr == pytest.approx(t.lr * t.batch_size / 128)
    assert s.final.final_attacks == ("pgd50", "autoattack") and s.final.final_n == 1000
    assert s.data.data.startswith("cifar10-jpeg:") and s.data.test_data.startswith("npz:")
    assert s.data.file().name == "cifar10_jpeg.npz" and s.data.test_file().name == "cifar10_exact_subset.npz"
    assert set(PRESETS) == {"full", "quick"}
    with pytest.raises(ConfigError, match="speedrun.*not there"):
        check_data_files(DataConfig(data=f"cifar10-jpeg:{tmp_path / 'none.npz'}"))
    data = load_dataset(s.data.replace(n_train=100))
    exact = np.load(exact_npz)
    assert torch.equal(data.test.x[:1000].permute(0, 2, 3, 1), torch.from_numpy(exact["x_test"][:1000]))
    assert len(data.test) == 1017 and len(data.train) == 100


def test_benchmark_script_dry_run(tmp_path, restore_threads, exact_npz):
    """benchmarks/speedrun.py at a tiny size: the speedrun, the speedrun with each ticket (its search counted) and
    both published reference loops in one run, a table with ratios to the speedrun and the ticket verdicts (said to
    be a dry run), a curve (CSV and figure) with the device named."""
    bench = _bench_module()
    assert bench.main(["--device", "cpu", "--quick", "--out", str(tmp_path), "--threads", "1", "--n-train", "64",
                       "--final-attacks", "pgd5", "--final-n", "4"]) == 0
    table = (tmp_path / "table.csv").read_text().splitlines()
    assert table[0].startswith("recipe,") and [r.split(",")[0] for r in table[1:]] == \
        ["speedrun", "speedrun+boosting", "speedrun+structured", "fgsm_rs_wong2020", "nfgsm_dejorge2022"]
    report = json.loads((tmp_path / "speedrun_bench.json").read_text())
    rows = {r["recipe"]: r for r in report["table"]}
    assert rows["speedrun"]["train_s_over_speedrun"] == 1.0 and rows["fgsm_rs_wong2020"]["train_s_over_speedrun"] > 0
    assert rows["nfgsm_dejorge2022"]["model"] == "resnet18" and rows["fgsm_rs_wong2020"]["model"] == "preactresnet18"
    for kind in ("boosting", "structured"):
        row = rows[f"speedrun+{kind}"]
        assert 0 < row["search_s"] < row["train_s"] and row["ticket_beats_speedrun"] in (True, False)
        assert [v["metric"] for v in report["tickets"][kind]["verdicts"]] == ["robust", "pgd5"]
    assert rows["speedrun"]["search_s"] == 0 and rows["speedrun"]["ticket_beats_speedrun"] is None
    md = (tmp_path / "table.md").read_text()
    assert "x86_64" in md or "(cpu)" in md
    assert "DRY RUN" in md and "## With a ticket or without" in md and "**Verdict: DRY RUN" in md
    assert report["ticket_verdict"].startswith("**Verdict: DRY RUN")
    assert md.count("- DRY RUN (tiny data and network") == 4  # each ticket, on the headline metric and PGD
    curve = (tmp_path / "curve.csv").read_text().splitlines()
    assert curve[0].startswith("recipe,epochs,train_s") and "device,dry_run" in curve[0] and len(curve) == 6
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_reference_loops_follow_the_published_schedules(one_thread):
    """The references' LR: torch's CyclicLR from 0 to 0.2 at half the steps and back (as both codes call it), with
    its default momentum cycling; FGSM-RS's step is projected to the ε-ball, N-FGSM's is not."""
    bench = _bench_module()
    wong, nfgsm = bench.REFERENCES["fgsm_rs_wong2020"], bench.REFERENCES["nfgsm_dejorge2022"]
    assert (wong.epochs, wong.batch_size, wong.lr_max, wong.alpha, wong.init, wong.project) == \
        (15, 128, 0.2, 10 / 255, EPS, True)
    assert (nfgsm.epochs, nfgsm.lr_max, nfgsm.alpha, nfgsm.init, nfgsm.project) == (30, 0.2, EPS, 2 * EPS, False)
    data = load_dataset(DataConfig(data="synthetic", n_train=64, n_test=8))
    lrs = []

    class Spy(torch.optim.lr_scheduler.CyclicLR):
        def step(self, *a, **k):
            super().step(*a, **k)
            lrs.append(self.get_last_lr()[0])
    real = torch.optim.lr_scheduler.CyclicLR
    torch.optim.lr_scheduler.CyclicLR = Spy
    try:
        for ref in (wong, nfgsm):
            small = bench.Reference(**{**ref.__dict__, "batch_size": 16})
            bench.train_reference(small, data, CPU, 0, 1, 0.0625, lambda m: None)
    finally:
        torch.optim.lr_scheduler.CyclicLR = real
    # Each run: the LR at construction (0, the first step's), then after each of its 4 steps.
    assert lrs == pytest.approx([0.0, 0.1, 0.2, 0.1, 0.0] * 2)
