"""Rows of a video feature set, and lining other modalities up with them.

`embed` stores one row per sample (views and crops as axes), or one row per window in windows mode
(`<sample_id>#w<j>`, with `source_id` naming the sample). Each row records the frames it was made of and
the `span` (start, end seconds, on the video's clock) it covers. Audio and transcript features are
stored with the same rows, pooled over the same spans, so heads can fuse modalities row by row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm
from vidprobe.features.sampling import ClipPlan
from vidprobe.features.store import FeatureSet

WINDOW_ID = re.compile(r"#w\d+$")


def source_of(row_id: str) -> str:
    """The sample a stored row comes from: itself, or the video a `<sample_id>#w<j>` window is cut from."""
    return WINDOW_ID.sub("", row_id)


def sample_rows(
    sample_id: str, p: ClipPlan, feats: dict[str, np.ndarray], windows: bool
) -> tuple[list[str], dict[str, np.ndarray]]:
    """The stored rows of one embedded sample: `feats` are (V, C, ...) per key; one row, or one per window."""
    v, c = feats[next(iter(feats))].shape[:2]
    meta = {
        "frame_indices": p.indices.astype(np.int32),
        "frame_times": p.times.astype(np.float32),
        "num_padded": p.padded,
        "span": p.spans.astype(np.float32),
    }
    if windows:
        ids = [f"{sample_id}#w{j:04d}" for j in range(v)]
        out = {k: (a[:, 0] if c == 1 else a) for k, a in feats.items()}
        out.update(meta)
        out["source_id"] = np.asarray([sample_id] * v, dtype=object)
        return ids, out
    squeeze = v == 1 and c == 1
    out = {k: (a[0, 0] if squeeze else a)[None] for k, a in feats.items()}
    out.update({k: (a[0] if v == 1 else a)[None] for k, a in meta.items()})
    return [sample_id], out


@dataclass
class StoredRows:
    """The rows of a video feature set, read back: what other modalities align to."""

    ids: list[str]  # row ids
    sources: list[str]  # the sample each row comes from (itself, unless a window)
    spans: np.ndarray | None  # (N, 2) seconds each row covers (its views' whole extent); None: unknown
    steps: int  # time steps of `video/temporal` (0: none stored)

    def __bool__(self) -> bool:
        return bool(self.ids)


def stored_rows(fs: FeatureSet | None) -> StoredRows:
    """The rows of `fs`, or no rows when there is no video feature set."""
    if fs is None:
        return StoredRows([], [], None, 0)
    ids = fs.ids
    sources = list(fs.get("source_id", ids).astype(str)) if "source_id" in fs.keys else ids
    spans = fs.get("span", ids).reshape(len(ids), -1, 2) if "span" in fs.keys else None
    steps = fs.keys["video/temporal"][-2] if "video/temporal" in fs.keys else 0
    if spans is not None:
        spans = np.stack([spans[:, :, 0].min(1), spans[:, :, 1].max(1)], axis=1)  # views: their whole extent
    return StoredRows(ids, sources, spans, steps)


def window_means(frames: torch.Tensor, centres: np.ndarray, edges: np.ndarray) -> torch.Tensor:
    """Mean of the frames whose centre time falls in each [edges[j], edges[j+1]); a window with no frame
    centre takes the nearest frame."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = np.nonzero((centres >= lo) & (centres < hi))[0]
        if not len(inside):
            inside = [int(np.abs(centres - (lo + hi) / 2).argmin())]
        rows.append(frames[inside].mean(0))
    return torch.stack(rows)


def row_texts(rows: StoredRows, records: dict[str, dict]) -> list[str]:
    """Per row, what was said in it: the sample's transcript segments (a window: those overlapping its span)."""
    texts = []
    for i, src in enumerate(rows.sources):
        segments = records.get(src, {}).get("segments", [])
        if rows.spans is not None and "#w" in rows.ids[i]:
            lo, hi = rows.spans[i]
            segments = [s for s in segments if s["end"] > lo and s["start"] < hi]
        texts.append(" ".join(s["text"] for s in segments).strip())
    return texts


def align_frames(
    frames_of,
    rows: StoredRows,
    waves: dict[str, tuple[np.ndarray, float]],
    sample_rate: int,
    frame_seconds: float,
    dim: int,
    desc: str = "align",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame features of each row's source audio, pooled over the row's span: (pooled (N, D), temporal
    (N, steps, D) over the same time windows as the row's `video/temporal`, present (N,)).

    `frames_of(wave)` gives (frames, D) features, `frame_seconds` apart from the start of `wave`; `waves`
    maps a source sample to (wave at `sample_rate`, its start on the video clock). A row whose source has no
    audio stays zeros and not present. A row with no span (no video feature set) covers its whole audio.
    """
    n = len(rows.ids)
    pooled = np.zeros((n, dim), np.float32)
    temporal = np.zeros((n, max(rows.steps, 1), dim), np.float32)
    present = np.zeros(n, bool)
    cache: dict[str, torch.Tensor] = {}
    for i, src in enumerate(tqdm(rows.sources, desc=desc, unit="row", dynamic_ncols=True)):
        if src not in waves:
            continue
        wave, offset = waves[src]
        if src not in cache:
            cache[src] = frames_of(wave)
        frames = cache[src]
        if not len(frames):
            continue
        lo, hi = rows.spans[i] if rows.spans is not None else (offset, offset + len(wave) / sample_rate)
        centres = np.asarray(offset + (np.arange(len(frames)) + 0.5) * frame_seconds)
        own = torch.from_numpy(centres)
        keep = (own >= lo) & (own < hi)
        pooled[i] = (frames[keep] if keep.any() else frames).mean(0).numpy()
        if rows.steps:
            temporal[i] = window_means(frames, centres, np.linspace(lo, hi, rows.steps + 1)).numpy()
        present[i] = True
    return pooled, temporal, present
