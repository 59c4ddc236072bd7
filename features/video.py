"""Decoding and frame sampling. decord is the decoder; stages only see `probe` and `read_frames`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class VideoInfo:
    num_frames: int
    fps: float
    duration: float
    width: int
    height: int


def _reader(path: str):
    import decord  # imported here so that DataLoader workers each open their own

    return decord.VideoReader(path, num_threads=1)


def probe(path: str) -> VideoInfo:
    """Open a video and read its frame count, rate and size; raises on unreadable files."""
    vr = _reader(path)
    n = len(vr)
    if n == 0:
        raise ValueError("video has no frames")
    fps = float(vr.get_avg_fps())
    h, w = vr[0].shape[:2]
    return VideoInfo(num_frames=n, fps=fps, duration=n / fps if fps > 0 else 0.0, width=w, height=h)


def uniform_indices(num_frames: int, t: int, first: int = 0, last: int | None = None) -> np.ndarray:
    """`t` frame indices at the centres of `t` equal segments of [first, last).

    Shorter videos repeat frames (the same index appears more than once), never read past the end.
    """
    last = num_frames if last is None else min(last, num_frames)
    span = max(last - first, 1)
    idx = first + np.floor((np.arange(t) + 0.5) * span / t).astype(np.int64)
    return np.clip(idx, 0, num_frames - 1)


def read_frames(path: str, t: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Uniformly sample `t` RGB frames: returns (frames (t, H, W, 3) uint8, indices, fps)."""
    vr = _reader(path)
    idx = uniform_indices(len(vr), t)
    frames = vr.get_batch(list(idx)).asnumpy()
    return frames, idx, float(vr.get_avg_fps())


def resize_crop(frames: np.ndarray, size: int) -> torch.Tensor:
    """Shorter side to `size`, then a centre crop: (T, H, W, 3) uint8 -> (T, 3, size, size) float in [0, 1]."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, :, top : top + size, left : left + size]


def normalize(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    mean_t = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean_t) / std_t
