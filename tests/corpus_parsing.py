"""Bad-input cases: strict parsing and one error line at the edges (flags, lists, YAML, JSON, reports, OS errors)."""
import copy
import json

from corpus import Case, _copy_run, _npz, _yaml  # noqa: F401
from faults import TINY_SEARCH as SEARCH, TINY_TRAIN as TINY  # noqa: F401

HUGE = "99999999999999999999"  # beyond 64 bits


def _bench_results() -> dict:
    """A complete (tiny) bench result.json, as `robustlth bench` writes it: `robustlth report` renders it."""
    final = {"n": 10, "eps": 8 / 255, "worst_case": 0.1, "clean": 0.5, "independent": False, "warnings": [],
             "attacks": [{"name": "pgd5", "robust_after": 0.1, "accuracy": 0.1, "time_s": 0.1, "n": 10}]}
    curve = [{"epoch": 1, "wall_clock": 1.0, "clean": 0.4, "pgd20": 0.2, "loss": 2.0, "eval_loss": 2.1}]
    arm = {"search_time": 0.0, "train_time": 1.0, "total_time": 1.0, "eval_time": 0.1, "epochs": 1, "stopped": None,
           "eval_split": "val", "sparsity": 0.0, "curve": curve, "final": final}
    config = {"preset": "smoke", "data": {"data": "synthetic"}, "model": {"model": "cnn6", "width": 0.25},
              "bench": {"target_tolerance": 0.01, "dense_epochs": 1, "ticket_epochs": 1, "search_epochs": 1,
                        "search_attack": "fgsm"},
              "train": {"eval_n": 10, "seed": 0}, "attack": {"attack": "pgd", "attack_steps": 2},
              "prune": {"strategy": "global_normalized", "ratio": 0.8}}
    headline = {"total_time_ratio": 1.0, "target_pgd20": 0.19, "target_split": "val",
                "time_to_target": {"dense": 1.0, "ticket": 1.0}, "time_to_target_vs_dense": 1.0}
    return {"config": config, "environment": {}, "headline": headline,
            "arms": {"dense": copy.deepcopy(arm), "ticket": copy.deepcopy(arm)}}


def _bench_dir(name: str, damage):
    def make(b):
        results = _bench_results()
        damage(results)
        (b / name).mkdir()
        (b / name / "result.json").write_text(json.dumps(results))
    return make


GRID_CONFIG = ("preset: smoke\naxes: {search_lr: [], ratio: [0.5, 0.8], width: [], search_attack: [], "
               "search_epochs: [], budget: [], controls: true, rst: false}\nmodel: {model: cnn6, width: 0.25}\n"
               "data: {data: synthetic}\nattack: {attack: pgd}\ntrain: {eval_n: 10}\n")
GRID_CSV = ("cell,search_lr,ratio,status,arm,epoch1_pgd,error\nabc,0.01,0.5,ok,ticket,0.2,\n"
            "abd,0.01,0.8,ok,ticket,0.1,\n")


def _grid_dir(name: str, config: str = GRID_CONFIG, table=GRID_CSV):
    def make(b):
        (b / name).mkdir()
        (b / name / "config.yaml").write_text(config)
        if isinstance(table, bytes):
            (b / name / "ablation.csv").write_bytes(table)
        else:
            (b / name / "ablation.csv").write_text(table)
    return make


def _pop(*path):
    def damage(results):
        d = results
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
    return damage


def _set(value, *path):
    def damage(results):
        d = results
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return damage


