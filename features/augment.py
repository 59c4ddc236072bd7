"""Training-time augmentation of clips: the segment's ends jittered, a random resized crop, a horizontal flip
(per sample, in the decoding workers), and VideoMix across a batch (on the device).

Every draw comes from a generator seeded by (seed, epoch, sample index), so a sample is augmented the
same way whichever worker or rank decodes it, and a resumed run draws what an unbroken one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from vidprobe.features.video import crops, resize_short_side


@dataclass
class Augment:
    """What a training clip goes through; `seed` makes the draws repeatable."""

    seed: int = 0
    crop_scale: tuple[float, float] = (1.0, 1.0)  # a random resized crop's area share; (1, 1): centre crop
    flip: bool = False  # horizontal flip with probability 1/2
    jitter: float = 0.0  # each end of the segment moves by up to this share of its length

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, index])


def jitter_segment(
    ts: np.ndarray, start: float | None, end: float | None, jitter: float, rng: np.random.Generator
) -> tuple[float | None, float | None]:
    """The sample's [start, end] with each end moved by up to +-jitter of its length, kept inside the video."""
    if jitter <= 0:
        return start, end
    step = float(np.median(np.diff(ts))) if len(ts) > 1 else 0.0
    lo, hi = float(ts[0]), float(ts[-1]) + step
    s, e = (lo if start is None else start), (hi if end is None else end)
    length = e - s
    s2 = min(max(s + rng.uniform(-jitter, jitter) * length, lo), hi)
    e2 = min(max(e + rng.uniform(-jitter, jitter) * length, lo), hi)
    return (s2, e2) if e2 > s2 else (start, end)


def random_resized_crop(frames: np.ndarray, size: int, scale: list[float], rng: np.random.Generator) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size) uint8: a region of a random share in `scale` of the frame area
    (aspect 3/4 to 4/3, as torchvision's RandomResizedCrop), resized. scale [1, 1]: evaluation's centre crop."""
    lo, hi = scale
    if lo >= 1.0:
        return crops(resize_short_side(frames, size), size, 1)[0]
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left, ch, cw = (h - side) // 2, (w - side) // 2, side, side  # if no draw fits: the centre square
    for _ in range(10):
        area = h * w * rng.uniform(lo, hi)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        tw, th = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < tw <= w and 0 < th <= h:
            top, left, ch, cw = int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1)), th, tw
            break
    region = x[:, :, top : top + ch, left : left + cw]
    return F.interpolate(region, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def videomix(
    x: torch.Tensor, y: torch.Tensor, mode: str, alpha: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """VideoMix (Yun et al. 2020) on a normalised batch (B, T, 3, H, W): each clip takes a part of another
    clip of the batch, `spatial` a box through all frames (CutMix in space), `temporal` a run of frames;
    the share kept, lam ~ Beta(alpha, alpha), weighs the two labels. Returns (mixed x, other labels, lam);
    mode "none" (or a batch of one) gives x, y and lam = 1."""
    if mode == "none" or len(x) < 2:
        return x, y, 1.0
    lam = float(np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=gen))).beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=gen).to(x.device)
    x = x.clone()
    t, h, w = x.shape[1], x.shape[3], x.shape[4]

    def pick(n: int, size: int) -> int:  # where a part of `size` starts along an axis of `n`
        return int(torch.randint(0, n - size + 1, (1,), generator=gen))

    if mode == "spatial":
        bh, bw = round(h * math.sqrt(1 - lam)), round(w * math.sqrt(1 - lam))
        top, left = pick(h, bh), pick(w, bw)
        x[:, :, :, top : top + bh, left : left + bw] = x[perm][:, :, :, top : top + bh, left : left + bw]
        lam = 1 - bh * bw / (h * w)
    else:
        n = round(t * (1 - lam))
        start = pick(t, n)
        x[:, start : start + n] = x[perm][:, start : start + n]
        lam = 1 - n / t
    return x, y[perm], lam
