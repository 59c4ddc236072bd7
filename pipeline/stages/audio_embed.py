"""`vidprobe audio-embed`: audio encoder features (wav2vec2, HuBERT, WavLM, AST, CLAP) into the feature store.

Reads the FLAC clips `vidprobe audio` cut. The rows are the video feature set's rows when it exists (one
per sample, or one per window), pooled over each row's span exactly as the Whisper encoder's are
(features/rows.py), so heads fuse them row by row: `audio/pooled` (N, D), `audio/temporal` (N, T', D) over
the same time windows as `video/temporal`, `audio/present` false for samples without audio (zeros, masked).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path

import numpy as np
from vidprobe import layout
from vidprobe.artifacts import read_audio_index, video_set, writing
from vidprobe.config import Config
from vidprobe.features.audio import SAMPLE_RATE, load_audio
from vidprobe.features.audio_encoders import AudioEncoder, load_audio_encoder
from vidprobe.features.rows import StoredRows, align_frames, stored_rows
from vidprobe.features.store import stage_attrs, write_whole


class Waves(Mapping):
    """sample_id -> (16 kHz wave, start on the video clock), decoded when asked (only when the set is written,
    one sample at a time; a sample's window rows come one after another)."""

    def __init__(self, files: dict[str, tuple[Path, float]]):
        self.files = files
        self.last: tuple[str, np.ndarray] | None = None

    def __getitem__(self, sample_id: str) -> tuple[np.ndarray, float]:
        path, start = self.files[sample_id]
        if self.last is None or self.last[0] != sample_id:
            self.last = (sample_id, load_audio(path))
        return self.last[1], start

    def __contains__(self, sample_id) -> bool:  # Mapping's would decode the audio
        return sample_id in self.files

    def __iter__(self):
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


def run(cfg: Config) -> dict:
    a = cfg.audio_embed
    out = layout.feature_set(cfg, layout.audio_set_name(cfg))
    encoder = load_audio_encoder(a.encoder, a.model, a.chunk_seconds)  # a bad model fails before any lock
    with writing(cfg, out, f"audio features {layout.audio_set_name(cfg)}"):
        return embed_audio(cfg, encoder, out)


def embed_audio(cfg: Config, encoder: AudioEncoder, out: Path) -> dict:
    """The encoder's frames of every sample with audio, pooled over the video feature set's rows (one row per
    sample when there is none), written to `out` unless it already holds them."""
    a = cfg.audio_embed
    samples = read_audio_index(cfg)
    waves = Waves(
        {
            row.sample_id: (layout.audio_dir(cfg) / row.file, float(row.start))
            for row in samples.itertuples(index=False)
            if bool(row.has_audio) and row.status == "ok"
        }
    )
    rows = stored_rows(video_set(cfg))
    if not rows:  # no video features yet: one row per sample
        rows = StoredRows(list(samples.sample_id), list(samples.sample_id), None, 0)
    video = layout.video_set_name(cfg)

    def features() -> dict:
        pooled, temporal, present = align_frames(
            encoder.frames,
            rows,
            waves,
            SAMPLE_RATE,
            encoder.frame_seconds,
            encoder.dim,
            desc=f"audio-embed {a.encoder}",
        )
        return {
            "audio/pooled": pooled,
            "audio/present": present,
            **({"audio/temporal": temporal} if rows.steps else {}),
        }

    config = {
        "audio_embed": {k: v for k, v in dataclasses.asdict(a).items() if k != "feature_set"},
        "model": encoder.weights,
        "feature_extractor": encoder.extractor.to_dict(),
        "pooling": encoder.pooling,
        "rows": rows.ids,
        "video_feature_set": video if rows.steps else None,
    }  # any change: rebuilt
    attrs = stage_attrs(
        config,
        {
            "encoder": a.encoder,
            "weights": encoder.weights,
            "pooling": encoder.pooling,
            "sampling_rate": encoder.rate,
            "frame_seconds": encoder.frame_seconds,
            "temporal": f"aligned with {video}/video/temporal" if rows.steps else None,
            "versions": {p: version(p) for p in ("torch", "transformers", "h5py")},
        },
    )
    written = write_whole(out, attrs, rows.ids, features, cfg.paths.lock_timeout)  # the encoder runs only when needed
    with_audio = sum(src in waves for src in rows.sources)
    print(
        f"audio-embed {a.encoder}: {with_audio} of {len(rows.ids)} rows with audio, {encoder.dim}-d -> {out}"
        + ("" if written else " (already there)")
    )
    return {"dir": Path(out), "rows": len(rows.ids), "with_audio": with_audio, "written": written}