FIXTURES: list = [  # callables (fixtures folder) -> None that write the files the cases below use
    lambda b: (b / "binary.yaml").write_bytes(bytes(range(256)) * 4),
    _yaml("duplicate_section.yaml", "train:\n  lr: 0.1\ntrain:\n  lr: 0.2\n"),
    _yaml("duplicate_key.yaml", "train:\n  lr: 0.1\n  lr: 0.3\n"),
    _yaml("number_key.yaml", "train:\n  1: 2\n"),
    _yaml("bad_date.yaml", "train:\n  seed: 2020-13-45\n"),
    _yaml("milestones_twice.yaml", {"train": {"milestones": [0.5, 0.5]}}),
    _yaml("final_empty_item.yaml", {"final": {"final_attacks": ["pgd5", ""]}}),
    _yaml("final_twice.yaml", {"final": {"final_attacks": ["pgd5", "pgd5"]}}),
    _yaml("seed_huge.yaml", "train:\n  seed: " + HUGE + "\n"),
    _yaml("old_bench_seed_huge.yaml", "bench:\n  seed: " + HUGE + "\n"),
    _yaml("lth_seeds_twice.yaml", {"lth": {"seeds": [3, 3]}}),
    _yaml("deep.yaml", "train: " + "[" * 5000 + "]" * 5000 + "\n"),
    _yaml("merge_then_twice.yaml", "base: &b {lr: 0.1}\ntrain:\n  <<: *b\n  lr: 0.2\n  lr: 0.3\n"),
    _bench_dir("bench_no_ticket", _pop("arms", "ticket")),
    _bench_dir("bench_no_curve", _pop("arms", "ticket", "curve")),
    _bench_dir("bench_no_final_attacks", _pop("arms", "dense", "final", "attacks")),
    _bench_dir("bench_arms_list", _set(["dense", "ticket"], "arms")),
    _bench_dir("bench_eval_n_text", _set("x", "config", "train", "eval_n")),
    _bench_dir("bench_no_headline_ttt", _pop("headline", "time_to_target")),
    _grid_dir("grid_python_tag", "axes: !!python/object/apply:os.system ['touch PWNED']\n"),
    _grid_dir("grid_axes_list", GRID_CONFIG.replace("axes: {", "axes: [").replace("rst: false}", "rst: false]")),
    _grid_dir("grid_no_model", GRID_CONFIG.replace("model: {model: cnn6, width: 0.25}\n", "")),
    _grid_dir("grid_unknown_axis", GRID_CONFIG.replace("rst: false}", "rst: false, depth: [1]}")),
    _grid_dir("grid_binary_csv", table=b"\x00\xff\xfe" * 100),
    _grid_dir("grid_no_columns", table="a,b\n1,2\n"),
    _grid_dir("grid_empty_csv", table=""),
]

