"""Transcription with Whisper through either backend, with the same deterministic decoding (see
`vidprobe.features.speech`), clips under 30 s decoded in batches and, when asked, packed into shared windows;
and Whisper's encoder features of real audio."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
from vidprobe.features.errors import FeatureConfigError
from vidprobe.features.speech.models import _load_checkpoint, _resolve_openai, load_faster, tiny_en_ct2

SAMPLE_RATE = 16_000
BACKENDS = ("openai-whisper", "faster-whisper")

# Decoding settings shared by both backends (see the module docstring).
NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0
COMPRESSION_RATIO_THRESHOLD = 2.4


FRAME_SECONDS = 0.02  # one Whisper encoder frame (mel hop 10 ms, conv stride 2)
WINDOW = 30 * SAMPLE_RATE  # Whisper pads or trims every input to 30 s
PACK_MAX = 10 * SAMPLE_RATE  # longer clips are never packed (Transcriber.transcribe_many)
PACK_GAP = 1.0  # seconds of silence between packed clips (Whisper keeps the utterances apart)
CPU_ENCODE_BATCH = 2  # windows per encoder call on a CPU (Transcriber._faster_many)


def encoder_frames(model, audio: np.ndarray):
    """(frames, D) Whisper encoder states of the real audio only: 30 s windows, each trimmed of its padding
    (a 3 s clip keeps the first 150 of the 1500 frames of its window)."""
    import math

    import torch
    import whisper

    out = []
    for at in range(0, len(audio), WINDOW):
        piece = torch.from_numpy(audio[at : at + WINDOW])
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(piece), model.dims.n_mels)
        with torch.inference_mode():
            states = model.embed_audio(mel[None].to(model.device))[0].float().cpu()
        out.append(states[: math.ceil(len(piece) / (SAMPLE_RATE * FRAME_SECONDS))])
    return torch.cat(out) if out else torch.zeros(0, model.dims.n_audio_state)


# ----------------------------------------------------------------------------- transcription


def _clamp(t: float, lo: float, hi: float) -> float:
    return round(min(max(float(t), lo), hi), 3)


def _packs(lengths: list[int], gap: int, groups: list | None = None) -> list[list[int]]:
    """Positions of consecutive clips grouped into windows of at most 30 s with ``gap`` samples between clips;
    a clip over ``PACK_MAX`` samples is a window of its own, and so is one with no room beside its neighbours.
    With ``groups`` (a key per clip), a window holds clips of one key only."""
    packs: list[list[int]] = []
    used = WINDOW  # samples taken in the last window: full before the first one
    for k, n in enumerate(lengths):
        same = groups is None or (k > 0 and groups[k] == groups[k - 1])
        if n <= PACK_MAX and same and used + gap + n <= WINDOW:
            packs[-1].append(k)
            used += gap + n
        else:
            packs.append([k])
            used = n if n <= PACK_MAX else WINDOW
    return packs


def _unpack(raw: list[dict], spans: list[tuple[float, float]]) -> list[list[dict]]:
    """A packed window's raw segments (with words), per clip on the clip's own clock.

    Each word goes to the clip whose span (seconds into the window) it overlaps most (not the one holding its
    midpoint: Whisper's alignment often stretches an utterance's last word far into the silence after it); words
    wholly inside a gap are dropped. A segment over several clips is cut at their edges, each piece keeping the
    segment's avg_logprob and no_speech_prob, its times clamped to the clip.
    """
    out: list[list[dict]] = [[] for _ in spans]
    for seg in raw:
        pieces: dict[int, list[dict]] = {}
        for word in seg["words"]:
            overlaps = [min(word["end"], hi) - max(word["start"], lo) for lo, hi in spans]
            k = int(np.argmax(overlaps))
            if overlaps[k] >= 0:
                pieces.setdefault(k, []).append(word)
        for k, words in pieces.items():
            lo, hi = spans[k]
            out[k].append(
                {
                    "start": max(min(seg["start"], words[0]["start"]), lo) - lo,
                    "end": min(max(seg["end"], words[-1]["end"]), hi) - lo,
                    "text": "".join(w["word"] for w in words),
                    "avg_logprob": seg["avg_logprob"],
                    "no_speech_prob": seg["no_speech_prob"],
                    "words": [{**w, "start": w["start"] - lo, "end": w["end"] - lo} for w in words],
                }
            )
    return out


def _encode(model, windows: np.ndarray):
    """faster-whisper's encoder states of (N, mels, frames) windows. On a CPU, CPU_ENCODE_BATCH windows per
    call: bigger batches cost more per window there (tiny.en on 2 cores: 0.17 s a window one or two at a time,
    0.20 s at 4 to 8, 0.23 to 0.33 s at 16), while the decoder after it gains from the whole batch; on a GPU,
    one call."""
    import ctranslate2

    if model.model.device != "cpu" or len(windows) <= CPU_ENCODE_BATCH:
        return model.encode(windows)
    parts = [
        np.asarray(model.encode(windows[at : at + CPU_ENCODE_BATCH])) for at in range(0, len(windows), CPU_ENCODE_BATCH)
    ]
    return ctranslate2.StorageView.from_array(np.concatenate(parts))


def _mono(audio: np.ndarray) -> np.ndarray:
    """``audio`` as a writable, contiguous 1-D float32 array (torch wants writable arrays)."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if not audio.flags.writeable:  # e.g. np.frombuffer over ffmpeg's output
        audio = audio.copy()
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D mono samples at {SAMPLE_RATE} Hz, got shape {audio.shape}")
    return audio


