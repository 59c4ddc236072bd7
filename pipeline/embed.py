"""`vidprobe embed`: decode each manifest sample once, embed it with a frozen backbone, store it.

DataLoader workers decode (decord opened inside each worker) while the main process embeds the
previous batch, so decoding overlaps the forward pass. Each writer (rank) owns one shard; ids are
assigned to shards by a stable hash, so a manifest that gains samples keeps earlier assignments.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections import Counter
from importlib.metadata import version

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from features.backbones import Backbone, build_backbone
from features.sampling import plan
from features.store import ShardWriter, write_index
from features.video import VideoError, crops, normalize, open_video, resize_short_side
from pipeline.config import Config, ConfigError, RunFailed
from pipeline.index import read_manifest


def feature_config(cfg: Config) -> dict:
    """Everything the stored values depend on; its hash names the feature set's identity."""
    backbone = {k: v for k, v in dataclasses.asdict(cfg.backbone).items() if k not in ("device", "compile")}
    return {"sampling": dataclasses.asdict(cfg.sampling), "backbone": backbone,
            "storage_dtype": cfg.embed.storage_dtype}


def feature_hash(cfg: Config) -> tuple[str, str]:
    """(hash, YAML) of the feature config."""
    text = yaml.safe_dump(feature_config(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16], text


@dataclasses.dataclass
class Item:
    sample_id: str
    path: str
    start: float | None = None
    end: float | None = None
    rotation: int = 0


class ClipDataset(Dataset):
    """One sample per item: plan the frames, decode them once, resize and crop every view."""

    def __init__(self, items: list[Item], cfg: Config, num_frames: int, size: int):
        self.items, self.s, self.t, self.size = items, cfg.sampling, num_frames, size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        it = self.items[i]
        try:
            reader = open_video(it.path, it.rotation, self.s.decoder)
            p = plan(reader.timestamps(), self.t, mode=self.s.mode, views=self.s.views, fps=self.s.fps,
                     window=self.s.window, stride=self.s.stride, start=it.start, end=it.end)
            uniq, inverse = np.unique(p.indices, return_inverse=True)
            frames = reader.get(list(uniq))  # each distinct frame decoded once for all views
            x = resize_short_side(frames, self.size)
            x = crops(x, self.size, self.s.crops)[:, inverse.reshape(p.indices.shape)]  # (C, V, T, 3, S, S)
            pixels = x.transpose(0, 1).contiguous()  # (V, C, T, 3, S, S) uint8, normalised on the device
            return {"id": it.sample_id, "pixels": pixels, "plan": p, "error": None}
        except VideoError as err:
            return {"id": it.sample_id, "pixels": None, "plan": None, "error": (err.kind, str(err))}
        except Exception as err:  # noqa: BLE001 - any decoder failure is this file's; the batch goes on
            return {"id": it.sample_id, "pixels": None, "plan": None, "error": ("decode error", f"{it.path}: {err}")}


def collate(items: list[dict]) -> dict:
    """One tensor of all clips of the batch, built in the worker: one transfer per batch, not per sample."""
    good = [it for it in items if it["pixels"] is not None]
    return {
        "clips": torch.cat([it["pixels"].flatten(0, 1) for it in good]) if good else None,  # (sum V*C, T, 3, S, S)
        "samples": [{"id": it["id"], "plan": it["plan"], "views": it["pixels"].shape[:2]} for it in good],
        "failed": [(it["id"], *it["error"]) for it in items if it["pixels"] is None],
    }


def worker_init(_: int) -> None:
    torch.set_num_threads(1)  # decoding workers must not fight the backbone for cores


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    return torch.device(name)


def resolve_shard(cfg: Config) -> tuple[int, int]:
    """(index, count) from config, else torchrun (RANK/WORLD_SIZE), else a SLURM array, else (0, 1)."""
    env = os.environ
    count, index = cfg.embed.num_shards, cfg.embed.shard_index
    if count is None:
        if "WORLD_SIZE" in env:
            count, index = int(env["WORLD_SIZE"]), int(env.get("RANK", 0)) if index is None else index
        elif "SLURM_ARRAY_TASK_COUNT" in env:
            first = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
            count = int(env["SLURM_ARRAY_TASK_COUNT"])
            index = int(env["SLURM_ARRAY_TASK_ID"]) - first if index is None else index
        else:
            count = 1
    index = 0 if index is None else index
    if not 0 <= index < count:
        raise ConfigError(f"embed.shard_index: {index} is not in [0, {count}) for embed.num_shards={count}")
    return index, count


def shard_of(sample_id: str, count: int) -> int:
    return int.from_bytes(hashlib.sha1(sample_id.encode()).digest()[:8], "big") % count


def check_sampling(cfg: Config, bb: Backbone) -> tuple[int, int]:
    """(frames, size) per clip: the backbone's own unless the config sets them and the backbone allows it."""
    frames = cfg.sampling.num_frames or bb.num_frames
    size = cfg.sampling.size or bb.image_size
    fixed = [f"{what} {want} (config asks for {got})" for what, want, got, strict in
             (("frames", bb.num_frames, frames, bb.fixed_frames), ("px", bb.image_size, size, bb.fixed_size))
             if strict and want != got]
    if fixed:
        raise ConfigError(f"sampling: {bb.name} takes exactly {' and '.join(fixed)}: its position embeddings are made "
                          "for that; leave sampling.num_frames/size unset to use the backbone's")
    if cfg.sampling.mode == "fps" and not cfg.sampling.fps:
        raise ConfigError("sampling.fps: mode 'fps' needs a frame rate, e.g. sampling.fps=8")
    return frames, size


def attrs(cfg: Config, bb: Backbone, frames: int, size: int) -> dict:
    h, text = feature_hash(cfg)
    versions = {p: version(p) for p in ("torch", "transformers", "decord", "h5py", "numpy")}
    return {"config_hash": h, "config": text,
            "provenance": {**bb.provenance(), "num_frames": frames, "image_size": size,
                           "preprocessing": f"short side to {size} px (bilinear, antialiased), {cfg.sampling.crops} "
                                            f"centre/side crop(s) of {size}x{size}, RGB scaled to [0, 1], minus mean, over std",
                           "sampling": dataclasses.asdict(cfg.sampling), "dtype": cfg.backbone.dtype,
                           "storage_dtype": cfg.embed.storage_dtype, "dataset": cfg.dataset.name,
                           "versions": versions}}


def manifest_items(cfg: Config, index: int, count: int) -> tuple[list[Item], int]:
    manifest = read_manifest(cfg)
    ok = manifest[manifest.status == "ok"]
    items = []
    for row in ok.itertuples(index=False):
        if shard_of(row.sample_id, count) != index:
            continue
        get = row._asdict().get
        start, end, rot = get("start"), get("end"), get("rotation")
        items.append(Item(row.sample_id, os.path.join(cfg.dataset.root, row.path),
                          None if start is None or np.isnan(start) else float(start),
                          None if end is None or np.isnan(end) else float(end),
                          0 if rot is None or np.isnan(rot) else int(rot)))
    return items, len(manifest) - len(ok)


def rows_for(sample: dict, feats: dict[str, np.ndarray], windows: bool) -> tuple[list[str], dict[str, np.ndarray]]:
    """One stored row per sample (views and crops as axes), or one per window in windows mode."""
    p = sample["plan"]
    v, c = feats[next(iter(feats))].shape[:2]
    meta = {"frame_indices": p.indices.astype(np.int32), "frame_times": p.times.astype(np.float32),
            "num_padded": p.padded, "span": p.spans.astype(np.float32)}
    if windows:
        ids = [f"{sample['id']}#w{j:04d}" for j in range(v)]
        out = {k: (a[:, 0] if c == 1 else a) for k, a in feats.items()}
        out.update(meta)
        out["source_id"] = np.asarray([sample["id"]] * v, dtype=object)
        return ids, out
    squeeze = v == 1 and c == 1
    out = {k: (a[0, 0] if squeeze else a)[None] for k, a in feats.items()}
    out.update({k: (a[0] if v == 1 else a)[None] for k, a in meta.items()})
    return [sample["id"]], out


def embed_batch(bb: Backbone, batch: dict, cfg: Config, device: torch.device, dtype) -> list[dict]:
    """Forward every clip of the batch (in chunks of embed.batch_size) and regroup per sample."""
    clips = batch["clips"]
    outs: dict[str, list[torch.Tensor]] = {}
    for chunk in clips.split(cfg.embed.batch_size):
        chunk = normalize(chunk.to(device, non_blocking=True), bb.mean, bb.std)
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            for k, v in bb.embed(chunk).items():
                outs.setdefault(k, []).append(v.float().cpu())
    store = np.float16 if cfg.embed.storage_dtype == "float16" else np.float32
    flat = {k: torch.cat(v).numpy().astype(store) for k, v in outs.items()}
    per_sample, at = [], 0
    for s in batch["samples"]:
        v, c = s["views"]
        per_sample.append({k: a[at : at + v * c].reshape(v, c, *a.shape[1:]) for k, a in flat.items()})
        at += v * c
    return per_sample


def compute_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16/fp16 from config on CUDA; on a CPU the backbone runs in float32."""
    dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.backbone.dtype]
    if dtype is not None and device.type != "cuda":
        print(f"note: backbone.dtype={cfg.backbone.dtype} applies on CUDA; on {device.type} the backbone runs in float32")
        return None
    return dtype


def warm_up(bb: Backbone, cfg: Config, device: torch.device, dtype, frames: int, size: int) -> None:
    """One forward on a blank batch: kernel selection and allocation happen before real data arrives."""
    if device.type != "cuda":
        return
    blank = torch.zeros(cfg.embed.batch_size, frames, 3, size, size, dtype=torch.uint8)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        bb.embed(normalize(blank.to(device), bb.mean, bb.std))
    torch.cuda.synchronize(device)


def summarise(failures: list[tuple[str, str, str]]) -> str:
    kinds = Counter(kind for _, kind, _ in failures)
    return ", ".join(f"{n} {kind}" for kind, n in kinds.most_common()) or "none"


def run(cfg: Config) -> dict:
    index, count = resolve_shard(cfg)
    items, skipped = manifest_items(cfg, index, count)
    bb = build_backbone(cfg.backbone)
    frames, size = check_sampling(cfg, bb)
    out_dir = cfg.feature_dir()
    writer = ShardWriter(out_dir, index, count, attrs(cfg, bb, frames, size), compression=cfg.embed.compression,
                         commit_every=cfg.embed.commit_every, force=cfg.embed.force)
    todo = [it for it in items if it.sample_id not in writer.done]
    device = resolve_device(cfg.backbone.device)
    bb.model.to(device)
    dtype = compute_dtype(cfg, device)
    if cfg.backbone.compile:
        bb.model = torch.compile(bb.model)
    clips_per_sample = cfg.sampling.views * cfg.sampling.crops
    workers = cfg.embed.num_workers
    loader = DataLoader(
        ClipDataset(todo, cfg, frames, size),
        batch_size=max(1, cfg.embed.batch_size // clips_per_sample), num_workers=workers, collate_fn=collate,
        pin_memory=device.type == "cuda", worker_init_fn=worker_init if workers else None,
        prefetch_factor=cfg.embed.prefetch if workers else None, persistent_workers=False,
    )
    failures: list[tuple[str, str, str]] = []
    start, clips = time.perf_counter(), 0
    batches = iter(loader)  # workers start decoding now, while the backbone warms up
    warm_up(bb, cfg, device, dtype, frames, size)
    bar = tqdm(total=len(todo), desc=f"embed {bb.name} [shard {index}/{count}]", unit="sample", dynamic_ncols=True)
    for batch in batches:
        failures += batch["failed"]
        if batch["samples"]:
            for s, feats in zip(batch["samples"], embed_batch(bb, batch, cfg, device, dtype)):
                ids, rows = rows_for(s, feats, cfg.sampling.mode == "windows")
                writer.append(ids, rows)
            clips += len(batch["clips"])
        bar.update(len(batch["samples"]) + len(batch["failed"]))
        bar.set_postfix(clips_s=f"{clips / (time.perf_counter() - start):.1f}", failed=len(failures))
    bar.close()
    writer.finish()
    elapsed = time.perf_counter() - start
    index_json = write_index(out_dir)
    fail_path = out_dir / f"failures-{index}-of-{count}.json"
    fail_path.write_text(json.dumps([{"sample_id": s, "kind": k, "error": e} for s, k, e in failures], indent=2))
    for _, _, err in failures:
        print(f"warning: {err}")
    print(f"embedded {len(todo) - len(failures)} new samples ({clips} clips, {clips / max(elapsed, 1e-9):.1f} clips/s) "
          f"into {writer.final}; {len(items) - len(todo)} already stored, {skipped} unreadable at index; "
          f"failed: {summarise(failures)}. Feature set: {index_json['num_rows']} rows.")
    limit = cfg.embed.max_failures
    if limit is not None and len(failures) > limit:
        raise RunFailed(f"{len(failures)} samples failed to decode (embed.max_failures={limit}); see {fail_path}")
    return {"dir": out_dir, "rows": index_json["num_rows"], "new": len(todo) - len(failures), "clips": clips,
            "seconds": elapsed, "failed": failures}
