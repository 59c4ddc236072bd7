"""Attentive probes on cached token grids against V-JEPA's protocol (the frozen encoder run again every epoch).

On clips whose class is the quadrant a moving square is in (made once, kept in ~/.cache/vidprobe/bench-probes),
through a random-weight VideoMAE preset (the cost of the real architecture, no download):

  cached           `vidprobe embed` once with backbone.token_grid (timed: embed_s), then every epoch an
                   attentive probe (heads.models.AttentiveProbe) over the stored tokens: train pass + val pass
  encoder_fed      every epoch each clip decoded and through the frozen encoder again (the embed pipeline's own
                   DataLoader: workers that decode and embed, the same sampling and token grid), then the same
                   probe step: V-JEPA's evaluation loop. Same clips, same probe init, same minibatch order
  speedup          encoder_fed_epoch_s / cached_epoch_s; acc_delta: final validation accuracy, cached minus
                   encoder-fed (the tokens are the same up to float rounding, so the training is too)
  linear / attentive  `vidprobe train` with the product's defaults: a linear head on video/pooled, the attentive
                   head on video/tokens (and, beside it, the attentive head with head.batch_size=32)
  peak_rss_mb      of each mode, each in a process of its own (its main process: VmHWM, workers not counted)
  k400             bytes per clip of this token set and of VideoMAE-B's (768-d, grid 8x7x7, float16) x 240,000
                   clips, and epochs per hour of each mode at Kinetics-400's size on this machine

Last line: one JSON object.   python benchmarks/probes.py [--clips 600 --epochs 4 --preset small --grid 4 4 4]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the vidprobe CLI sets it, before torch loads
sys.path.insert(0, str(Path(__file__).resolve().parent))

from extract import PRESETS, save_preset  # noqa: E402
from vidprobe.stages.demo_data import encode  # noqa: E402

QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
K400_CLIPS = 240_000


def make_clips(root: Path, per_class: int, side: int, frames: int = 16) -> Path:
    """A red square moving right a pixel a frame, anywhere in one quadrant, over grey noise: (train, val, test)."""
    rng, square = np.random.default_rng(0), side // 5
    splits = {"train": per_class, "val": max(8, per_class // 4), "test": max(8, per_class // 4)}
    for split, n in splits.items():
        for q, name in enumerate(QUADRANTS):
            for i in range(n):
                path = root / split / name / f"{name}_{i:04d}.mp4"
                clip = np.clip(110 + rng.normal(0, 12, (frames, side, side, 3)), 0, 255).astype(np.uint8)
                half = side // 2
                x0 = int(rng.integers(0, half - square - frames)) + half * (q % 2)
                y0 = int(rng.integers(0, half - square)) + half * (q // 2)
                if path.is_file():  # made by an earlier run (drawn all the same: the next clips stay the same)
                    continue
                for t in range(frames):
                    clip[t, y0 : y0 + square, x0 + t : x0 + t + square] = (230, 60, 60)
                path.parent.mkdir(parents=True, exist_ok=True)
                encode(clip, path.with_suffix(".part.mp4"), 8, crf=12)  # whole or not at all: a killed run
                path.with_suffix(".part.mp4").rename(path)
    return root


def dataset(args) -> Path:
    recipe = json.dumps({"per_class": args.clips // 4, "side": PRESETS[args.preset]["image_size"], "v": 1})
    root = Path("~/.cache/vidprobe/bench-probes").expanduser() / hashlib.sha256(recipe.encode()).hexdigest()[:12]
    return make_clips(root, args.clips // 4, PRESETS[args.preset]["image_size"])


def config(args, data: Path, cache: Path, model: Path, *extra: str):
    from vidprobe.config import load_config

    grid = "[" + ",".join(map(str, args.grid)) + "]"
    return load_config(
        None,
        [
            f"dataset.root={data}",
            f"paths.cache={cache}",
            "dataset.name=probes",
            "backbone.name=videomae",
            f"backbone.model={model}",
            f"backbone.token_grid={grid}",
            f"backbone.device={args.device}",
            f"embed.num_workers={args.workers}",
            "embed.storage_dtype=float32",
            "task.traits=[]",
            *extra,
        ],
    )


def probe(dim: int, seed: int, device: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    from vidprobe.heads.models import AttentiveProbe, attention_heads

    torch.manual_seed(seed)
    net = AttentiveProbe(dim, len(QUADRANTS), heads=attention_heads(dim, None)).to(device)
    return net, torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.01)


def orders(n: int, epochs: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(n, generator=g) for _ in range(epochs)]


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_cached(args, cfg) -> dict:
    """Every epoch: the probe over the stored tokens (train pass, then the val pass)."""
    import vidprobe

    tr, va = (vidprobe.table(cfg, "video/tokens", split=s) for s in ("train", "val"))
    x, xv = (torch.from_numpy(np.stack(t["video/tokens"]).astype(np.float32)).to(args.device) for t in (tr, va))
    y, yv = (torch.tensor([QUADRANTS.index(c) for c in t.label], device=args.device) for t in (tr, va))
    net, opt = probe(x.shape[-1], args.seed, args.device)
    times, acc = [], 0.0
    for order in orders(len(x), args.epochs, args.seed):
        start = time.perf_counter()
        net.train()
        for idx in order.to(args.device).split(args.batch_size):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            acc = float((net(xv).argmax(1) == yv).float().mean())
        synchronize(args.device)
        times.append(time.perf_counter() - start)
    return {"epoch_s": float(np.median(times)), "acc": acc, "train_clips": len(x), "val_clips": len(xv)}


def run_encoder_fed(args, cfg) -> dict:
    """Every epoch: each clip decoded and through the frozen encoder (the embed stage's DataLoader, workers that
    decode and embed), its tokens straight into the probe step; then the val clips, likewise."""
    from torch.utils.data import DataLoader
    from vidprobe.artifacts import clip_items, read_manifest
    from vidprobe.features.backbones import build_backbone
    from vidprobe.features.clips import ClipDataset, clip_shape, collate, worker_init
    from vidprobe.features.devices import resolve_device
    from vidprobe.features.embedding import Embedder, WorkerEmbedder

    items = {it.sample_id: it for it in clip_items(cfg)[0]}
    manifest = read_manifest(cfg).set_index("sample_id")
    split = {s: [i for i in sorted(items) if manifest.loc[i, "split"] == s] for s in ("train", "val")}
    label = {i: QUADRANTS.index(manifest.loc[i, "label"]) for i in items}
    bb = build_backbone(cfg.backbone)
    frames, size = clip_shape(cfg.sampling, bb)
    device = resolve_device(cfg.backbone.device)
    bb.model.to(device)
    embedder = Embedder(bb, device, None, cfg.embed.batch_size, "float32")
    workers = cfg.embed.num_workers
    # workers embed what they decode on a CPU, as in `embed`, where each runs one thread: from the second epoch
    # on this process holds OpenMP's pool, and a forked worker running more threads would hang on it
    in_workers = device.type == "cpu" and workers > 0 and torch.get_num_threads() // workers <= 1
    threads = 1

    def batches(ids: list[str], order: list[int]):
        loader = DataLoader(
            ClipDataset([items[i] for i in ids], cfg.sampling, frames, size),
            batch_size=args.batch_size,
            sampler=order,
            num_workers=workers,
            collate_fn=WorkerEmbedder(embedder) if in_workers else collate,
            worker_init_fn=partial(worker_init, threads=threads) if workers else None,
        )
        for batch in loader:
            feats = batch["features"] if in_workers else embedder(batch)
            tokens = torch.from_numpy(np.stack([f["video/tokens"][0, 0] for f in feats]))
            yield tokens.float().to(device), torch.tensor([label[s["id"]] for s in batch["samples"]], device=device)

    net, opt = probe(bb.model.config.hidden_size, args.seed, args.device)
    times, acc = [], 0.0
    for order in orders(len(split["train"]), args.epochs, args.seed):
        start = time.perf_counter()
        net.train()
        for x, y in batches(split["train"], order.tolist()):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        net.eval()
        right = 0
        with torch.no_grad():
            for x, y in batches(split["val"], list(range(len(split["val"])))):
                right += int((net(x).argmax(1) == y).sum())
        acc = right / len(split["val"])
        synchronize(args.device)
        times.append(time.perf_counter() - start)
    return {"epoch_s": float(np.median(times)), "acc": acc}


def heads_with_defaults(cfg) -> dict:
    """`vidprobe train` as a user runs it: test accuracy of a linear head on video/pooled and of the attentive
    head on video/tokens with the defaults, and of the attentive head with head.batch_size=32."""
    import io
    from contextlib import redirect_stdout

    import vidprobe

    out = {}
    for name, head in {
        "linear": {"name": "linear"},
        "attentive": {"name": "attentive", "features": "video/tokens"},
        "attentive_batch_32": {"name": "attentive", "features": "video/tokens", "batch_size": 32},
    }.items():
        with redirect_stdout(io.StringIO()):
            vidprobe.train(cfg, head=head, run={"name": name})
            out[name] = vidprobe.evaluate(cfg, head=head, run={"name": name})["acc"]
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM, which starts afresh at exec; ru_maxrss would carry the
    parent's peak over the fork), workers not counted."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(args) -> None:
    """One mode in this process (its peak RSS its own)."""
    data, cache, model = Path(args.data), Path(args.cache), Path(args.model)
    cfg = config(args, data, cache, model)
    result = run_cached(args, cfg) if args.one == "cached" else run_encoder_fed(args, cfg)
    result["peak_rss_mb"] = peak_rss_mb()
    if args.device.startswith("cuda"):
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=600, help="training clips (4 quadrants; val and test a quarter each)")
    ap.add_argument("--epochs", type=int, default=4, help="probe epochs in each mode (equal, to compare accuracy)")
    ap.add_argument("--preset", default="small", choices=["tiny", "small"])
    ap.add_argument("--grid", type=int, nargs=3, default=[4, 4, 4], metavar=("T", "H", "W"))
    ap.add_argument("--batch-size", type=int, default=32, help="probe minibatch")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one", choices=["cached", "encoder_fed"], help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return child(args)

    import vidprobe
    from vidprobe.features.store import FeatureSet

    data = dataset(args)
    with tempfile.TemporaryDirectory() as tmp:
        model, cache = save_preset(args.preset, Path(tmp)), Path(tmp) / "cache"
        cfg = config(args, data, cache, model)
        vidprobe.index(cfg)
        start = time.perf_counter()
        fs = vidprobe.embed(cfg)
        embed_s = time.perf_counter() - start
        row_bytes = FeatureSet(fs.dir).row_bytes()["video/tokens"]
        modes = {}
        for mode in ("cached", "encoder_fed"):
            cmd = [
                sys.executable,
                __file__,
                "--one",
                mode,
                "--data",
                str(data),
                "--cache",
                str(cache),
                "--model",
                str(model),
                "--preset",
                args.preset,
                "--grid",
                *map(str, args.grid),
                "--epochs",
                str(args.epochs),
                "--batch-size",
                str(args.batch_size),
                "--workers",
                str(args.workers),
                "--device",
                args.device,
                "--seed",
                str(args.seed),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{mode} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
            modes[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{mode}: {modes[mode]}", flush=True)
        accuracy = heads_with_defaults(cfg)
    cached, fed = modes["cached"], modes["encoder_fed"]
    clips = cached["train_clips"] + cached["val_clips"]
    tokens = int(np.prod(args.grid))
    vit_b = 8 * 7 * 7 * 768 * 2  # VideoMAE-B at 16 x 224 (layout 8 x 14 x 14) on a grid of 8 x 7 x 7, float16
    print(
        json.dumps(
            {
                "device": args.device,
                "cores": os.cpu_count(),
                "preset": args.preset,
                "grid": args.grid,
                "tokens": tokens,
                "dim": PRESETS[args.preset]["hidden_size"],
                "train_clips": cached["train_clips"],
                "val_clips": cached["val_clips"],
                "epochs": args.epochs,
                "embed_s": round(embed_s, 2),
                "cached_epoch_s": round(cached["epoch_s"], 4),
                "encoder_fed_epoch_s": round(fed["epoch_s"], 3),
                "speedup": round(fed["epoch_s"] / cached["epoch_s"], 1),
                "acc_cached": round(cached["acc"], 4),
                "acc_encoder_fed": round(fed["acc"], 4),
                "acc_delta": round(cached["acc"] - fed["acc"], 4),
                "peak_rss_mb_cached": round(cached["peak_rss_mb"]),
                "peak_rss_mb_encoder_fed": round(fed["peak_rss_mb"]),
                **(
                    {
                        "peak_gpu_mb_cached": round(cached["peak_gpu_mb"]),
                        "peak_gpu_mb_encoder_fed": round(fed["peak_gpu_mb"]),
                    }
                    if "peak_gpu_mb" in cached
                    else {}
                ),
                "test_acc_defaults": accuracy,
                "bytes_per_clip": row_bytes,
                "bytes_per_clip_float16": row_bytes // 2,
                "k400_gb_float16": round(row_bytes / 2 * K400_CLIPS / 1e9, 1),
                "k400_gb_videomae_b_8x7x7_float16": round(vit_b * K400_CLIPS / 1e9, 1),
                "k400_epochs_per_hour_cached": round(3600 / (cached["epoch_s"] / clips * K400_CLIPS), 2),
                "k400_epochs_per_hour_encoder_fed": round(3600 / (fed["epoch_s"] / clips * K400_CLIPS), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
