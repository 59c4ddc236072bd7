"""Fine-tuning throughput: clips/s and peak memory of `vidprobe finetune` training steps.

For each batch size x unfreeze setting, the stage's own bench mode (`finetune.bench_steps`: the real
training step, on clips decoded by DataLoader workers from a generated dataset) runs in a process of its
own, so that peak memory is that configuration's: CUDA max_memory_allocated, or the process's max RSS on a
CPU. The backbone is a VideoMAE preset with random weights (the cost of the real model, no download).

Per row: clips_per_s (whole steps: waiting for data, host-to-device, forward, backward, optimiser step; the
first step is left out as warm-up), compute_clips_per_s (the compute alone), peak_mem_mb, trainable params.
Baseline in the same run: speedup_last<N>_vs_all = clips/s with the last N blocks trainable over clips/s with
all of them (unfreeze -1), at the largest batch size both ran; mem_ratio_last<N>_vs_all likewise.

    python benchmarks/finetune.py                # CPU: "small" VideoMAE (4 layers, 16x112), batch 2 and 4
    python benchmarks/finetune.py --preset base --device cuda --amp bf16 --batch-sizes 8 16 32 --unfreeze 2 -1

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from extract import PRESETS, make_dataset, prepare_manifest, save_preset  # noqa: E402
from vidprobe import layout  # noqa: E402
from vidprobe.config import load_config  # noqa: E402


def overrides(data: Path, cache: Path, model: Path, args, batch_size: int, unfreeze: int) -> list[str]:
    return [
        f"dataset.root={data}",
        f"paths.cache={cache}",
        "dataset.name=bench",
        "task.traits=[]",
        "backbone.name=videomae",
        f"backbone.model={model}",
        f"backbone.device={args.device}",
        f"finetune.name=bench-b{batch_size}-u{unfreeze}",
        f"finetune.batch_size={batch_size}",
        f"finetune.unfreeze_blocks={unfreeze}",
        f"finetune.bench_steps={args.steps}",
        f"finetune.amp={args.amp}",
        f"finetune.num_workers={args.workers}",
        f"finetune.grad_checkpointing={str(args.grad_checkpointing).lower()}",
        "finetune.export=false",
        "index.num_workers=2",
    ]


def measure(args, data: Path, cache: Path, model: Path, batch_size: int, unfreeze: int) -> dict:
    """One configuration through `vidprobe finetune` in a fresh process; its bench.json as a row."""
    cmd = [sys.executable, "-m", "vidprobe", "finetune", *overrides(data, cache, model, args, batch_size, unfreeze)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    row = {"batch_size": batch_size, "unfreeze": unfreeze}
    if proc.returncode != 0:
        oom = "OutOfMemoryError" in proc.stderr or "out of memory" in proc.stderr
        row["error"] = "out of memory" if oom else proc.stderr.strip().splitlines()[-1]
        print(json.dumps(row), flush=True)
        return row
    bench = json.loads((cache / "runs" / f"bench-b{batch_size}-u{unfreeze}" / "bench.json").read_text())
    clips = sum(s["clips"] for s in bench["per_step"][1:]) or bench["per_step"][0]["clips"]
    compute = sum(s["compute"] for s in bench["per_step"][1:]) or bench["per_step"][0]["compute"]
    row.update(
        clips_per_s=round(bench["clips_per_s"], 3),
        compute_clips_per_s=round(clips / compute, 3),
        peak_mem_mb=round(bench["peak_mem_mb"], 1),
        step_s=round(bench["step_s"], 4),
        data_wait_s=round(bench["data_wait_s"], 4),
        h2d_s=round(bench["h2d_s"], 4),
        compute_s=round(bench["compute_s"], 4),
        trainable_params=bench["trainable_params"],
    )
    print(json.dumps(row), flush=True)
    return row


def baselines(rows: list[dict], unfreeze: list[int]) -> dict:
    """Each partial unfreeze against all blocks, at the largest batch size where both ran."""
    ok = {(r["batch_size"], r["unfreeze"]): r for r in rows if "error" not in r}
    out = {}
    for n in (u for u in unfreeze if u != -1):
        shared = [b for b, u in ok if u == n and (b, -1) in ok]
        if shared:
            b = max(shared)
            out[f"speedup_last{n}_vs_all"] = round(ok[(b, n)]["clips_per_s"] / ok[(b, -1)]["clips_per_s"], 3)
            out[f"mem_ratio_last{n}_vs_all"] = round(ok[(b, n)]["peak_mem_mb"] / ok[(b, -1)]["peak_mem_mb"], 3)
            out["baseline_batch_size"] = b
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", choices=list(PRESETS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--unfreeze", type=int, nargs="+", default=[2, -1], help="blocks trainable; -1: all")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps per configuration (default: 8 on a CPU, 12 on a GPU); the first is warm-up",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--data", type=Path, help="a class-folder dataset to decode instead of generating one")
    args = parser.parse_args()
    args.steps = args.steps or (8 if args.device == "cpu" else 12)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = args.data.resolve() if args.data else make_dataset(tmp / "data", 14)
        model = save_preset(args.preset, tmp)
        cache = tmp / "cache"
        cfg = load_config(None, overrides(data, cache, model, args, 1, -1))
        prepare_manifest(cfg, data, 1)
        manifest = pd.read_csv(layout.manifest(cfg))
        repeat = math.ceil(max(args.batch_sizes) * args.steps / int((manifest.split == "train").sum()))
        if repeat > 1:  # every sample listed `repeat` times: the timed steps stay in one epoch
            manifest = pd.concat([manifest.assign(sample_id=manifest.sample_id + f"~{r}") for r in range(repeat)])
            manifest.to_csv(layout.manifest(cfg), index=False)
        rows = [measure(args, data, cache, model, b, u) for u in args.unfreeze for b in args.batch_sizes]

    device = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") and torch.cuda.is_available() else args.device
    )
    preset = PRESETS[args.preset]
    summary = {
        "device": device,
        "preset": args.preset,
        "frames": preset["num_frames"],
        "size": preset["image_size"],
        "amp": args.amp,
        "grad_checkpointing": args.grad_checkpointing,
        "workers": args.workers,
        "steps": args.steps,
        "cores": os.cpu_count(),
        "rows": rows,
        **baselines(rows, args.unfreeze),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
