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
import json
import math
import os
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from features.audio import SAMPLE_RATE, load_audio
from features.store import FeatureSet, StoreError, stage_attrs, write_whole
from pipeline.audio import audio_dir, samples_with_audio
from pipeline.config import Config, ConfigError

FRAME_SECONDS = 0.02  # one Whisper encoder frame (mel hop 10 ms, conv stride 2)
WINDOW = 30 * SAMPLE_RATE


def model_tag(cfg: Config) -> str:
    return "tiny.en" if not cfg.transcribe.model else Path(str(cfg.transcribe.model).rstrip("/")).name


def name(cfg: Config) -> str:
    return cfg.transcribe.feature_set or f"whisper-{model_tag(cfg)}"


def model_cache(cfg: Config) -> Path:
    """Where a CTranslate2 Whisper folder converted for openai-whisper is kept (by content hash)."""
    return Path(cfg.paths.cache) / "models" / "whisper"


def transcripts_path(cfg: Config) -> Path:
    return Path(cfg.paths.cache) / cfg.dataset.name / "transcripts" / f"{name(cfg)}.jsonl"


def encoder_frames(model, audio: np.ndarray) -> torch.Tensor:
    """(frames, D) Whisper encoder states of the real audio only: 30 s windows, each trimmed of its padding."""
    import whisper

    out = []
    for at in range(0, len(audio), WINDOW):
        piece = torch.from_numpy(audio[at : at + WINDOW])
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(piece), model.dims.n_mels)
        with torch.inference_mode():
            states = model.embed_audio(mel[None].to(model.device))[0].float().cpu()
        out.append(states[: math.ceil(len(piece) / (SAMPLE_RATE * FRAME_SECONDS))])
    return torch.cat(out) if out else torch.zeros(0, model.dims.n_audio_state)


def window_means(frames: torch.Tensor, offset: float, edges: np.ndarray) -> torch.Tensor:
    """Mean of the frames whose centre falls in each [edges[j], edges[j+1]) (seconds, video clock);
    a window with no frame centre takes the nearest frame."""
    centres = offset + (np.arange(len(frames)) + 0.5) * FRAME_SECONDS
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = np.nonzero((centres >= lo) & (centres < hi))[0]
        if not len(inside):
            inside = [int(np.abs(centres - (lo + hi) / 2).argmin())]
        rows.append(frames[inside].mean(0))
    return torch.stack(rows)


def video_rows(cfg: Config) -> tuple[list[str], list[str], np.ndarray | None, int]:
    """(row ids, their source sample ids, spans (N, 2) or None, temporal steps) of the video feature set,
    or of the manifest's samples when there is none."""
    try:
        fs = FeatureSet(cfg.feature_dir())
    except StoreError:
        return [], [], None, 0
    ids = fs.ids
    sources = list(fs.get("source_id", ids).astype(str)) if "source_id" in fs.keys else ids
    spans = fs.get("span", ids).reshape(len(ids), -1, 2) if "span" in fs.keys else None
    steps = fs.keys.get("video/temporal", (0,))[-2] if "video/temporal" in fs.keys else 0
    if spans is not None:
        spans = np.stack([spans[:, :, 0].min(1), spans[:, :, 1].max(1)], axis=1)  # views: their whole extent
    return ids, sources, spans, steps


