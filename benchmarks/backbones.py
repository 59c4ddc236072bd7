"""Backbone zoo throughput: clips/s and peak memory of every family at its native input, on this machine.

Each family is the real architecture of its README example checkpoint, randomly initialised (the cost of the
real thing, no download), saved with `save_pretrained` and loaded through `build_backbone` as users load it;
then `--batch-size` clips of its native frames x size go through `Backbone.__call__` (the pooling included)
under inference mode, after one warm-up batch, for at least `--seconds`. Each family runs in a process of its
own, so its peak memory is its own: peak RSS on a CPU, `torch.cuda.max_memory_allocated` on a GPU.
`vs_videomae` is each family's clips/s over VideoMAE-B's, measured in the same run. Last line: one JSON object.

    python benchmarks/backbones.py                                   # CPU, float32, batch 1
    python benchmarks/backbones.py --device cuda --dtype bfloat16 --batch-size 16
    python benchmarks/backbones.py --families videomae dinov2        # a few
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the vidprobe CLI sets it, before torch loads


def families() -> dict:
    """Every family of the registry with a native input (its `Native`), I3D included: what a run measures."""
    from vidprobe.features.backbones import BACKBONES

    return {name: family for name, family in BACKBONES.items() if family.native is not None}


def save_native(family: str, root: Path) -> str | None:
    """The family's architecture with random weights and its processor config, saved; None for I3D (packaged)."""
    import torch
    import transformers
    from vidprobe.features.backbones.base import quiet_transformers, save_processor_config

    native = families()[family].native
    if native.model_class is None:
        return None
    quiet_transformers()
    torch.manual_seed(0)
    path = root / family
    config = getattr(transformers, native.config_class)(**native.overrides)
    getattr(transformers, native.model_class)(config).save_pretrained(path)
    save_processor_config(path, f"{native.config_class}Processor", native.size, native.mean, native.std)
    return str(path)


def measure(family: str, device: str, dtype: str, batch: int, seconds: float, tiny: bool = False) -> dict:
    """One family, in this process: build, warm up, time; peak memory of this process (loading included)."""
    import torch
    from vidprobe.features.backbones import build_backbone
    from vidprobe.features.backbones.tiny import save_tiny
    from vidprobe.features.config import BackboneConfig
    from vidprobe.features.devices import autocast, autocast_dtype, resolve_device

    dev = resolve_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        native = families()[family].native
        if tiny and native.model_class:
            model = str(save_tiny(family, Path(tmp) / family))
        else:
            model = save_native(family, Path(tmp))
        start = time.perf_counter()
        bb = build_backbone(BackboneConfig(name=family, model=model))
        load_s = time.perf_counter() - start
    bb.model.to(dev)
    amp = autocast_dtype(dtype, dev, "--dtype", "the backbone")
    frames, size = (bb.num_frames, bb.image_size) if tiny else (native.frames, native.size)
    x = torch.randn(batch, frames, 3, size, size, device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def step():
        with torch.inference_mode(), autocast(dev, amp):
            out = bb(x)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return out

    out = step()  # warm-up: kernels chosen, memory allocated
    clips, start = 0, time.perf_counter()
    while clips == 0 or time.perf_counter() - start < seconds:
        step()
        clips += batch
    elapsed = time.perf_counter() - start
    peak = (
        torch.cuda.max_memory_allocated(dev)
        if dev.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    ) / 2**20
    return {
        "example": families()[family].example,
        "input": f"{frames}x{size}",
        "fixed": [bb.fixed_frames, bb.fixed_size],
        "params_m": round(sum(p.numel() for p in bb.model.parameters()) / 1e6, 1),
        "keys": {k: list(v.shape[1:]) for k, v in out.items()},
        "clips_per_s": round(clips / elapsed, 3),
        "peak_mb": round(peak),
        "load_s": round(load_s, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    known = list(families())
    ap.add_argument("--families", nargs="+", default=known, choices=known)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--batch-size", type=int, default=None, help="clips per forward (default: 1 on CPU, 8 on CUDA)")
    ap.add_argument("--seconds", type=float, default=3.0, help="time each family at least this long")
    ap.add_argument("--tiny", action="store_true", help="tiny random models (checks the script, measures nothing real)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # a child: measure this family, print its JSON
    args = ap.parse_args()
    batch = args.batch_size or (1 if args.device == "cpu" else 8)
    if args.one:
        print(json.dumps(measure(args.one, args.device, args.dtype, batch, args.seconds, args.tiny)))
        return
    order = ["videomae", *[f for f in args.families if f != "videomae"]]  # the baseline, always measured first
    results = {}
    for family in order:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            family,
            "--device",
            args.device,
            "--dtype",
            args.dtype,
            "--batch-size",
            str(batch),
            "--seconds",
            str(args.seconds),
            *(["--tiny"] if args.tiny else []),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            results[family] = {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
        else:
            results[family] = json.loads(done.stdout.strip().splitlines()[-1])
        r = results[family]
        print(
            f"{family:16s} {r.get('input', ''):>7s}  {r.get('clips_per_s', float('nan')):8.3f} clips/s  "
            f"peak {r.get('peak_mb', 0):6d} MB  {r.get('error', '')}",
            flush=True,
        )
    base = results["videomae"].get("clips_per_s")
    for r in results.values():
        if "clips_per_s" in r and base:
            r["vs_videomae"] = round(r["clips_per_s"] / base, 3)
    import torch

    print(
        json.dumps(
            {
                "device": args.device,
                "dtype": args.dtype,
                "batch_size": batch,
                "tiny": args.tiny,
                "cores": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "families": results,
            }
        )
    )


if __name__ == "__main__":
    main()
