"""`vidprobe embed`: decode each manifest sample once, embed it with a frozen backbone, write a shard."""

from __future__ import annotations

import dataclasses
import json
import time
from importlib.metadata import version

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from features.backbones import Backbone, build_backbone
from features.store import ShardWriter, shard_paths, write_index
from features.video import normalize, read_frames, resize_crop
from pipeline.config import Config, ConfigError
from pipeline.index import read_manifest

EMBED_SECTIONS = ("sampling", "backbone")  # what the features depend on: their config hash


class ClipDataset(Dataset):
    """Decodes and preprocesses one sample per item; decord is opened inside the worker."""

    def __init__(self, items: list[tuple[str, str]], num_frames: int, size: int, mean, std):
        self.items, self.num_frames, self.size, self.mean, self.std = items, num_frames, size, mean, std

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        sample_id, path = self.items[i]
        try:
            frames, idx, _ = read_frames(path, self.num_frames)
            pixels = normalize(resize_crop(frames, self.size), self.mean, self.std)
            return {"id": sample_id, "pixels": pixels, "indices": idx, "error": ""}
        except Exception as err:  # noqa: BLE001 - recorded per sample, the batch goes on
            return {"id": sample_id, "pixels": None, "indices": None, "error": f"{path}: {err}"}


def collate(items: list[dict]) -> dict:
    good = [it for it in items if it["pixels"] is not None]
    return {
        "ids": [it["id"] for it in good],
        "pixels": torch.stack([it["pixels"] for it in good]) if good else None,
        "indices": np.stack([it["indices"] for it in good]) if good else None,
        "failed": [(it["id"], it["error"]) for it in items if it["pixels"] is None],
    }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_sampling(cfg: Config, bb: Backbone) -> tuple[int, int]:
    frames = cfg.sampling.num_frames or bb.num_frames
    size = cfg.sampling.size or bb.image_size
    if (frames, size) != (bb.num_frames, bb.image_size):
        raise ConfigError(
            f"sampling: {bb.name} expects {bb.num_frames} frames of {bb.image_size}px, config asks for "
            f"{frames} of {size}px; leave sampling.num_frames/size unset to use the backbone's"
        )
    return frames, size


def provenance(cfg: Config, bb: Backbone, frames: int, size: int) -> dict:
    stage_cfg = {s: dataclasses.asdict(getattr(cfg, s)) for s in EMBED_SECTIONS}
    versions = {p: version(p) for p in ("torch", "transformers", "decord", "h5py", "numpy")}
    return {
        "config_hash": cfg.section_hash(*EMBED_SECTIONS),
        "config": yaml.safe_dump(stage_cfg, sort_keys=False),
        "provenance": {**bb.provenance(), "num_frames": frames, "image_size": size,
                       "sampling": "uniform, segment centres", "dtype": cfg.backbone.dtype,
                       "dataset": cfg.dataset.name, "versions": versions},
    }


def run(cfg: Config) -> dict:
    manifest = read_manifest(cfg)
    ok = manifest[manifest.status == "ok"]
    skipped = len(manifest) - len(ok)
    bb = build_backbone(cfg.backbone)
    frames, size = check_sampling(cfg, bb)
    device = resolve_device(cfg.backbone.device)
    bb.model.to(device)
    dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.backbone.dtype]
    items = [(sid, f"{cfg.dataset.root}/{p}") for sid, p in zip(ok.sample_id, ok.path)]
    loader = DataLoader(
        ClipDataset(items, frames, size, bb.mean, bb.std), batch_size=cfg.embed.batch_size,
        num_workers=cfg.embed.num_workers, collate_fn=collate, pin_memory=device.type == "cuda",
    )
    out_dir = cfg.feature_dir()
    for stale in shard_paths(out_dir) if out_dir.is_dir() else []:
        stale.unlink()  # this run rebuilds the whole set (resuming comes with the extraction engine)
    failures: list[tuple[str, str]] = []
    start = time.perf_counter()
    with ShardWriter(out_dir, 0, 1, provenance(cfg, bb, frames, size)) as writer:
        bar = tqdm(loader, desc=f"embed {bb.name}", unit="batch")
        for batch in bar:
            failures += batch["failed"]
            if batch["pixels"] is not None:
                pixels = batch["pixels"].to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    feats = bb.embed(pixels)
                arrays = {k: v.float().cpu().numpy() for k, v in feats.items()}
                arrays["frame_indices"] = batch["indices"]
                writer.append(batch["ids"], arrays)
            bar.set_postfix(clips=writer.n, failed=len(failures))
    index = write_index(out_dir)
    (out_dir / "failures.json").write_text(json.dumps([{"sample_id": s, "error": e} for s, e in failures], indent=2))
    for sid, err in failures:
        print(f"warning: could not embed {sid}: {err}")
    rate = len(items) / max(time.perf_counter() - start, 1e-9)
    print(f"embedded {index['num_rows']} clips ({rate:.1f}/s) into {out_dir}; "
          f"{len(failures)} failed, {skipped} skipped as unreadable at index")
    return {"dir": out_dir, "rows": index["num_rows"], "failed": failures}
