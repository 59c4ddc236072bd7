"""Clips out of videos, for embedding and for fine-tuning alike: plan the frames, decode each one once, resize
and crop, and hand the batch over as uint8 (normalised on the device, 4x less to pass between processes).

A video that cannot be decoded becomes an item with an `error` (kind, message) instead of pixels, so one
bad file never stops a batch; the caller records it.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset
from vidprobe.features.augment import Augment, jitter_segment, random_resized_crop
from vidprobe.features.config import SamplingConfig
from vidprobe.features.devices import reuse_freed_memory
from vidprobe.features.errors import FeatureConfigError
from vidprobe.features.sampling import ClipPlan, Item, plan
from vidprobe.features.video import VideoError, crops, open_video, resize_short_side

AUTO_DECODERS = ("decord", "pyav")  # what `auto` picks from (ffmpeg, a process per video, is never faster)
AUTO_TRIALS = 3  # timed samples each decoder decodes, in turn, before a process picks one (after an untimed first)
AUTO_SECONDS = 0.3  # ... and more, up to AUTO_MAX each, until each has taken this long: short clips are noisy
AUTO_MAX = 24

if TYPE_CHECKING:
    from vidprobe.features.backbones import Backbone


def clip_shape(sampling: SamplingConfig, bb: Backbone) -> tuple[int, int]:
    """(frames, size) per clip: the backbone's own unless the config sets them and the backbone allows it."""
    frames = sampling.num_frames or bb.num_frames
    size = sampling.size or bb.image_size
    fixed = [
        f"{what} {want} (config asks for {got})"
        for what, want, got, strict in (
            ("frames", bb.num_frames, frames, bb.fixed_frames),
            ("px", bb.image_size, size, bb.fixed_size),
        )
        if strict and want != got
    ]
    if fixed:
        raise FeatureConfigError(
            f"sampling: {bb.name} takes exactly {' and '.join(fixed)}: its position embeddings "
            "are made for that; leave sampling.num_frames/size unset to use the backbone's"
        )
    bb.check_input(frames, size)
    if sampling.mode == "fps" and not sampling.fps:
        raise FeatureConfigError("sampling.fps: mode 'fps' needs a frame rate, e.g. sampling.fps=8")
    return frames, size


class ClipDataset(Dataset):
    """One sample per item: every view and crop the sampling asks for, as (V, C, T, 3, S, S) uint8.
    With `labels`, each item also carries its label and its index in the dataset."""

    def __init__(
        self, items: list[Item], sampling: SamplingConfig, num_frames: int, size: int, labels: list[int] | None = None
    ):
        self.items, self.s, self.t, self.size, self.labels = items, sampling, num_frames, size, labels
        self.picked: dict | None = None  # sampling.decoder=auto: this process's choice, once timed on its first samples
        self.trials: list[tuple[str, float]] = []

    def decoder(self) -> str:
        if self.s.decoder != "auto":
            return self.s.decoder
        return self.picked["decoder"] if self.picked else "decord"

    def timed_decode(self, i: int) -> tuple[torch.Tensor, ClipPlan]:
        """`sampling.decoder=auto` before this process has picked: decode sample `i` with the next decoder in turn,
        timing it (wall time: a decoder that waits leaves its core idle just as one that computes). Once each has
        AUTO_TRIALS timed samples and AUTO_SECONDS of them (or AUTO_MAX samples: tiny clips take milliseconds
        each, and a few of them, timed beside the other workers, are noise), the one with the lower median decodes
        the rest; nothing is decoded twice, and both give the same frames. Each DataLoader worker decides for
        itself, on the samples it got. Each decoder's first sample is left out: it pays one-off set-up (decord's:
        3x a sample)."""
        for module in ("av", "decord"):  # imported before timing: a cost only the first call would pay
            importlib.import_module(module)
        name = AUTO_DECODERS[len(self.trials) % len(AUTO_DECODERS)]
        start = time.perf_counter()
        out = self.decode(i, name)
        self.trials.append((name, time.perf_counter() - start))
        timed = {n: [s for m, s in self.trials if m == n][1:] for n in AUTO_DECODERS}
        enough = all(len(v) >= AUTO_MAX or (len(v) >= AUTO_TRIALS and sum(v) >= AUTO_SECONDS) for v in timed.values())
        if len(self.trials) % len(AUTO_DECODERS) == 0 and enough:
            ms = {n: round(1000 * float(np.median(v)), 1) for n, v in timed.items()}
            seconds = {n: round(sum(v), 3) for n, v in timed.items()}
            self.picked = {"decoder": min(ms, key=ms.get), "ms": ms, "seconds": seconds, "samples": len(self.trials)}
        return out

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        it = self.items[i]
        out = {"id": it.sample_id, "pixels": None, "plan": None, "error": None}
        if self.labels is not None:
            out.update(label=self.labels[i], index=i)
        try:
            if self.s.decoder == "auto" and self.picked is None and not it.rotation:
                out["pixels"], out["plan"] = self.timed_decode(i)
                if self.picked:
                    out["picked"] = self.picked
            else:
                out["pixels"], out["plan"] = self.decode(i)
        except VideoError as err:
            out["error"] = (err.kind, str(err))
        except Exception as err:  # noqa: BLE001 - any decoder failure is this file's; the batch goes on
            out["error"] = ("decode error", f"{it.path}: {err}")
        return out

    def decode(self, i: int, decoder: str | None = None) -> tuple[torch.Tensor, ClipPlan]:
        it = self.items[i]
        reader = open_video(it.path, it.rotation, decoder or self.decoder())
        p = plan(
            reader.timestamps(),
            self.t,
            mode=self.s.mode,
            views=self.s.views,
            fps=self.s.fps,
            window=self.s.window,
            stride=self.s.stride,
            start=it.start,
            end=it.end,
        )
        uniq, inverse = np.unique(p.indices, return_inverse=True)
        frames = reader.get(list(uniq))  # each distinct frame decoded once for all views
        x = resize_short_side(frames, self.size)
        x = crops(x, self.size, self.s.crops)[:, inverse.reshape(p.indices.shape)]  # (C, V, T, 3, S, S)
        return x.transpose(0, 1).contiguous(), p  # (V, C, T, 3, S, S)

    def with_views(self, views: int, crops: int) -> ClipDataset:
        """The same items decoded with another number of temporal views and spatial crops."""
        return ClipDataset(
            self.items, dataclasses.replace(self.s, views=views, crops=crops), self.t, self.size, self.labels
        )


