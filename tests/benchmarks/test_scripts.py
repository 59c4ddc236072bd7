"""The benchmark scripts run and end with their JSON line (their figures are not checked: no timed tests)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def last_json(*command: str, **run) -> dict:
    """`command` run from the repository root; the JSON object its last line prints."""
    out = subprocess.run(list(command), capture_output=True, text=True, check=True, cwd=ROOT, **run)
    return json.loads(out.stdout.strip().splitlines()[-1])


def benchmark(name: str, *args: str) -> dict:
    """benchmarks/<name>.py with `args`: its figures (last line)."""
    return last_json(sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args)


@pytest.mark.slow
def test_extract_benchmark_prints_its_figures(tmp_path):
    summary = benchmark(  # --runs 2: every measurement is the median of two
        "extract",
        "--presets",
        "tiny",
        "--large",
        "8",
        "--skip-demo",
        "--rss",
        "4",
        "8",
        "--real",
        "240",
        "--real-repeat",
        "1",
        "--corpus",
        str(tmp_path),
        "--runs",
        "2",
        "--min-seconds",
        "0",
    )
    for key in (
        "clips_per_s",
        "limit_clips_per_s",
        "fraction_of_limit",
        "fraction_of_min_limit",
        "speedup_vs_sequential",
        "peak_rss_mb_4",
        "peak_rss_mb_8",
    ):
        assert summary[key] > 0
    assert set(summary["configs"]) == {"tiny@large", "tiny@240p"}  # the real clips, re-encoded at 240 px
    assert summary["limit"].startswith("cores / (decode CPU-s") and set(summary["pipeline_s"]) == set(
        summary["configs"]
    )
    assert set(summary["in_workers_speedup"]) == set(summary["configs"])  # the CPU lever, against its baseline
    assert all(rate > 0 for rates in summary["decoders"].values() for rate in rates.values())
    assert set(summary["decoders"]["tiny@240p"]) == {"decord", "pyav"}
    assert len(list(tmp_path.glob("*/240p/*/*/*.mp4"))) == 6


@pytest.mark.slow
def test_backbones_benchmark_measures_every_family_of_the_registry():
    from vidprobe.features.backbones import BACKBONES

    summary = benchmark("backbones", "--tiny", "--seconds", "0")
    real = {name for name in BACKBONES if name != "auto" and not name.endswith("-tiny-random")}
    assert set(summary["families"]) == real  # a family added to the registry needs its native input here
    for family, figures in summary["families"].items():
        assert figures["clips_per_s"] > 0 and figures["peak_mb"] > 0 and figures["vs_videomae"] > 0, (family, figures)


@pytest.mark.slow
def test_heads_benchmark_prints_its_figures():
    summary = benchmark(
        "heads",
        "--samples",
        "1500",
        "--dim",
        "32",
        "--classes",
        "8",
        "--skip-backbone",
        "--sweep-samples",
        "400",
        "--sweep-baseline-configs",
        "2",
        "--stream-rows",
        "20000",
        "--stream-check-rows",
        "4000",
        "--stream-memory-mb",
        "1",
    )
    for key in (
        "speedup_vs_sklearn",
        "sweep_parallel_speedup",
        "head_train_samples_per_s",
        "sweep_100_s",
        "sweep_100_tuned_s",
        "sweep_100_reference_s",
        "stream_peak_rss_mb",
        "stream_train_s",
    ):
        assert summary[key] > 0
    assert -1 <= summary["metric_delta_vs_sklearn"] <= 1
    assert summary["sweep_100_best_delta"] == pytest.approx(
        summary["sweep_100_reference_best"] - summary["sweep_100_best"], abs=2e-4
    )
    assert summary["stream_rows"] == 20000 and summary["sweep_100_configs"] == 100
    assert 0 <= summary["stream_metric_delta"] <= 1


@pytest.mark.slow
def test_finetune_benchmark_prints_its_figures():
    summary = benchmark("finetune", "--preset", "tiny", "--batch-sizes", "2", "--steps", "2")
    assert summary["speedup_last2_vs_all"] > 0
    assert all(row["clips_per_s"] > 0 and row["peak_mem_mb"] > 0 for row in summary["rows"])


@pytest.mark.slow
def test_transcribe_benchmark_prints_its_figures():
    summary = benchmark("transcribe", "--skip-int8", "--short-runs", "1")
    for key in ("rtf_openai_whisper", "rtf_faster_whisper", "speedup", "audio_seconds"):
        assert summary[key] > 0
    assert 0 <= summary["short_clip_wer_one_at_a_time"] <= 1 and 0 <= summary["short_clip_wer_packed"] <= 1
    assert summary["short_clip_words_misattributed"] >= 0


def test_misattributed_words_are_counted_against_the_clip_that_spoke_them(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from transcribe import misattributed

    spoken = ["the cat sat", "on the mat", "today"]
    assert misattributed(spoken, ["the cat sat", "on the mat", "today"]) == 0
    assert misattributed(spoken, ["the dog sat", "on a mat", "today"]) == 0  # wrong words, right clips
    assert misattributed(spoken, ["the cat", "sat on the mat", "today"]) == 1  # "sat" moved to the next clip
    assert misattributed(spoken, ["the cat sat on", "the mat today", ""]) == 2
    assert misattributed(spoken, ["", "", "the cat sat on the mat today"]) == 6


@pytest.mark.slow
def test_gpu_script_runs_every_benchmark_and_prints_one_json_line(tmp_path):
    """benchmarks/gpu.sh in its smoke mode (tiny sizes on the CPU): the script itself, not GPU figures."""
    env = {**os.environ, "GPU_SMOKE": "1", "PYTHON": sys.executable, "OUT": str(tmp_path)}
    summary = last_json("bash", str(ROOT / "benchmarks" / "gpu.sh"), env=env)
    assert summary["device"] == "cpu" and summary["logs"] == str(tmp_path)
    for name in ("extract", "backbones", "heads", "finetune", "probes"):
        assert "error" not in summary[name], (name, summary[name])
    assert summary["extract"]["fraction_of_limit"] > 0 and summary["backbones"]["families"]


@pytest.mark.slow
def test_probes_benchmark_prints_its_figures():
    summary = benchmark(
        "probes", "--clips", "40", "--epochs", "1", "--preset", "tiny", "--grid", "2", "2", "2", "--workers", "1"
    )
    for key in (
        "cached_epoch_s",
        "encoder_fed_epoch_s",
        "speedup",
        "embed_s",
        "bytes_per_clip",
        "k400_epochs_per_hour_cached",
        "k400_epochs_per_hour_encoder_fed",
    ):
        assert summary[key] > 0, key
    assert abs(summary["acc_delta"]) <= 1 and set(summary["test_acc_defaults"]) == {
        "linear",
        "attentive",
        "attentive_batch_32",
    }


@pytest.mark.slow
def test_scale_benchmark_times_every_stage_at_every_size(tmp_path):
    summary = benchmark("scale", "--sizes", "20", "40", "--pool", "8", "--root", str(tmp_path))
    stages = {"index", "embed", "train", "sweep"}
    assert summary["sizes"] == [20, 40] and set(summary["per_clip_ratio"]) == stages == set(summary["rss_ratio"])
    assert summary["per_clip_ratio_last_step"] == summary["per_clip_ratio"]  # two sizes: the last step is all
    for stage in stages:
        per_clip, rss = summary[f"{stage}_seconds_per_clip"], summary[f"{stage}_peak_rss_mb"]
        assert set(per_clip) == set(rss) == {"20", "40"} and min(per_clip.values()) > 0 and min(rss.values()) > 50
    assert summary["index_cores_used"] > 0
    assert len(list((tmp_path / "set-40-of-8").rglob("*.mp4"))) == 40  # the dataset is kept for the next run
