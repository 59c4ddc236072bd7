"""`vidprobe kinetics VIDEO...`: the top Kinetics-400 classes of each video by DeepMind's I3D (real weights,
offline)."""

from __future__ import annotations

from vidprobe.config import ConfigError, RunFailed
from vidprobe.features.i3d import kinetics_top5
from vidprobe.features.video import VideoError


def run(videos: list[str], k: int = 5, frames: int = 64, size: int = 224) -> None:
    for path in videos:
        try:
            top = kinetics_top5(path, k, frames, size)
        except FileNotFoundError as err:
            raise ConfigError(str(err)) from None
        except VideoError as err:
            raise RunFailed(str(err)) from None
        print(path)
        for label, p in top:
            print(f"  {p:6.3f}  {label}")
