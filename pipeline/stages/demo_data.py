"""`vidprobe demo-data OUT_DIR`: a small, deterministic class-folder dataset made by code.

Four classes differ only in the direction a textured square moves over a textured background
(left, right, up, down), so one frame is not enough to tell them apart; colour, speed, brightness
and start position are drawn at random for every clip. Each clip carries a spoken sentence
(espeak-ng) and `metadata.csv` gives two numeric traits read off what is visible: `speed`
(pixels per second) and `brightness` (mean background intensity, 0-1).
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm
from vidprobe.config import Config, ConfigError, DemoConfig
from vidprobe.features.tools import ffmpeg_exe

CLASSES = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
SPLITS = ("train", "val", "test")
OBJECT_SIZE = 20


@dataclass(frozen=True)
class Clip:
    path: str  # relative to the dataset root
    split: str
    label: str
    colour: str
    speed: float
    brightness: float
    start_x: int
    start_y: int
    texture_seed: int
    sentence: str


def plan_clips(cfg: DemoConfig) -> list[Clip]:
    """Every clip's parameters, drawn from one seeded generator in a fixed order."""
    rng = np.random.default_rng(cfg.seed)
    clips = []
    for split in SPLITS:
        for label in CLASSES:
            for i in range(getattr(cfg, split)):
                colour = str(rng.choice(list(COLOURS)))
                clips.append(
                    Clip(
                        path=f"{split}/{label}/{label}_{i:03d}.mp4",
                        split=split,
                        label=label,
                        colour=colour,
                        speed=round(float(rng.uniform(15.0, 60.0)), 2),
                        brightness=round(float(rng.uniform(0.25, 0.75)), 3),
                        start_x=int(rng.integers(0, cfg.width)),
                        start_y=int(rng.integers(0, cfg.height)),
                        texture_seed=int(rng.integers(0, 2**31)),
                        sentence=f"Clip {NUMBERS[i % len(NUMBERS)]}. The {colour} square moves {label}.",
                    )
                )
    return clips