def run(cfg: Config) -> dict:
    from features.speech import Transcriber, load_openai_whisper, tiny_en_ct2, write_srt, write_vtt

    t = cfg.transcribe
    bad = sorted(set(t.subtitles) - {"srt", "vtt"})
    if bad:
        raise ConfigError(f"transcribe.subtitles: {bad} unknown; choose from srt, vtt")
    samples = samples_with_audio(cfg)
    try:
        asr = Transcriber(t.backend, t.model, language=t.language, word_timestamps=t.word_timestamps,
                          beam_size=t.beam_size, compute_type=t.compute_type, cache_dir=model_cache(cfg))
    except FileNotFoundError as err:
        raise ConfigError(f"transcribe.model: {err}") from None

    out = transcripts_path(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    records, waves = [], {}
    for row in tqdm(samples.itertuples(index=False), total=len(samples), desc=f"transcribe {t.backend}",
                    unit="sample", dynamic_ncols=True):
        rec = {"sample_id": row.sample_id, "has_audio": bool(row.has_audio) and row.status == "ok",
               "language": None, "text": "", "segments": []}
        if rec["has_audio"]:
            wave = load_audio(audio_dir(cfg) / row.file)
            waves[row.sample_id] = (wave, float(row.start))
            rec.update(asr.transcribe(wave, offset=float(row.start)))
        records.append(rec)
        for fmt, writer in (("srt", write_srt), ("vtt", write_vtt)):
            if fmt in t.subtitles:
                path = out.parent / name(cfg) / f"{row.sample_id}.{fmt}"
                path.parent.mkdir(parents=True, exist_ok=True)
                writer(rec["segments"], path)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, out)
    spoken = sum(bool(r["text"]) for r in records)
    print(f"transcribe: {len(records)} samples ({spoken} with speech, "
          f"{sum(not r['has_audio'] for r in records)} without audio) by {asr.model_id} -> {out}")
    result = {"transcripts": out, "records": len(records)}
    if t.embed:  # the encoder of the same weights, through openai-whisper (CTranslate2 folders converted)
        model = load_openai_whisper(str(t.model or tiny_en_ct2()), cache_dir=model_cache(cfg))
        result["features"] = embed_audio(cfg, model, asr.model_id, samples, waves)
    return result


def embed_audio(cfg: Config, model, model_id: str, samples, waves: dict) -> Path:
    """Whisper encoder features, aligned with the video feature set's rows when it exists."""
    ids, sources, spans, steps = video_rows(cfg)
    if not ids:  # no video features yet: one row per sample
        ids = sources = list(samples.sample_id)
    dim = model.dims.n_audio_state

    def features() -> dict[str, np.ndarray]:
        pooled = np.zeros((len(ids), dim), np.float32)
        temporal = np.zeros((len(ids), max(steps, 1), dim), np.float32)
        present = np.zeros(len(ids), bool)
        cache: dict[str, torch.Tensor] = {}
        for i, src in enumerate(tqdm(sources, desc="whisper encoder", unit="row", dynamic_ncols=True)):
            if src not in waves:
                continue
            wave, offset = waves[src]
            if src not in cache:
                cache[src] = encoder_frames(model, wave)
            frames = cache[src]
            if not len(frames):
                continue
            lo, hi = (spans[i] if spans is not None else (offset, offset + len(wave) / SAMPLE_RATE))
            own = torch.from_numpy(np.asarray(offset + (np.arange(len(frames)) + 0.5) * FRAME_SECONDS))
            keep = (own >= lo) & (own < hi)
            pooled[i] = (frames[keep] if keep.any() else frames).mean(0).numpy()
            if steps:
                temporal[i] = window_means(frames, offset, np.linspace(lo, hi, steps + 1)).numpy()
            present[i] = True
        return {"audio/pooled": pooled, "audio/present": present, **({"audio/temporal": temporal} if steps else {})}

    config = {"transcribe": dataclasses.asdict(cfg.transcribe), "model": model_id, "rows": ids,
              "video_feature_set": cfg.feature_dir().name if steps else None}
    attrs = stage_attrs(config, {"model": model_id, "pooling": "mean over the encoder frames of real audio (20 ms each)",
                                 "temporal": f"aligned with {cfg.feature_dir().name}/video/temporal" if steps else None,
                                 "versions": {p: version(p) for p in ("torch", "openai-whisper", "h5py")}})
    out = cfg.feature_dir().parent / name(cfg)
    written = write_whole(out, attrs, ids, features)  # the encoder runs only when the set is not there yet
    with_audio = sum(src in waves for src in sources)
    print(f"whisper encoder: {with_audio} of {len(ids)} rows with audio, {dim}-d -> {out}"
          + ("" if written else " (already there)"))
    return out