class Transcriber:
    """Whisper transcription through openai-whisper or faster-whisper with the same decoding settings.

    ``model``: None (bundled tiny.en, CTranslate2), a CTranslate2 folder, an openai-whisper .pt
    checkpoint (openai-whisper only) or a model name found in the backend's local cache.
    ``threads``: CPU threads (faster-whisper: ``cpu_threads``, default all available cores;
    openai-whisper: ``torch.set_num_threads``, process-wide, left alone when None).
    ``compute_type``: faster-whisper's CTranslate2 compute type; float32 matches openai-whisper
    on CPU ("int8" is faster, slightly different).
    """

    def __init__(
        self,
        backend: str,
        model: str | Path | None = None,
        device: str = "cpu",
        language: str | None = None,
        word_timestamps: bool = False,
        beam_size: int = 1,
        *,
        threads: int | None = None,
        compute_type: str = "float32",
        cache_dir: Path | None = None,
    ):
        if backend not in BACKENDS:
            raise FeatureConfigError(
                f"transcribe.backend: unknown speech backend {backend!r}; choose one of: {', '.join(BACKENDS)}"
            )
        if beam_size < 1:
            raise FeatureConfigError(f"transcribe.beam_size must be >= 1, got {beam_size}")
        self.backend = backend
        self.device = device
        self.language = language
        self.word_timestamps = word_timestamps
        self.beam_size = beam_size
        spec = str(model) if model is not None else str(tiny_en_ct2())
        if backend == "openai-whisper":
            if threads:
                import torch

                torch.set_num_threads(threads)
            checkpoint, source = _resolve_openai(spec, cache_dir)
            self._model = _load_checkpoint(checkpoint, device)
        else:
            self._model, source = load_faster(spec, device, threads, compute_type)
        self.model_id = f"{backend}:{source}"

    def transcribe(self, audio: np.ndarray, offset: float = 0.0) -> dict:
        """Transcribe 16 kHz mono float32 audio; times are ``offset`` + seconds into ``audio``."""
        audio = _mono(audio)
        if len(audio) == 0:
            return self._result(self.language or "en", [], offset, 0)
        language, raw = self._openai(audio) if self.backend == "openai-whisper" else self._faster(audio)
        return self._result(language, raw, offset, len(audio))

    def transcribe_many(
        self,
        audios: list[np.ndarray],
        offsets: list[float] | None = None,
        batch_size: int = 16,
        pack: bool = False,
        pack_gap: float = PACK_GAP,
        groups: list | None = None,
    ) -> list[dict]:
        """``transcribe`` of each clip (times from ``offsets[i]``, default 0): the same dicts, the same words unpacked.

        faster-whisper decodes clips shorter than 30 s ``batch_size`` windows at a time: one encoder call on the
        windows and one batched greedy/beam ``generate``, word timestamps included (aligned window by window).
        ``pack``: consecutive clips of at most 10 s share a window, ``pack_gap`` seconds of silence apart, decoded
        once with word timestamps and cut back per clip by ``_unpack`` (words in the gaps dropped; a segment over
        several clips cut at their edges, each piece with the segment's avg_logprob / no_speech_prob). Whisper
        then hears each clip beside its neighbours, so words may differ from one at a time (the demo's "Clip one"
        becomes "Clip 1"), and the no-speech rule judges the window as a whole. A clip with no room beside its
        neighbours is decoded alone, unpacked, and so is every clip of a multilingual model without ``language``.
        ``groups`` (a key per clip, e.g. its split and source video): only clips of one key share a window.
        openai-whisper, clips of 30 s or more and ``batch_size == 1`` without ``pack`` go one at a time through
        ``transcribe``.
        """
        offsets = [0.0] * len(audios) if offsets is None else list(offsets)
        if len(offsets) != len(audios):
            raise ValueError(f"{len(audios)} clips but {len(offsets)} offsets")
        if batch_size < 1:
            raise FeatureConfigError(f"transcribe.batch_size must be >= 1, got {batch_size}")
        if pack_gap < 0:
            raise FeatureConfigError(f"transcribe.pack_gap must be >= 0, got {pack_gap}")
        audios = [_mono(a) for a in audios]
        done: dict[int, dict] = {}
        if self.backend == "faster-whisper" and (batch_size > 1 or pack):
            short = [i for i, a in enumerate(audios) if 0 < len(a) < WINDOW]
            gap = round(pack_gap * SAMPLE_RATE)
            if pack and (self.language or not self._model.model.is_multilingual):
                keys = None if groups is None else [groups[i] for i in short]
                jobs = [[short[k] for k in group] for group in _packs([len(audios[i]) for i in short], gap, keys)]
            else:
                jobs = [[i] for i in short]
            for at in range(0, len(jobs), batch_size):
                group = jobs[at : at + batch_size]
                waves = [
                    np.concatenate([part for i in job for part in (np.zeros(gap, np.float32), audios[i])][1:])
                    for job in group
                ]
                decoded = self._faster_many(waves, [len(job) > 1 or self.word_timestamps for job in group])
                for job, (language, raw) in zip(group, decoded):
                    if len(job) == 1:
                        done[job[0]] = self._result(language, raw, offsets[job[0]], len(audios[job[0]]))
                        continue
                    ends = np.cumsum([len(audios[i]) + gap for i in job]) - gap
                    spans = [((end - len(audios[i])) / SAMPLE_RATE, end / SAMPLE_RATE) for i, end in zip(job, ends)]
                    for i, own in zip(job, _unpack(raw, spans)):
                        done[i] = self._result(language, own, offsets[i], len(audios[i]))
        return [done[i] if i in done else self.transcribe(a, o) for i, (a, o) in enumerate(zip(audios, offsets))]

    def _result(self, language: str, raw: list[dict], offset: float, samples: int) -> dict:
        """The transcript dict of a backend's raw segments (times in seconds into the clip)."""
        lo, hi = float(offset), float(offset) + samples / SAMPLE_RATE
        segments = []
        for seg in raw:
            text = seg["text"].strip()
            if not text:
                continue
            out = {
                "start": _clamp(seg["start"] + lo, lo, hi),
                "end": _clamp(seg["end"] + lo, lo, hi),
                "text": text,
                "avg_logprob": float(seg["avg_logprob"]),
                "no_speech_prob": float(seg["no_speech_prob"]),
            }
            if self.word_timestamps:
                out["words"] = [
                    {
                        "start": _clamp(w["start"] + lo, lo, hi),
                        "end": _clamp(w["end"] + lo, lo, hi),
                        "word": w["word"].strip(),
                        "probability": float(w["probability"]),
                    }
                    for w in seg.get("words") or []
                ]
            segments.append(out)
        return {"language": language, "text": " ".join(s["text"] for s in segments), "segments": segments}

    def _openai(self, audio: np.ndarray) -> tuple[str, list[dict]]:
        import whisper

        result = whisper.transcribe(
            self._model,
            audio,
            verbose=None,
            language=self.language,
            task="transcribe",
            temperature=0.0,
            beam_size=None if self.beam_size == 1 else self.beam_size,
            condition_on_previous_text=False,
            word_timestamps=self.word_timestamps,
            compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD,
            logprob_threshold=LOGPROB_THRESHOLD,
            no_speech_threshold=NO_SPEECH_THRESHOLD,
            fp16=False,
        )
        return result["language"], result["segments"]

    def _faster(self, audio: np.ndarray) -> tuple[str, list[dict]]:
        segments, info = self._model.transcribe(
            audio,
            language=self.language,
            task="transcribe",
            beam_size=self.beam_size,
            best_of=1,
            temperature=0.0,
            condition_on_previous_text=False,
            word_timestamps=self.word_timestamps,
            compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD,
            log_prob_threshold=LOGPROB_THRESHOLD,
            no_speech_threshold=NO_SPEECH_THRESHOLD,
            vad_filter=False,
        )
        raw = []
        for seg in segments:  # a generator: decoding happens here
            raw.append(
                {
                    "start": seg.start,
                    "end": seg.end,
                    "text": seg.text,
                    "avg_logprob": seg.avg_logprob,
                    "no_speech_prob": seg.no_speech_prob,
                    "words": [
                        {"start": w.start, "end": w.end, "word": w.word, "probability": w.probability}
                        for w in seg.words or []
                    ],
                }
            )
        return info.language, raw

    def _faster_many(self, waves: list[np.ndarray], words: list[bool]) -> list[tuple[str, list[dict]]]:
        """``_faster`` of several clips, their next 30 s windows encoded and decoded as one batch per round;
        ``words[i]``: word timestamps for clip i.

        faster-whisper's ``WhisperModel.generate_segments`` loop for ``_faster``'s settings, clip by clip
        around the batched calls: one temperature (no fallback to re-run), no prompt (the same prompt for
        every clip), the no-speech rule, a clip's next window starting where its last one stopped.
        """
        import ctranslate2
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens
        from faster_whisper.utils import get_end

        m = self._model
        step, frames = m.feature_extractor.time_per_frame, m.feature_extractor.nb_max_frames
        defaults = {k: p.default for k, p in inspect.signature(m.transcribe).parameters.items()}
        feats = [m.feature_extractor(w) for w in waves]
        if m.model.is_multilingual:
            languages = [self.language or m.detect_language(features=f)[0] for f in feats]
        else:
            languages = ["en"] * len(waves)
        tokenizers = {
            lang: Tokenizer(m.hf_tokenizer, m.model.is_multilingual, task="transcribe", language=lang)
            for lang in set(languages)
        }
        suppress = get_suppressed_tokens(next(iter(tokenizers.values())), [-1]) if tokenizers else []
        seeks, raw, last_speech = [0] * len(waves), [[] for _ in waves], [0.0] * len(waves)
        while todo := [i for i, f in enumerate(feats) if seeks[i] < f.shape[-1] - 1]:
            sizes = [min(frames, feats[i].shape[-1] - 1 - seeks[i]) for i in todo]
            encoded = _encode(
                m, np.stack([pad_or_trim(feats[i][:, seeks[i] : seeks[i] + n]) for i, n in zip(todo, sizes)])
            )
            results = m.model.generate(
                encoded,
                [m.get_prompt(tokenizers[languages[i]], []) for i in todo],
                beam_size=self.beam_size,
                patience=1,
                length_penalty=1,
                repetition_penalty=1,
                no_repeat_ngram_size=0,
                max_length=m.max_length,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=suppress,
                max_initial_timestamp_index=int(round(defaults["max_initial_timestamp"] / m.time_precision)),
            )
            for row, (i, size, result) in enumerate(zip(todo, sizes, results)):
                tokenizer, seek, tokens = tokenizers[languages[i]], seeks[i], result.sequences_ids[0]
                avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
                if result.no_speech_prob > NO_SPEECH_THRESHOLD and not avg_logprob > LOGPROB_THRESHOLD:
                    seeks[i] += size  # no speech in this window
                    continue
                segments, seeks[i], single_ending = m._split_segments_by_timestamps(
                    tokenizer=tokenizer,
                    tokens=tokens,
                    time_offset=seek * step,
                    segment_size=size,
                    segment_duration=size * step,
                    seek=seek,
                )
                if words[i]:
                    own = ctranslate2.StorageView.from_array(np.asarray(encoded)[row : row + 1])
                    m.add_word_timestamps(
                        [segments],
                        tokenizer,
                        own,
                        size,
                        defaults["prepend_punctuations"],
                        defaults["append_punctuations"],
                        last_speech_timestamp=last_speech[i],
                    )
                    end = get_end(segments)
                    if not single_ending and end is not None and end > seek * step:
                        seeks[i] = round(end * m.frames_per_second)
                    if end is not None:
                        last_speech[i] = end
                for seg in segments:
                    text = tokenizer.decode(seg["tokens"])
                    if seg["start"] != seg["end"] and text.strip():
                        raw[i].append(
                            {
                                "start": seg["start"],
                                "end": seg["end"],
                                "text": text,
                                "avg_logprob": avg_logprob,
                                "no_speech_prob": result.no_speech_prob,
                                "words": seg.get("words") or [],
                            }
                        )
        return list(zip(languages, raw))