def render_frames(clip: Clip, cfg: DemoConfig) -> np.ndarray:
    """(T, H, W, 3) uint8 frames: a textured square wrapping around a static textured background."""
    rng = np.random.default_rng(clip.texture_seed)
    h, w = cfg.height, cfg.width
    noise = rng.random((h // 4 + 1, w // 4 + 1))
    texture = np.kron(noise, np.ones((4, 4)))[:h, :w]  # blocky texture, so motion is visible
    background = np.clip(clip.brightness + 0.35 * (texture - 0.5), 0, 1) * 255
    background = np.repeat(background[:, :, None], 3, axis=2).astype(np.uint8)
    stripes = (np.indices((OBJECT_SIZE, OBJECT_SIZE)).sum(0) // 4) % 2  # diagonal stripes
    sprite = np.array(COLOURS[clip.colour], dtype=np.float32) * (0.6 + 0.4 * stripes[:, :, None])
    dx, dy = CLASSES[clip.label]
    n = int(round(cfg.seconds * cfg.fps))
    frames = np.empty((n, h, w, 3), dtype=np.uint8)
    rows, cols = np.arange(OBJECT_SIZE), np.arange(OBJECT_SIZE)
    for t in range(n):
        shift = clip.speed * t / cfg.fps
        x0 = int(round(clip.start_x + dx * shift)) % w
        y0 = int(round(clip.start_y + dy * shift)) % h
        frame = background.copy()
        frame[np.ix_((y0 + rows) % h, (x0 + cols) % w)] = sprite.astype(np.uint8)
        frames[t] = frame
    return frames


def speak(sentence: str, wav: Path) -> None:
    subprocess.run(["espeak-ng", "-s", "160", "-w", str(wav), sentence], check=True, capture_output=True)


def encode(frames: np.ndarray, out: Path, fps: float, wav: Path | None = None, **options) -> None:
    """(T, H, W, 3) uint8 RGB frames as an H.264 file (libx264, yuv420p unless `options` say otherwise; ffmpeg
    output options as keywords, e.g. crf=12), with `wav` as AAC speech padded to the video when given."""
    video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{frames.shape[2]}x{frames.shape[1]}", r=fps)
    options = {"vcodec": "libx264", "pix_fmt": "yuv420p", **options}
    if wav is None:
        stream = ffmpeg.output(video, str(out), **options)
    else:
        audio = ffmpeg.input(str(wav)).audio.filter("apad")
        stream = ffmpeg.output(video, audio, str(out), acodec="aac", ar=16000, ac=1, **options)
    try:
        stream.overwrite_output().run(cmd=ffmpeg_exe(), input=frames.tobytes(), quiet=True)
    except ffmpeg.Error as err:
        raise RuntimeError(f"ffmpeg failed on {out}: {err.stderr.decode(errors='replace')[-500:]}") from None


def write_clip(clip: Clip, cfg: DemoConfig, root: Path) -> None:
    """Encode one clip with ffmpeg (H.264, plus AAC speech when cfg.audio), bit-exact from run to run."""
    out = root / clip.path
    out.parent.mkdir(parents=True, exist_ok=True)
    frames = render_frames(clip, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav" if cfg.audio else None
        if wav:
            speak(clip.sentence, wav)
        encode(frames, out, cfg.fps, wav, t=cfg.seconds, threads=1, fflags="+bitexact")


def check_tools(cfg: DemoConfig) -> DemoConfig:
    """ffmpeg is needed (the system's or imageio-ffmpeg's); without espeak-ng the clips get no speech, said aloud."""
    ffmpeg_exe()
    if cfg.audio and not shutil.which("espeak-ng"):
        print(
            "warning: espeak-ng is not installed: the demo's clips get no spoken sentence, so the fused run has no "
            "speech to transcribe; install it (apt-get install espeak-ng, as `make setup` does with root), or set "
            "demo.audio=false to say you mean it"
        )
        return dataclasses.replace(cfg, audio=False)
    return cfg


def write_metadata(clips: list[Clip], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "split", "label", "speed", "brightness", "colour", "text"])
        for c in clips:
            writer.writerow([c.path, c.split, c.label, c.speed, c.brightness, c.colour, c.sentence])


ATTRIBUTES = ["left", "right", "up", "down", *COLOURS, "fast", "very fast", "dark", "bright"]


def attributes(c: Clip) -> list[str]:
    """What is visible in a clip as several labels, a few of them rare: direction, colour, and the speed
    and brightness extremes (a small long tail for the multi-label recipes)."""
    names = [c.label, c.colour]
    names += ["fast"] if c.speed > 50 else []
    names += ["very fast"] if c.speed > 58 else []
    names += ["dark"] if c.brightness < 0.3 else ["bright"] if c.brightness > 0.73 else []
    return names


def write_multilabel(clips: list[Clip], root: Path) -> None:
    """multilabel.csv (video_id, labels joined by ',', split) and classes.txt, in the multilabel adapter's layout."""
    with (root / "multilabel.csv").open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["video_id", "labels", "split"])
        for c in clips:
            writer.writerow([c.path.removesuffix(".mp4"), ",".join(attributes(c)), c.split])
    (root / "classes.txt").write_text("\n".join(ATTRIBUTES) + "\n")


def run(cfg: Config, out_dir: str | Path, n_jobs: int = 2) -> Path:
    """Write the demo dataset into `out_dir` (replacing a previous demo there)."""
    demo = check_tools(cfg.demo)
    if min(demo.train, demo.val, demo.test) < 1 or demo.seconds <= 0 or demo.fps < 1:
        raise ConfigError("demo: train/val/test need at least 1 clip per class, seconds and fps must be > 0")
    root = Path(out_dir).resolve()  # worker processes may run elsewhere (a pool started in another folder)
    for split in SPLITS:  # a rerun with fewer clips must not leave old ones behind
        shutil.rmtree(root / split, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    clips = plan_clips(demo)
    Parallel(n_jobs=n_jobs)(delayed(write_clip)(c, demo, root) for c in tqdm(clips, desc="demo clips", unit="clip"))
    write_metadata(clips, root / "metadata.csv")
    write_multilabel(clips, root)
    print(f"wrote {len(clips)} clips ({len(CLASSES)} classes), metadata.csv and multilabel.csv to {out_dir}")
    return root