CASES: list[Case] = [
    # The cases.
    Case("yaml-binary-file", ["train", "--config", "{b}/binary.yaml"], "binary.yaml is not a YAML file"),
    Case("seeds-huge", ["bench", "--preset", "smoke", "--seeds", HUGE], "is outside [0, 4294967295]"),
    Case("seeds-above-2-32", ["bench", "--preset", "smoke", "--seeds", "0,4294967296"], "seed 4294967296 is outside"),
    Case("report-bench-no-ticket-arm", ["report", "{b}/bench_no_ticket"], "arms.ticket is missing"),
    Case("report-bench-no-curve", ["report", "{b}/bench_no_curve"], "arms.ticket.curve is missing"),
    Case("report-bench-no-final-attacks", ["report", "{b}/bench_no_final_attacks"],
         "arms.dense.final.attacks is missing"),
    Case("report-grid-python-tag", ["report", "{b}/grid_python_tag"], "is not valid YAML"),
    Case("seeds-empty-item", ["bench", "--preset", "smoke", "--seeds", "0,,1"], "an empty item"),
    Case("seeds-trailing-comma", ["ablate", "--preset", "smoke", "--seeds", "0,1,"], "an empty item"),
    Case("arms-twice", ["bench", "--preset", "smoke", "--arms", "dense,ticket,ticket"], "'ticket' is given twice"),
    Case("flag-abbreviated", ["bench", "--preset", "smoke", "--dense-epoch", "3"],
         "unrecognized arguments: --dense-epoch 3 (did you mean --dense-epochs?)"),
    Case("flag-abbreviated-train", ["train", *TINY, "--no-prog"], "unrecognized arguments: --no-prog"),
    Case("arms-empty-item", ["bench", "--preset", "smoke", "--arms", "dense,,ticket"], "an empty item"),
    Case("final-attacks-empty-item", ["bench", "--preset", "smoke", "--final-attacks", "pgd5,"], "an empty item"),
    Case("final-attacks-twice", ["bench", "--preset", "smoke", "--final-attacks", "pgd5,pgd5"],
         "'pgd5' is given twice"),
    Case("milestones-empty-item", ["train", *TINY, "--milestones", "0.5,,0.75"], "an empty item"),
    Case("milestones-twice", ["train", *TINY, "--milestones", "0.5,0.5"], "0.5 is given twice"),
    Case("dense-layers-empty-item", ["find-ticket", *SEARCH, "--strategy", "global", "--dense-layers", "a,,b"],
         "an empty item"),
    Case("grid-ratio-empty-item", ["ablate", "--preset", "smoke", "--grid-ratio", "0.5,,0.7"], "an empty item"),
    Case("grid-budget-twice", ["ablate", "--preset", "smoke", "--grid-budget", "1,1"], "1 is given twice"),
    Case("grid-search-attack-empty-item", ["ablate", "--preset", "smoke", "--grid-search-attack", "fgsm,"],
         "an empty item"),
    Case("eval-attacks-empty-item", ["eval", "--checkpoint", "/no/run", "--attacks", "pgd20,,cw"], "an empty item"),
    Case("eval-attacks-twice", ["eval", "--checkpoint", "/no/run", "--attacks", "pgd20,cw,pgd20"],
         "'pgd20' is given twice"),
    # Found on the surfaces added since: lth, sweep, locality, grids, reports, YAML, numeric flags.
    Case("lth-seeds-huge", ["lth", "--preset", "smoke", "--seeds", HUGE], "expected an integer in [0, 4294967295]"),
    Case("lth-seeds-empty-item", ["lth", "--preset", "smoke", "--seeds", "0,,1"], "an empty item"),
    Case("lth-models-twice", ["lth", "--preset", "smoke", "--models", "conv2,conv2"], "'conv2' is given twice"),
    Case("lth-controls-twice", ["lth", "--preset", "smoke", "--controls", "reinit,reinit"], "'reinit' is given twice"),
    Case("lth-seeds-twice-yaml", ["lth", "--preset", "smoke", "--config", "{b}/lth_seeds_twice.yaml"],
         "invalid seeds=[3, 3]"),
    Case("sweep-methods-twice", ["sparsity-sweep", "--preset", "smoke", "--methods", "dense,dense"],
         "'dense' is given twice"),
    Case("sweep-rst-iterations-huge", ["sparsity-sweep", "--preset", "smoke", "--rst-iterations", "99999999999"],
         "invalid rst_iterations=99999999999"),
    Case("locality-remove-units-twice", ["locality", "--preset", "smoke", "--remove-units", "4,4"],
         "4 is given twice"),
    Case("locality-label-seed-huge", ["locality", "--preset", "smoke", "--label-seed", HUGE], "invalid label_seed="),
    Case("train-seed-huge", ["train", *TINY, "--seed", HUGE], "invalid seed=" + HUGE),
    Case("prune-seed-huge", ["find-ticket", *SEARCH, "--strategy", "random", "--prune-seed", HUGE],
         "invalid prune_seed="),
    Case("n-train-beyond-64-bits", ["train", *TINY, "--n-train", HUGE], "expected a 64-bit integer"),
    Case("eval-seed-huge", ["eval", "--checkpoint", "/no/run", "--seed", HUGE],
         "--seed: expected an integer >= 0 and <= 4294967295"),
    Case("control-seed-huge", ["control", "--ticket", "{b}/ticket.pt", "--kind", "reinit", "--seed", HUGE,
                               "--output", "{tmp}/c.pt"], "--seed: expected an integer >= 0 and <= 4294967295"),
    Case("eval-attack-steps-huge", ["eval", "--checkpoint", "/no/run", "--attacks", "pgd99999999999"],
         "expected at most 100,000 steps"),
    Case("eval-attack-restarts-huge", ["eval", "--checkpoint", "/no/run", "--attacks", "cw5x5000"],
         "1,000 restarts"),
    Case("threads-huge", ["train", *TINY, "--threads", "99999999999"],
         "--threads: expected an integer >= 1 and <= 1024"),
    Case("dist-timeout-huge", ["train", *TINY, "--dist-timeout", "1e30"], "--dist-timeout: expected a number in (0,"),
    Case("replicates-beyond-seed-range", ["bench", "--preset", "smoke", "--replicates", "99999999999"],
         "go beyond 4294967295"),
    Case("stray-argument", ["train", *TINY, "extra"], "unrecognized arguments: extra"),
    Case("config-empty-path", ["train", "--config", ""], "--config: expected a YAML file, got an empty path"),
    Case("config-folder", ["train", "--config", "{b}"], "is a folder, not a YAML file"),
    Case("yaml-duplicate-section", ["train", "--config", "{b}/duplicate_section.yaml"], "found the key 'train' twice"),
    Case("yaml-duplicate-key", ["train", "--config", "{b}/duplicate_key.yaml"], "found the key 'lr' twice"),
    Case("yaml-number-key", ["train", "--config", "{b}/number_key.yaml"], "unknown field(s) 1 for TrainConfig"),
    Case("yaml-impossible-date", ["train", "--config", "{b}/bad_date.yaml"], "bad_date.yaml is not valid YAML"),
    Case("yaml-nested-too-deeply", ["train", "--config", "{b}/deep.yaml"], "deep.yaml is nested too deeply"),
    Case("yaml-key-twice-after-merge", ["train", "--config", "{b}/merge_then_twice.yaml"], "found the key 'lr' twice"),
    Case("yaml-milestones-twice", ["train", "--config", "{b}/milestones_twice.yaml"], "0.5 is given twice"),
    Case("yaml-final-attacks-empty-item", ["bench", "--preset", "smoke", "--config", "{b}/final_empty_item.yaml"],
         "without empty items"),
    Case("yaml-final-attacks-twice", ["bench", "--preset", "smoke", "--config", "{b}/final_twice.yaml"],
         "'pgd5' is given twice"),
    Case("yaml-seed-huge", ["train", "--config", "{b}/seed_huge.yaml"], "invalid seed=" + HUGE),
    Case("yaml-old-bench-seed-huge", ["bench", "--preset", "smoke", "--config", "{b}/old_bench_seed_huge.yaml"],
         "invalid seed=" + HUGE),
    Case("report-bench-arms-list", ["report", "{b}/bench_arms_list"], "arms is not a mapping"),
    Case("report-bench-eval-n-text", ["report", "{b}/bench_eval_n_text"], "config.train.eval_n is 'x', not an integer"),
    Case("report-bench-no-time-to-target", ["report", "{b}/bench_no_headline_ttt"],
         "headline.time_to_target is missing"),
    Case("report-compare-incomplete", ["report", "{b}/bench_no_ticket", "{b}/bench_no_curve"],
         "arms.ticket is missing"),
    Case("report-grid-axes-list", ["report", "{b}/grid_axes_list"], "section 'axes' is not a mapping"),
    Case("report-grid-no-model", ["report", "{b}/grid_no_model"], "has no model.model"),
    Case("report-grid-unknown-axis", ["report", "{b}/grid_unknown_axis"], "unknown field(s) depth"),
    Case("report-grid-binary-table", ["report", "{b}/grid_binary_csv"], "is not a readable ablation table"),
    Case("report-grid-missing-columns", ["report", "{b}/grid_no_columns"], "lacks the column(s) cell, status, arm"),
    Case("report-grid-empty-table", ["report", "{b}/grid_empty_csv"], "is not a readable ablation table"),
]
