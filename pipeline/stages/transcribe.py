"""`vidprobe transcribe`: Whisper transcripts (JSONL, optional SRT/VTT) and Whisper encoder embeddings.

Reads the FLAC clips `vidprobe audio` cut. Per sample, one JSONL record: `sample_id`, `has_audio`,
`language`, `text`, `segments` (`start`, `end`, `text`, `avg_logprob`, `no_speech_prob`, `words`
when asked), times on the video's clock (the sample's `start` added).

Encoder embeddings go to a feature set of their own, `<cache>/<dataset>/<transcribe.feature_set>/`:
`audio/pooled` (N, D) is the mean over the encoder frames that hold real audio (Whisper pads every
input to 30 s; its 1500 frames are 20 ms each, so a 3 s clip keeps the first 150), longer audio is
encoded 30 s at a time. When the video feature set of this config exists, the rows are its rows
(one per sample, or one per window), and `audio/temporal` (N, T', D) pools the same frames over
the same time windows as its `video/temporal`, so video and audio line up row for row.
`audio/present` is false for samples without audio: their rows are zeros and heads mask them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from importlib.metadata import version
from pathlib import Path

from tqdm import tqdm
from vidprobe import layout
from vidprobe.artifacts import read_audio_index, read_manifest, video_set, writing
from vidprobe.config import Config
from vidprobe.features.audio import load_audio
from vidprobe.features.files import write_text
from vidprobe.features.rows import StoredRows, align_frames, stored_rows
from vidprobe.features.speech import (
    FRAME_SECONDS,
    SAMPLE_RATE,
    Transcriber,
    encoder_frames,
    load_openai_whisper,
    tiny_en_ct2,
    write_srt,
    write_vtt,
)
from vidprobe.features.store import stage_attrs, write_whole

SUBTITLES = {"srt": write_srt, "vtt": write_vtt}


def run(cfg: Config) -> dict:
    """Both models are loaded before any audio is read: one that cannot be is exit 2 at once (load_config has
    checked the settings)."""
    t = cfg.transcribe
    asr = Transcriber(
        t.backend,
        t.model,
        language=t.language,
        word_timestamps=t.word_timestamps,
        beam_size=t.beam_size,
        compute_type=t.compute_type,
        cache_dir=layout.model_cache(cfg),
    )
    encoder = load_openai_whisper(str(t.model or tiny_en_ct2()), cache_dir=layout.model_cache(cfg)) if t.embed else None
    samples = read_audio_index(cfg)
    with writing(cfg, layout.transcripts(cfg), f"transcripts {layout.whisper_set_name(cfg)}"):
        return transcribe(cfg, asr, samples, encoder)


def pack_groups(cfg: Config) -> dict[str, tuple]:
    """sample_id -> what packed clips must share (transcribe.pack): the split and the source, that is the
    dataset's `group` column where it has one (a dialogue, a subject), else the video file (segments of one
    video, such as utterances with start and end)."""
    m = read_manifest(cfg)
    source = m["group"] if "group" in m else m["path"]
    return dict(zip(m.sample_id, zip(m.split.astype(str), source.astype(str))))


def transcribe(cfg: Config, asr: Transcriber, samples, encoder) -> dict:
    t = cfg.transcribe
    records, waves = [], {}
    rows = list(samples.itertuples(index=False))
    source = pack_groups(cfg)
    with tqdm(total=len(rows), desc=f"transcribe {t.backend}", unit="sample", dynamic_ncols=True) as bar:
        for at in range(0, len(rows), t.batch_size):  # batch_size samples read, then transcribed together
            chunk = [
                {
                    "sample_id": row.sample_id,
                    "has_audio": bool(row.has_audio) and row.status == "ok",
                    "language": None,
                    "text": "",
                    "segments": [],
                }
                for row in rows[at : at + t.batch_size]
            ]
            spoken = [(rec, row) for rec, row in zip(chunk, rows[at : at + t.batch_size]) if rec["has_audio"]]
            for _, row in spoken:
                waves[row.sample_id] = (load_audio(layout.audio_dir(cfg) / row.file), float(row.start))
            said = asr.transcribe_many(
                [waves[row.sample_id][0] for _, row in spoken],
                [float(row.start) for _, row in spoken],
                batch_size=t.batch_size,
                pack=t.pack,
                pack_gap=t.pack_gap,
                groups=None if t.pack_across else [source[row.sample_id] for _, row in spoken],
            )
            for (rec, _), result in zip(spoken, said, strict=True):
                rec.update(result)
            for rec in chunk:
                for fmt in t.subtitles:
                    path = layout.subtitles(cfg, rec["sample_id"], fmt)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    SUBTITLES[fmt](rec["segments"], path)
            records.extend(chunk)
            bar.update(len(chunk))
    out = layout.transcripts(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    spoken = sum(bool(r["text"]) for r in records)
    print(
        f"transcribe: {len(records)} samples ({spoken} with speech, "
        f"{sum(not r['has_audio'] for r in records)} without audio) by {asr.model_id} -> {out}"
    )
    result = {"transcripts": out, "records": len(records)}
    if encoder is not None:  # the encoder of the same weights, through openai-whisper (CTranslate2 folders converted)
        result["features"] = embed_audio(cfg, encoder, asr.model_id, list(samples.sample_id), waves)
    return result


def embed_audio(cfg: Config, model, model_id: str, sample_ids: list[str], waves: dict) -> Path:
    """Whisper encoder features, aligned with the video feature set's rows when it exists."""
    rows = stored_rows(video_set(cfg))
    if not rows:  # no video features yet: one row per sample
        rows = StoredRows(sample_ids, sample_ids, None, 0)
    dim = model.dims.n_audio_state
    video = layout.video_set_name(cfg)

    def features() -> dict:
        pooled, temporal, present = align_frames(
            functools.partial(encoder_frames, model),
            rows,
            waves,
            SAMPLE_RATE,
            FRAME_SECONDS,
            dim,
            desc="whisper encoder",
        )
        return {
            "audio/pooled": pooled,
            "audio/present": present,
            **({"audio/temporal": temporal} if rows.steps else {}),
        }

    grouping = ("batch_size", "pack", "pack_gap", "pack_across")  # how clips are grouped: same encoder features
    settings = {k: v for k, v in dataclasses.asdict(cfg.transcribe).items() if k not in grouping}
    config = {
        "transcribe": settings,
        "model": model_id,
        "rows": rows.ids,
        "video_feature_set": video if rows.steps else None,
    }
    attrs = stage_attrs(
        config,
        {
            "model": model_id,
            "pooling": "mean over the encoder frames of real audio (20 ms each)",
            "temporal": f"aligned with {video}/video/temporal" if rows.steps else None,
            "versions": {p: version(p) for p in ("torch", "openai-whisper", "h5py")},
        },
    )
    out = layout.feature_set(cfg, layout.whisper_set_name(cfg))
    written = write_whole(out, attrs, rows.ids, features, cfg.paths.lock_timeout)  # the encoder runs only when needed
    with_audio = sum(src in waves for src in rows.sources)
    print(
        f"whisper encoder: {with_audio} of {len(rows.ids)} rows with audio, {dim}-d -> {out}"
        + ("" if written else " (already there)")
    )
    return out
