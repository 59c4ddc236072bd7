"""Cost per clip as a dataset grows: `index`, `embed`, `train` and a 20-config `sweep` at 1k, 10k and 100k clips.

The clips are tiny real H.264 files (the demo's moving squares, 1 s, 64 x 48 px, 8 fps): a pool of --pool
distinct clips made once, and for each size a class-folder dataset of hard links to them (`<split>/<class>/`,
train/val/test 8/1/1), kept under --root (~/.cache/vidprobe/bench-scale) for the next run. Each stage runs as
its command does (`python -m vidprobe <stage>`, the product's defaults, the `videomae-tiny-random` backbone),
in its own process, timed from start to exit; its peak memory is the peak RSS of its whole process tree
(workers included), sampled every 50 ms, and its CPU time that of every process it waited for.

Per stage and size: seconds, seconds_per_clip, peak_rss_mb, cores_used (CPU seconds / wall seconds). The
summary compares the largest size to the smallest: per_clip_ratio (seconds per clip, largest / smallest: 1.0 is
linear cost, start-up makes small sizes dearer) and rss_ratio (peak memory, largest / smallest), per stage; per_clip_ratio_last_step and rss_ratio_last_step
compare the largest size to the one below it (10k: start-up no longer weighs); index_cores_used says whether
probing uses every core. Last line: one JSON object.

    python benchmarks/scale.py                       # 1000, 10000, 100000 clips (about 40 minutes on 2 cores)
    python benchmarks/scale.py --sizes 200 2000      # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procs import wait_watching  # benchmarks/procs.py, beside this file
from vidprobe.config import load_config
from vidprobe.stages import demo_data

DEFAULT_ROOT = Path.home() / ".cache" / "vidprobe" / "bench-scale"
POOL = ["demo.width=64", "demo.height=48", "demo.seconds=1.0", "demo.fps=8", "demo.audio=false", "demo.seed=1"]
SWEEP_20 = "{head.lr: [0.001, 0.003, 0.01, 0.03, 0.1], head.weight_decay: [0, 0.0001, 0.001, 0.01]}"
STAGES = {
    "index": [],
    "embed": [],
    "train": [],
    "sweep": [f"sweep.grid={SWEEP_20}", "sweep.seeds=[0]"],
}


def pool(root: Path, clips: int) -> list[tuple[str, Path]]:
    """`clips` distinct tiny clips (class, path), made once under `root`."""
    folder = root / f"pool-{clips}"
    if not (folder / "done").is_file():
        per_class = max(1, clips // 4)
        cfg = load_config(None, [*POOL, f"demo.train={per_class}", "demo.val=1", "demo.test=1"])
        demo_data.run(cfg, folder, n_jobs=os.cpu_count() or 1)
        (folder / "done").write_text("")
    return sorted((p.parent.name, p) for p in folder.glob("train/*/*.mp4"))


def dataset(root: Path, size: int, clips: list[tuple[str, Path]]) -> Path:
    """A class-folder dataset of `size` hard links to the pool's clips (symbolic links where the filesystem
    has no hard links), split 8/1/1 by position."""
    folder = root / f"set-{size}-of-{len(clips)}"
    if (folder / "done").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    for i in range(size):
        label, src = clips[i % len(clips)]
        split = "train" if i % 10 < 8 else "val" if i % 10 == 8 else "test"
        dest = folder / split / label / f"c{i:07d}.mp4"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except OSError:
            dest.symlink_to(src)
    (folder / "done").write_text("")
    return folder


def run_stage(stage: str, args: list[str], log: Path) -> dict:
    """`python -m vidprobe <stage> ARGS`: wall seconds, CPU seconds of the processes it waited for, peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vidprobe", stage, *args], stdout=out, stderr=subprocess.STDOUT)
        code, peak = wait_watching(proc)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise SystemExit(f"vidprobe {stage} exited {code}; see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": wall, "cpu_seconds": cpu, "peak_rss_mb": peak}


def measure(size: int, data: Path, work: Path) -> dict:
    cache = work / f"cache-{size}"
    base = [
        "-c",
        "folder",
        f"dataset.root={data}",
        f"paths.cache={cache}",
        "dataset.name=scale",
        "backbone.name=videomae-tiny-random",
    ]
    rows = {}
    for stage, extra in STAGES.items():
        r = run_stage(stage, [*base, *extra], work / f"{stage}-{size}.log")
        r |= {"seconds_per_clip": r["seconds"] / size, "cores_used": r["cpu_seconds"] / r["seconds"]}
        rows[stage] = r
        print(json.dumps({"size": size, "stage": stage, **{k: round(v, 5) for k, v in r.items()}}), flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--pool", type=int, default=400, help="distinct clips the datasets link to")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="where the clips and datasets are kept")
    args = parser.parse_args()

    args.root.mkdir(parents=True, exist_ok=True)
    clips = pool(args.root, args.pool)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sorted(args.sizes):
            results[size] = measure(size, dataset(args.root, size, clips), Path(tmp))
    small, large = min(results), max(results)
    below = max((n for n in results if n < large), default=small)

    def ratios(field: str, a: int, b: int) -> dict:
        return {stage: round(results[a][stage][field] / results[b][stage][field], 3) for stage in STAGES}

    summary = {
        "sizes": sorted(results),
        "cores": os.cpu_count(),
        "pool_clips": len(clips),
        "backbone": "videomae-tiny-random",
        **{
            f"{stage}_seconds_per_clip": {n: round(results[n][stage]["seconds_per_clip"], 6) for n in results}
            for stage in STAGES
        },
        **{
            f"{stage}_peak_rss_mb": {n: round(results[n][stage]["peak_rss_mb"], 1) for n in results} for stage in STAGES
        },
        "per_clip_ratio": ratios("seconds_per_clip", large, small),
        "rss_ratio": ratios("peak_rss_mb", large, small),
        # the largest size against the one below it, where start-up weighs little in either
        "per_clip_ratio_last_step": ratios("seconds_per_clip", large, below),
        "rss_ratio_last_step": ratios("peak_rss_mb", large, below),
        "index_cores_used": round(results[large]["index"]["cores_used"], 2),
        "seconds": {n: round(sum(r["seconds"] for r in results[n].values()), 1) for n in results},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
