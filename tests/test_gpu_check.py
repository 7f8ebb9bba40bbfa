"""The GPU check script's CPU dry run, so the script cannot rot between GPU sessions."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # about a minute on 2 CPU cores: run with -m slow before a GPU session
def test_gpu_check_dry_run_on_cpu(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    row, = report["throughput"]
    assert row["robustlth_pgd10_eager"] > 0 and row["plain_bf16_pgd10"] > 0 and row["authors_fp32_pgd10"] > 0
    assert row["robustlth_pgd10_graphs"] is None and "CUDA" in row["errors"]["robustlth_pgd10_graphs"]
    assert report["tests"]["returncode"] == 0 and "skipped" in report["tests"]["summary"]  # no CUDA here
    assert set(report["bench"]["arms"]) == {"dense", "ticket"}
    assert (tmp_path / "throughput.md").read_text().count("cnn6, 8") == 1
