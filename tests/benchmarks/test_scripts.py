"""The benchmark scripts run and end with their JSON line (their figures are not checked: no timed tests)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_extract_benchmark_prints_its_figures():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "extract.py"), "--presets", "tiny", "--large", "8",
         "--skip-demo", "--rss", "4", "8"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("clips_per_s", "limit_clips_per_s", "fraction_of_limit", "speedup_vs_sequential",
                "peak_rss_mb_4", "peak_rss_mb_8"):
        assert summary[key] > 0


@pytest.mark.slow
def test_heads_benchmark_prints_its_figures():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "heads.py"), "--samples", "1500", "--dim", "32", "--classes", "8",
         "--skip-backbone"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("speedup_vs_sklearn", "sweep_parallel_speedup", "head_train_samples_per_s"):
        assert summary[key] > 0
    assert -1 <= summary["metric_delta_vs_sklearn"] <= 1
