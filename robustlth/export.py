"""`robustlth export RUN_DIR OUT_DIR`: a trained run as a RobustBench-style folder.

OUT_DIR gets three files:

- `model.pt`: the weights as a plain state dict (tensors only; `torch.load(..., weights_only=True)` opens it) of a
  model that takes float images in [0, 1] and normalises inside;
- `model_info.json`: RobustBench's fields (dataset, threat_model Linf, eps "8/255", architecture, clean_acc,
  autoattack_acc as percentage strings, additional_data false, ...) and under `robustlth` what they rest on: the
  number of test images and which data copy, the evaluation file, training time and device, robustlth's version
  and commit, and the architecture record the loader rebuilds the model from;
- `load.py`: a few lines that rebuild the model through robustlth and load the weights.

The accuracies come from the run's own evaluations: an `eval_*.json` beside the checkpoint (`robustlth eval`,
largest number of images first; `--eval FILE` picks one), else a bench arm's final evaluation. AutoAttack accuracy
is RobustBench's number only when AutoAttack ran alone (`robustlth eval --attacks autoattack --n all`); after other
attacks the per-sample worst case over all of them is given instead, under its own name.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import torch

from .errors import UsageError
from .safety import read_json
from .shared_data import EXACT_SUBSET_NAME

WEIGHTS, INFO, LOADER = "model.pt", "model_info.json", "load.py"

LOADER_TEXT = '''"""Loads the exported robustlth model: `from load import load_model; model = load_model()`.