class AugmentedClips(ClipDataset):
    """Training clips: one view over a jittered segment, a random resized crop, maybe flipped. Sample i's
    randomness comes from (augment.seed, epoch, i), whichever worker or rank decodes it; set `epoch`
    before each epoch."""

    def __init__(
        self,
        items: list[Item],
        sampling: SamplingConfig,
        num_frames: int,
        size: int,
        labels: list[int],
        augment: Augment,
    ):
        super().__init__(items, sampling, num_frames, size, labels)
        self.augment, self.epoch = augment, 0

    def decode(self, i: int, decoder: str | None = None) -> tuple[torch.Tensor, ClipPlan]:
        it, a = self.items[i], self.augment
        rng = a.rng(self.epoch, i)
        reader = open_video(it.path, it.rotation, decoder or self.decoder())
        ts = reader.timestamps()
        start, end = jitter_segment(ts, it.start, it.end, a.jitter, rng)
        p = plan(ts, self.t, mode=self.s.mode, fps=self.s.fps, start=start, end=end)
        uniq, inverse = np.unique(p.indices[0], return_inverse=True)
        x = random_resized_crop(reader.get(list(uniq))[inverse], self.size, list(a.crop_scale), rng)
        if a.flip and rng.random() < 0.5:
            x = x.flip(-1)
        return x[None, None], p  # (views 1, crops 1, T, 3, S, S), as ClipDataset gives


def collate(items: list[dict]) -> dict:
    """One tensor of all clips of the batch, built in the worker: one transfer per batch, not per sample.
    Labelled items also give `labels` (a tensor) and `index` (dataset indices) of the decoded samples."""
    good = [it for it in items if it["pixels"] is not None]
    out = {
        "clips": torch.cat([it["pixels"].flatten(0, 1) for it in good]) if good else None,  # (sum V*C, T, 3, S, S)
        "samples": [{"id": it["id"], "plan": it["plan"], "views": it["pixels"].shape[:2]} for it in good],
        "failed": [(it["id"], *it["error"]) for it in items if it["pixels"] is None],
        "picked": [it["picked"] for it in items if "picked" in it],  # sampling.decoder=auto: a process decided
    }
    if items and "label" in items[0]:
        out["labels"] = torch.tensor([it["label"] for it in good], dtype=torch.long)
        out["index"] = [it["index"] for it in good]
    return out


def worker_init(_: int, threads: int = 1) -> None:
    gc.freeze()  # what the parent left, garbage too, is never collected here (a parent's decoder can hang it)
    torch.set_num_threads(threads)  # workers that only decode take one thread: the model has the rest
    reuse_freed_memory()  # every batch allocates the same large blocks: reuse their pages, no faults
