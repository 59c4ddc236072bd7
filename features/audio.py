"""Audio out of videos with ffmpeg: 16 kHz mono float32, the input every speech model here takes.

A sample's `[start, end]` is cut by ffmpeg itself (seek before decoding). Cached copies are FLAC
(lossless, about half the size of 16-bit PCM), written atomically so a killed run leaves none half made.
"""

from __future__ import annotations

from pathlib import Path

import ffmpeg
import numpy as np
from vidprobe.features.errors import DiskFull
from vidprobe.features.files import atomic_path
from vidprobe.features.tools import ffmpeg_exe

SAMPLE_RATE = 16000


class AudioError(Exception):
    """Audio that cannot be read; the message names the file and what ffmpeg said."""


def _segment(start: float | None, end: float | None) -> dict:
    args = {}
    if start:
        args["ss"] = float(start)
    if end is not None:
        args["t"] = max(0.0, float(end) - float(start or 0.0))
    return args


def _run(stream, path: str | Path) -> bytes:
    try:
        out, _ = stream.run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True, quiet=True)
    except ffmpeg.Error as err:
        tail = (err.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        if any("No space left on device" in line for line in tail):  # not the file's fault: the run stops
            raise DiskFull(
                f"disk full writing the audio of {path}: free space and re-run (cut files are kept)"
            ) from None
        raise AudioError(f"{path}: ffmpeg could not read its audio: {' | '.join(tail) or err}") from None
    except FileNotFoundError:
        raise AudioError(
            f"ffmpeg could not be run ({ffmpeg_exe()}): pip install imageio-ffmpeg, or apt-get install ffmpeg"
        ) from None
    return out


def load_audio(path: str | Path, start: float | None = None, end: float | None = None) -> np.ndarray:
    """(samples,) float32 in [-1, 1] at 16 kHz mono, of `[start, end]` seconds (the whole file when unset),
    streamed through a pipe. A video or FLAC file both work."""
    stream = ffmpeg.input(str(path), **_segment(start, end)).output(
        "pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=SAMPLE_RATE
    )
    return np.frombuffer(_run(stream, path), dtype=np.float32).copy()


def write_flac(video: str | Path, out: str | Path, start: float | None = None, end: float | None = None) -> Path:
    """The segment's audio as 16 kHz mono FLAC at `out` (written whole or not at all)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        stream = ffmpeg.input(str(video), **_segment(start, end)).output(
            str(tmp), format="flac", acodec="flac", ac=1, ar=SAMPLE_RATE, sample_fmt="s16"
        )
        _run(stream.overwrite_output(), video)
    return out
