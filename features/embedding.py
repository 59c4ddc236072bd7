"""A frozen backbone at work: batches of decoded clips in, one feature row per sample out, and the shard
attributes that say exactly what made them."""

from __future__ import annotations

import dataclasses
from importlib.metadata import version

import numpy as np
import torch
from vidprobe.features.backbones import Backbone
from vidprobe.features.clips import collate
from vidprobe.features.config import BackboneConfig, SamplingConfig
from vidprobe.features.devices import autocast
from vidprobe.features.identity import feature_hash
from vidprobe.features.video import normalize


class Embedder:
    """`bb` on `device`, `batch_size` clips per forward pass, autocast to `dtype` (None: float32), features
    stored as `storage_dtype`."""

    def __init__(
        self, bb: Backbone, device: torch.device, dtype: torch.dtype | None, batch_size: int, storage_dtype: str
    ):
        self.bb, self.device, self.dtype, self.batch_size = bb, device, dtype, batch_size
        self.store = np.float16 if storage_dtype == "float16" else np.float32

    def warm_up(self, frames: int, size: int) -> None:
        """One forward on a blank batch: kernel selection and allocation happen before real data arrives."""
        if self.device.type != "cuda":
            return
        blank = torch.zeros(self.batch_size, frames, 3, size, size, dtype=torch.uint8)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            self.bb(normalize(blank.to(self.device), self.bb.mean, self.bb.std))
        torch.cuda.synchronize(self.device)

    def __call__(self, batch: dict) -> list[dict[str, np.ndarray]]:
        """Forward every clip of a collated batch (features.clips.collate), in chunks of `batch_size`; per sample,
        {key: (views, crops, ...)}."""
        outs: dict[str, list[torch.Tensor]] = {}
        for chunk in batch["clips"].split(self.batch_size):
            chunk = normalize(chunk.to(self.device, non_blocking=True), self.bb.mean, self.bb.std)
            with torch.inference_mode(), autocast(self.device, self.dtype):
                for k, v in self.bb(chunk).items():
                    outs.setdefault(k, []).append(v.float().cpu())
        flat = {k: torch.cat(v).numpy().astype(self.store) for k, v in outs.items()}
        per_sample, at = [], 0
        for s in batch["samples"]:
            v, c = s["views"]
            per_sample.append({k: a[at : at + v * c].reshape(v, c, *a.shape[1:]) for k, a in flat.items()})
            at += v * c
        return per_sample


class WorkerEmbedder:
    """`collate`, then `embedder` on the batch, inside a DataLoader worker: the batch leaves the worker as
    `features` (`Embedder.__call__`'s list), its pixels dropped. On a CPU, N workers that each decode and
    embed with cores/N threads keep every core busy with no thread waiting on another; a main process
    embedding with every core while the workers decode makes its threads and the decoders take turns on
    the same cores (measured on 2 cores: 25-40% below the CPU's limit). Forked workers share the
    model's weights with the main process; a GPU keeps the model in the main process."""

    def __init__(self, embedder: Embedder):
        self.embedder = embedder

    def __call__(self, items: list[dict]) -> dict:
        batch = collate(items)
        batch["features"] = self.embedder(batch) if batch["samples"] else []
        batch["clips"] = None
        return batch


def feature_attrs(
    sampling: SamplingConfig,
    backbone: BackboneConfig,
    storage_dtype: str,
    bb: Backbone,
    frames: int,
    size: int,
    dataset: str,
) -> dict:
    """A video feature set's shard attributes: its identity (`config_hash`, `config`) and its provenance."""
    h, text = feature_hash(sampling, backbone, storage_dtype)
    versions = {p: version(p) for p in ("torch", "transformers", "decord", "h5py", "numpy")}
    return {
        "config_hash": h,
        "config": text,
        "provenance": {
            **bb.provenance(),
            "num_frames": frames,
            "image_size": size,
            "preprocessing": f"short side to {size} px (bilinear, antialiased), {sampling.crops} "
            f"centre/side crop(s) of {size}x{size}, RGB scaled to [0, 1], minus mean, over std",
            "sampling": dataclasses.asdict(sampling),
            "dtype": backbone.dtype,
            "storage_dtype": storage_dtype,
            "dataset": dataset,
            "versions": versions,
        },
    }