Needs robustlth (the version and commit in model_info.json). The model takes float images in [0, 1], shape
(N, 3, 32, 32); normalisation is inside it. Weights: a plain state dict (tensors only).
"""
import json
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def load_model(device="cpu"):
    from robustlth.datasets import DatasetSpec
    from robustlth.models import build_model
    arch = json.loads((HERE / "model_info.json").read_text())["robustlth"]["architecture"]
    spec = DatasetSpec.from_dict(arch["data_spec"])
    model = build_model(arch["model"], arch["width"], spec, channels=arch["channels"])
    model.load_state_dict(torch.load(HERE / "model.pt", map_location=device, weights_only=True))
    return model.to(device).eval()


if __name__ == "__main__":
    m = load_model()
    print(f"{type(m).__name__}: {sum(p.numel() for p in m.parameters()):,} parameters")
'''


def eps_text(eps: float) -> str:
    """"8/255" for a budget that is a whole number of 1/255 steps, else the number."""
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{eps:g}"


def _pct(x: Optional[float]) -> Optional[str]:
    return None if x is None else f"{100 * x:.2f}"


def data_copy(source: str) -> str:
    """Which data a source is, in words (for the evaluation's record)."""
    name = Path(source.split(":", 1)[1]).name if ":" in source else source
    if name == EXACT_SUBSET_NAME:
        return "exact CIFAR-10 subset (bit-exact official pixels; test images = the first 1,017 of the test batch)"
    if source.startswith("cifar10-jpeg:"):
        return ("CIFAR-10 JPEG re-encoded copy (pixels differ from the official ones: robust accuracy is not "
                "comparable with published numbers)")
    if source == "cifar10":
        return "official CIFAR-10 (torchvision download)"
    if source == "synthetic":
        return "synthetic images (a test: not CIFAR-10)"
    return source


def _evaluations(ckpt: Path) -> list[tuple[Path, dict]]:
    out = []
    for f in sorted(ckpt.parent.glob("eval_*.json")):
        try:
            r = read_json(f, "evaluation")
        except Exception:  # a damaged or foreign file beside the checkpoint: not an evaluation to report
            continue
        if isinstance(r, dict) and isinstance(r.get("n"), int) and isinstance(r.get("attacks"), list):
            out.append((f, r))
    return out


def _accuracies(result: dict) -> dict:
    """clean / autoattack (alone) / worst case over all attacks, with what each covers."""
    attacks = [a.get("name") for a in result.get("attacks", [])]
    out = {"n_test_images": result["n"], "clean": result.get("clean"), "attacks": attacks, "autoattack": None,
           "autoattack_n": None, "worst_case": result.get("worst_case"), "worst_case_n": result["n"]}
    for a in result.get("attacks", []):
        if a.get("name") == "autoattack" and a.get("accuracy") is not None and \
                (attacks == ["autoattack"] or result.get("independent")):
            out["autoattack"], out["autoattack_n"] = a["accuracy"], a.get("n", result["n"])
    for k, v in result.items():  # a limited AutoAttack (bench arms): the worst case on the images it covered
        if k.startswith("worst_case_first_"):
            out["worst_case"], out["worst_case_n"] = v, int(k[len("worst_case_first_"):])
    return out


def _pick_evaluation(ckpt: Path, eval_file: Optional[Path]) -> tuple[Optional[str], Optional[dict]]:
    if eval_file is not None:
        r = read_json(eval_file, "evaluation")
        if not (isinstance(r, dict) and isinstance(r.get("n"), int) and isinstance(r.get("attacks"), list)):
            raise UsageError(f"--eval {eval_file} is not an evaluation written by robustlth eval")
        return str(eval_file), r
    evals = _evaluations(ckpt)
    if evals:  # AutoAttack alone first, then most images
        f, r = max(evals, key=lambda fr: ([a.get("name") for a in fr[1]["attacks"]] == ["autoattack"], fr[1]["n"],
                                          fr[0].stat().st_mtime))
        return str(f), r
    res = ckpt.parent / "result.json"
    if res.is_file():
        r = read_json(res, "result")
        final = r.get("final") if isinstance(r, dict) else None
        if isinstance(final, dict) and isinstance(final.get("n"), int) and isinstance(final.get("attacks"), list):
            return f"{res} (final evaluation)", final
    return None, None


def _training(ckpt: Path) -> dict:
    out = {"time_s": None, "device": None, "device_name": None}
    res, env = ckpt.parent / "result.json", ckpt.parent / "env.json"
    if res.is_file():
        r = read_json(res, "result")
        if isinstance(r, dict):
            t = r.get("total_time", r.get("train_time"))
            out["time_s"] = round(float(t), 1) if isinstance(t, (int, float)) else None
            if isinstance(r.get("search_time"), (int, float)):
                out["search_time_s"] = round(float(r["search_time"]), 1)
    if env.is_file():
        e = read_json(env, "environment record")
        if isinstance(e, dict):
            out.update(device=e.get("device"), device_name=e.get("device_name"), torch=e.get("torch"),
                       world_size=e.get("world_size"))
    return out


def export_run(run_dir: Path, out_dir: Path, *, eval_file: Optional[Path] = None, trust_factory=None,
               log=None) -> dict:
    """Write OUT_DIR/{model.pt, model_info.json, load.py} for the run's checkpoint; returns model_info."""
    from .runs import atomic_torch_save, atomic_write_json, atomic_write_text, source_tree
    from .saved_model import checkpoint_file, open_checkpoint
    from .version import __version__
    ckpt = checkpoint_file(Path(run_dir))
    saved = open_checkpoint(ckpt, torch.device("cpu"), trust_factory=trust_factory)
    spec, channels = saved.spec, saved.channels
    state = {k: v.detach().cpu().clone() for k, v in saved.model.state_dict().items()}
    if not all(isinstance(v, torch.Tensor) for v in state.values()):  # pragma: no cover - models hold tensors only
        raise UsageError(f"{ckpt}: its model's state holds more than tensors; it cannot be exported")

    where, result = _pick_evaluation(ckpt, eval_file)
    acc = _accuracies(result) if result else None
    eps = float(result.get("eps", 8 / 255)) if result else 8 / 255
    data_src = (saved.data.test_data or saved.data.data) if saved.data is not None else None  # what it was tested on
    tree = source_tree()
    info = {
        "name": f"robustlth {saved.kind or 'run'}: {saved.model_name} (width {saved.width:g})"
                + (f", sparsity {saved.sparsity:.2f}" if saved.sparsity is not None else ""),
        "dataset": spec.name,
        "threat_model": "Linf",
        "eps": eps_text(eps),
        "architecture": f"{saved.model_name} (width {saved.width:g})",
        "additional_data": False,
        "number_forward_passes": 1,
        "clean_acc": _pct(acc["clean"]) if acc else None,
        "autoattack_acc": _pct(acc["autoattack"]) if acc else None,
        "unreliable": False,
        "footnote": None,
        "robustlth": {
            "version": __version__,
            "commit": tree["robustlth_commit"],
            "dirty": tree["robustlth_dirty"],
            "checkpoint": str(ckpt.resolve()),
            "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "architecture": {"model": saved.model_name, "width": saved.width, "channels": channels,
                             "data_spec": spec.to_dict()},
            "inputs": "float images in [0, 1], (N, 3, 32, 32); normalisation (mean/std of data_spec) inside the model",
            "sparsity": saved.sparsity,
            "evaluation": None if acc is None else {
                "file": where, "data": data_src, "data_copy": data_copy(data_src) if data_src else None,
                "n_test_images": acc["n_test_images"], "clean": acc["clean"], "attacks": acc["attacks"],
                "autoattack": acc["autoattack"], "autoattack_n": acc["autoattack_n"],
                "worst_case_all_attacks": acc["worst_case"], "worst_case_n": acc["worst_case_n"]},
            "training": {**_training(ckpt), "kind": saved.kind or None},
        },
    }
    notes = []
    if acc is None:
        notes.append("no evaluation found beside the checkpoint: run `robustlth eval --checkpoint RUN --attacks "
                     "autoattack --n all`, then export again")
    elif acc["autoattack"] is None:
        notes.append(f"autoattack_acc is empty: AutoAttack did not run alone here ({', '.join(acc['attacks'])}); "
                     "robustlth.evaluation.worst_case_all_attacks is the per-sample worst case over them all (at most "
                     "AutoAttack's accuracy). For RobustBench's number run `robustlth eval --checkpoint RUN --attacks "
                     "autoattack --n all`, then export again")
    if acc is not None and (data_src != "cifar10" or acc["n_test_images"] < 10_000):
        what = data_copy(data_src) if data_src else "unknown data"
        notes.append(f"evaluated on {acc['n_test_images']} images of {what}, not on the full official CIFAR-10 "
                     "test set (10,000 images): not a leaderboard number")
    info["footnote"] = "; ".join(notes) or None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(out_dir / WEIGHTS, state)
    atomic_write_json(out_dir / INFO, info)
    atomic_write_text(out_dir / LOADER, LOADER_TEXT)
    if log:
        log(f"exported {ckpt} to {out_dir}: {WEIGHTS} ({len(state)} tensors), {INFO}, {LOADER}")
        for n in notes:
            log(f"note: {n}")
    return info
