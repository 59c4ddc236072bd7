"""`vidprobe embed`: decode each manifest sample once, embed it with a frozen backbone, store it.

DataLoader workers decode (each opens its own decoder: `sampling.decoder`) while the main process embeds the
previous batch on the GPU, so decoding overlaps the forward pass; on a CPU each worker embeds what it decodes
(`embed.in_workers`, see `features.embedding.WorkerEmbedder`). Each writer (rank) owns one shard; ids are
assigned to shards by a stable hash, so a manifest that gains samples keeps earlier assignments.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from functools import partial

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm
from vidprobe import layout
from vidprobe.artifacts import check_failures, clip_items, failure_summary
from vidprobe.config import Config, ConfigError
from vidprobe.features.backbones import build_backbone
from vidprobe.features.clips import ClipDataset, clip_shape, collate, worker_init
from vidprobe.features.devices import autocast_dtype, native_threads, resolve_device
from vidprobe.features.embedding import Embedder, WorkerEmbedder, feature_attrs
from vidprobe.features.files import write_json
from vidprobe.features.rows import sample_rows, source_of
from vidprobe.features.store import ShardWriter, shard_of, write_index


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


def run(cfg: Config) -> dict:
    index, count = resolve_shard(cfg)
    items, skipped = clip_items(cfg)
    items = [it for it in items if shard_of(it.sample_id, count) == index]
    bb = build_backbone(cfg.backbone)
    frames, size = clip_shape(cfg.sampling, bb)
    bb.check_token_grid(frames, size)  # a grid the model's token layout cannot fill: refused before any decode
    out_dir = layout.feature_set(cfg)
    attrs = feature_attrs(cfg.sampling, cfg.backbone, cfg.embed.storage_dtype, bb, frames, size, cfg.dataset.name)
    with ShardWriter(
        out_dir,
        index,
        count,
        attrs,
        compression=cfg.embed.compression,
        commit_every=cfg.embed.commit_every,
        force=cfg.embed.force,
        lock_timeout=cfg.paths.lock_timeout,
    ) as writer:  # one writer per shard
        stored = {source_of(row) for row in writer.done}  # a window's rows are committed with its video's
        todo = [it for it in items if it.sample_id not in stored]
        start = time.perf_counter()
        failures, clips = fill(writer, todo, bb, cfg, frames, size, f"embed {bb.name} [shard {index}/{count}]")
        writer.finish()
        elapsed = time.perf_counter() - start
    index_json = write_index(out_dir)
    fail_path = write_json(
        out_dir / f"failures-{index}-of-{count}.json", [{"sample_id": s, "kind": k, "error": e} for s, k, e in failures]
    )
    kinds = failure_summary([e for _, _, e in failures], Counter(k for _, k, _ in failures))
    print(
        f"embedded {len(todo) - len(failures)} new samples ({clips} clips, {clips / max(elapsed, 1e-9):.1f} clips/s) "
        f"into {writer.final}; {len(items) - len(todo)} already stored, {skipped} unreadable at index; "
        f"failed: {kinds}. Feature set: {index_json['num_rows']} rows."
    )
    check_failures(len(failures), cfg.embed.max_failures, "samples failed to decode", "embed.max_failures", fail_path)
    return {
        "dir": out_dir,
        "rows": index_json["num_rows"],
        "new": len(todo) - len(failures),
        "clips": clips,
        "seconds": elapsed,
        "failed": failures,
    }


def tokens_note(rows: dict, n: int, cfg: Config) -> str:
    """What the token grid takes of each row, and a word on float16 when it is stored as float32."""
    tokens = [a for k, a in rows.items() if k.startswith("video/tokens")]
    if not tokens:
        return ""
    size = sum(a.nbytes for a in tokens) / n
    hint = "" if cfg.embed.storage_dtype == "float16" else "; embed.storage_dtype=float16 halves it"
    return f" ({size / 1024:.1f} KiB of them video/tokens{hint})"


def in_worker_embedding(cfg: Config, device: torch.device, workers: int) -> bool:
    """embed.in_workers, resolved: by default the workers embed on a CPU device (features.embedding.WorkerEmbedder
    says why), never on a GPU (CUDA does not survive a fork) or with backbone.compile."""
    wanted = cfg.embed.in_workers
    if wanted and (device.type != "cpu" or workers == 0 or cfg.backbone.compile):
        raise ConfigError(
            f"embed.in_workers=true needs backbone.device=cpu, embed.num_workers >= 1 and "
            f"backbone.compile=false (have {device.type}, {workers}, {cfg.backbone.compile}); "
            "leave it unset to choose by device"
        )
    if wanted is None:
        return device.type == "cpu" and workers > 0 and not cfg.backbone.compile
    return wanted


def fill(
    writer: ShardWriter, todo: list, bb, cfg: Config, frames: int, size: int, desc: str
) -> tuple[list[tuple[str, str, str]], int]:
    """Decode and embed every item of `todo` into `writer`: (failures, clips embedded)."""
    device = resolve_device(cfg.backbone.device)
    bb.model.to(device)
    dtype = autocast_dtype(cfg.backbone.dtype, device, "backbone.dtype", "the backbone")
    if cfg.backbone.compile:
        bb.model = torch.compile(bb.model)
    embedder = Embedder(bb, device, dtype, cfg.embed.batch_size, cfg.embed.storage_dtype)
    workers = cfg.embed.num_workers
    in_workers = in_worker_embedding(cfg, device, workers)
    threads = max(1, torch.get_num_threads() // workers) if in_workers else 1  # the cores, split among workers
    if in_workers and threads > 1 and native_threads():
        print(
            f"embed: this process already holds torch's OpenMP threads (earlier torch work in it, e.g. a notebook "
            f"that trained), so a forked worker embedding with {threads} threads would hang (GNU OpenMP is not "
            f"fork-safe): the main process embeds and the {workers} worker(s) decode; "
            f"embed.num_workers={torch.get_num_threads()} keeps embedding in the workers, one thread each"
        )
        in_workers, threads = False, 1
    loader = DataLoader(
        ClipDataset(todo, cfg.sampling, frames, size),
        batch_size=max(1, cfg.embed.batch_size // (cfg.sampling.views * cfg.sampling.crops)),
        num_workers=workers,
        collate_fn=WorkerEmbedder(embedder) if in_workers else collate,
        pin_memory=device.type == "cuda",
        worker_init_fn=partial(worker_init, threads=threads) if workers else None,
        prefetch_factor=cfg.embed.prefetch if workers else None,
        persistent_workers=False,
    )
    failures: list[tuple[str, str, str]] = []
    start, clips = time.perf_counter(), 0
    batches = iter(loader)  # workers start decoding now, while the backbone warms up
    embedder.warm_up(frames, size)
    if in_workers:
        print(
            f"embed: {workers} workers each decode and embed "
            f"({threads} thread{'s' * (threads > 1)} each; embed.in_workers)"
        )
    bar = tqdm(total=len(todo), desc=desc, unit="sample", dynamic_ncols=True)
    for batch in batches:
        failures += batch["failed"]
        for picked in batch["picked"]:
            bar.write(
                f"decoder auto: {picked['decoder']} for the rest of this worker's samples (median ms per sample "
                f"over its first {picked['samples']}, in turn: "
                + ", ".join(f"{n} {ms}" for n, ms in picked["ms"].items())
                + "; same frames)"
            )
        features = batch["features"] if in_workers else embedder(batch) if batch["samples"] else []
        for s, feats in zip(batch["samples"], features):
            ids, rows = sample_rows(s["id"], s["plan"], feats, cfg.sampling.mode == "windows")
            if not writer.n_new and not writer.buffer:  # before the first row is written: room for them all?
                per_row = sum(a.nbytes for a in rows.values() if a.dtype != object) / len(ids)
                left = len(ids) * (len(todo) - bar.n)
                bar.write(
                    f"embed: {per_row / 1024:.1f} KiB per row, about {left * per_row / 2**20:.1f} MiB for the "
                    f"{left} rows to write" + tokens_note(rows, len(ids), cfg)
                )
                writer.check_space(left, per_row)
            writer.append(ids, rows)
        clips += sum(v * c for v, c in (s["views"] for s in batch["samples"]))
        rate = clips / (time.perf_counter() - start)
        bar.set_postfix(clips_s=f"{rate:.1f}", failed=len(failures), refresh=False)  # shown by update's redraw
        bar.update(len(batch["samples"]) + len(batch["failed"]))  # redraws at most every 0.1 s, not every batch
    bar.close()
    return failures, clips
