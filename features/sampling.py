"""Which frames to read: per sample, K views (or sliding windows) of T frames each.

All times are seconds on the video's own clock, taken from the decoder's frame timestamps, so
variable-frame-rate videos and `[start, end]` segments are sampled where the frames really are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Item:
    """One sample to decode: a video (or its [start, end] segment) and its display rotation."""

    sample_id: str
    path: str
    start: float | None = None
    end: float | None = None
    rotation: int = 0


@dataclass
class ClipPlan:
    indices: np.ndarray  # (V, T) frame indices, V = views (or windows)
    times: np.ndarray  # (V, T) timestamps of those frames
    padded: np.ndarray  # (V,) how many of the T frames repeat the last real frame
    spans: np.ndarray  # (V, 2) start/end seconds each view or window covers


def segment_frames(ts: np.ndarray, start: float | None, end: float | None) -> np.ndarray:
    """Indices of the frames whose timestamps fall in [start, end) (all frames when both are None)."""
    lo = -np.inf if start is None else start
    hi = np.inf if end is None else end
    idx = np.nonzero((ts >= lo - 1e-6) & (ts < hi - 1e-6))[0]
    if len(idx) == 0:
        nearest = int(np.argmin(np.abs(ts - lo))) if start is not None else 0
        idx = np.array([nearest])
    return idx


def pad_last(idx: np.ndarray, t: int) -> tuple[np.ndarray, int]:
    """Exactly `t` indices: the first `t`, or all of them then the last one repeated."""
    if len(idx) >= t:
        return idx[:t], 0
    return np.concatenate([idx, np.full(t - len(idx), idx[-1])]), t - len(idx)


def uniform(frames: np.ndarray, t: int, views: int) -> list[tuple[np.ndarray, int]]:
    """`t` frames spread over the segment; view k takes offset (k + 0.5) / views inside each step."""
    m = len(frames)
    if m < t:
        return [pad_last(frames, t)] * views
    out = []
    for k in range(views):
        pos = np.floor((np.arange(t) + (k + 0.5) / views) * m / t).astype(np.int64)
        out.append((frames[np.clip(pos, 0, m - 1)], 0))
    return out


def at_rate(frames: np.ndarray, ts: np.ndarray, t: int, rate: float, t0: float) -> tuple[np.ndarray, int]:
    """`t` frames at `rate` per second from time `t0`: the last frame at or before each wanted time."""
    seg_ts = ts[frames]
    wanted = t0 + np.arange(t) / rate
    inside = wanted <= seg_ts[-1] + 1e-6
    pos = np.searchsorted(seg_ts, wanted[inside] + 1e-6, side="right") - 1
    return pad_last(frames[np.clip(pos, 0, len(frames) - 1)], t)


def plan(
    ts: np.ndarray,
    t: int,
    *,
    mode: str = "uniform",
    views: int = 1,
    fps: float | None = None,
    window: float = 2.0,
    stride: float = 1.0,
    start: float | None = None,
    end: float | None = None,
) -> ClipPlan:
    """Frames to read for one sample with frame timestamps `ts`, over its [start, end] segment."""
    frames = segment_frames(ts, start, end)
    step = float(np.median(np.diff(ts))) if len(ts) > 1 else 0.0
    seg_start, seg_end = float(ts[frames[0]]), float(ts[frames[-1]]) + step
    if mode == "uniform":
        picks = uniform(frames, t, views)
        spans = [(seg_start, seg_end)] * views
    elif mode == "fps":
        length = t / fps
        room = max(seg_end - seg_start - length, 0.0)
        starts = [seg_start + room * (k + 0.5) / views for k in range(views)]  # views spread over the segment
        picks = [at_rate(frames, ts, t, fps, s) for s in starts]
        spans = [(s, min(s + length, seg_end)) for s in starts]
    elif mode == "windows":
        starts = np.arange(seg_start, max(seg_end - 1e-6, seg_start + 1e-6), stride)
        picks, spans = [], []
        for s in starts:
            inside = frames[(ts[frames] >= s - 1e-6) & (ts[frames] < s + window - 1e-6)]
            if len(inside) == 0:
                continue
            picks.append(at_rate(inside, ts, t, fps, s) if fps else uniform(inside, t, 1)[0])
            spans.append((float(s), min(float(s) + window, seg_end)))
    else:
        raise ValueError(f"unknown sampling mode {mode!r}")
    indices = np.stack([p[0] for p in picks]).astype(np.int64)
    return ClipPlan(
        indices=indices,
        times=ts[indices],
        padded=np.array([p[1] for p in picks], dtype=np.int32),
        spans=np.array(spans, dtype=np.float64),
    )
