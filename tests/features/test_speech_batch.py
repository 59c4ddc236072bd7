"""Transcriber.transcribe_many against one clip at a time, on espeak-ng speech with the bundled Whisper tiny.en.

Batched decoding runs the same model on the same windows, so the words and timestamps are the same; only the
floating-point sums of a batched matrix product differ, which moves avg_logprob / no_speech_prob by ~1e-6.
Packed decoding (several clips in one window) is checked on words (lower-cased, punctuation aside) and times:
equal words hold for these clips, not in general (Whisper hears each clip beside its neighbours).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from vidprobe.features import speech
from vidprobe.features.speech import BACKENDS, SAMPLE_RATE, Transcriber
from vidprobe.features.speech.transcribe import CPU_ENCODE_BATCH, _encode, _packs, _unpack

pytest.importorskip("faster_whisper")
pytest.importorskip("whisper")
try:
    speech.tiny_en_ct2()
except FileNotFoundError as error:
    pytest.skip(str(error), allow_module_level=True)
if not shutil.which("espeak-ng"):
    pytest.skip("needs espeak-ng", allow_module_level=True)

SENTENCES = [
    "yes",
    "i don't know",
    "oh my god, what are you doing here",
    "please open the door and turn on the light",
    "could you please send me the report before the end of the week",
]
TIME_TOLERANCE = 0.02  # one Whisper timestamp step; in practice the times are equal
PROB_TOLERANCE = 1e-3


def speak(text: str) -> np.ndarray:
    """espeak-ng speech as 16 kHz mono float32 (its 22.05 kHz output resampled by interpolation)."""
    out = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", text], check=True, capture_output=True
    ).stdout
    wave = np.frombuffer(out[44:], np.int16).astype(np.float32) / 32768  # after the 44-byte WAV header
    return np.interp(
        np.arange(0, len(wave) * SAMPLE_RATE // 22050) * 22050 / SAMPLE_RATE, np.arange(len(wave)), wave
    ).astype(np.float32)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """Speech of 0.5 to 4 s, a silent clip, an empty one, and a 35 s track with speech at 0 s and 32 s."""
    said = [speak(s) for s in SENTENCES]
    long = np.zeros(35 * SAMPLE_RATE, np.float32)
    long[: len(said[3])] = said[3]
    long[32 * SAMPLE_RATE : 32 * SAMPLE_RATE + len(said[1])] = said[1]
    return [*said[:3], np.zeros(2 * SAMPLE_RATE, np.float32), said[3], long, np.zeros(0, np.float32), said[4]]


@pytest.fixture(scope="module")
def transcribers(tmp_path_factory) -> dict[tuple[str, bool], Transcriber]:
    cache = tmp_path_factory.mktemp("whisper-cache")
    return {(b, w): Transcriber(b, word_timestamps=w, cache_dir=cache) for b in BACKENDS for w in (False, True)}


def assert_same(batched: dict, single: dict) -> None:
    assert batched["text"] == single["text"] and batched["language"] == single["language"]
    assert len(batched["segments"]) == len(single["segments"])
    for a, b in zip(batched["segments"], single["segments"]):
        assert a["text"] == b["text"]
        assert (a["start"], a["end"]) == pytest.approx((b["start"], b["end"]), abs=TIME_TOLERANCE)
        assert (a["avg_logprob"], a["no_speech_prob"]) == pytest.approx(
            (b["avg_logprob"], b["no_speech_prob"]), abs=PROB_TOLERANCE
        )
        assert ("words" in a) == ("words" in b)
        for wa, wb in zip(a.get("words", []), b.get("words", []), strict=True):
            assert wa["word"] == wb["word"]
            assert (wa["start"], wa["end"]) == pytest.approx((wb["start"], wb["end"]), abs=TIME_TOLERANCE)
            assert wa["probability"] == pytest.approx(wb["probability"], abs=PROB_TOLERANCE)


@pytest.mark.parametrize("words", [False, True], ids=["segments", "words"])
def test_faster_whisper_batched_equals_one_at_a_time(transcribers, clips, words, monkeypatch):
    asr = transcribers["faster-whisper", words]
    offsets = [7.5 * i for i in range(len(clips))]
    single = [asr.transcribe(c, o) for c, o in zip(clips, offsets)]
    calls = []
    batched_call = asr._faster_many
    monkeypatch.setattr(
        asr, "_faster_many", lambda waves, flags: calls.append(len(waves)) or batched_call(waves, flags)
    )
    batched = asr.transcribe_many(clips, offsets, batch_size=4)
    assert calls == [4, 2]  # the six clips under 30 s, four then two; the 35 s and the empty one alone
    for b, s in zip(batched, single, strict=True):
        assert_same(b, s)
    texts = [r["text"].lower() for r in batched]
    assert texts[3] == texts[6] == "" and "door" in texts[4] and "door" in texts[5] and "know" in texts[5]
    assert [s["start"] >= 7.5 * 5 + 30 for s in batched[5]["segments"]] == [False, True]  # the second window


def test_encoder_runs_a_few_windows_per_call_on_a_cpu(transcribers, clips, monkeypatch):
    from faster_whisper.audio import pad_or_trim

    model = transcribers["faster-whisper", False]._model
    windows = np.stack([pad_or_trim(model.feature_extractor(c)) for c in clips[:5]])
    whole = np.asarray(model.encode(windows))
    calls = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda x: calls.append(len(x)) or encode(x))
    states = np.asarray(_encode(model, windows))
    assert calls == [2, 2, 1] == [min(CPU_ENCODE_BATCH, 5 - at) for at in range(0, 5, CPU_ENCODE_BATCH)]
    np.testing.assert_allclose(states, whole, atol=1e-4)


def test_batch_size_one_goes_one_at_a_time(transcribers, clips, monkeypatch):
    asr = transcribers["faster-whisper", False]
    single = [asr.transcribe(c) for c in clips[:3]]
    monkeypatch.setattr(asr, "_faster_many", lambda waves, words: pytest.fail("batched with batch_size=1"))
    assert asr.transcribe_many(clips[:3], batch_size=1) == single


def test_openai_whisper_goes_one_at_a_time(transcribers, clips):
    asr = transcribers["openai-whisper", True]
    assert asr.transcribe_many(clips[:3], [1.0, 2.0, 3.0]) == [
        asr.transcribe(c, o) for c, o in zip(clips[:3], [1.0, 2.0, 3.0])
    ]


def test_arguments_are_checked(transcribers, clips):
    asr = transcribers["faster-whisper", False]
    assert asr.transcribe_many([]) == []
    with pytest.raises(ValueError, match="2 clips but 1 offsets"):
        asr.transcribe_many(clips[:2], [0.0])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        asr.transcribe_many(clips[:2], batch_size=0)
    with pytest.raises(ValueError, match="pack_gap must be >= 0"):
        asr.transcribe_many(clips[:2], pack=True, pack_gap=-1)
    with pytest.raises(ValueError, match="1-D mono"):
        asr.transcribe_many([np.zeros((2, 100), np.float32)])


def words(result: dict) -> list[str]:
    return re.sub(r"[^\w\s]", " ", result["text"].lower()).split()


def test_packs_group_consecutive_clips_with_room():
    second = SAMPLE_RATE
    assert _packs([3 * second] * 7, 2 * second) == [[0, 1, 2, 3, 4, 5], [6]]  # 6 x 3 s + 5 x 2 s = 28 s
    assert _packs([3 * second, 12 * second, 3 * second, 9 * second, 9 * second, 9 * second], 2 * second) == [
        [0],
        [1],
        [2, 3, 4],
        [5],
    ]  # over 10 s: alone; 3 + 2 + 9 + 2 + 9 = 25 s, no room for 9 s more
    groups = [("train", "a.mp4")] * 3 + [("train", "b.mp4")] * 2 + [("test", "b.mp4")] * 2
    assert _packs([3 * second] * 7, 2 * second, groups) == [[0, 1, 2], [3, 4], [5, 6]]  # never across a key


def test_unpack_cuts_segments_at_clip_edges():
    word = lambda w, a, b: {"word": w, "start": a, "end": b, "probability": 0.9}  # noqa: E731
    raw = [
        {
            "start": 0.0,
            "end": 6.0,
            "text": " Yes. I don't. Uh",
            "avg_logprob": -0.2,
            "no_speech_prob": 0.01,
            "words": [word(" Yes.", 0.0, 1.9), word(" I", 2.9, 3.2), word(" don't.", 3.2, 3.6), word(" Uh", 4.2, 4.5)],
        }
    ]
    first, second = _unpack(raw, [(0.0, 1.0), (3.0, 4.0)])  # "Yes." stretched into the gap; "Uh" in the gap
    assert first == [
        {
            "start": 0.0,
            "end": 1.0,
            "text": " Yes.",
            "avg_logprob": -0.2,
            "no_speech_prob": 0.01,
            "words": [word(" Yes.", 0.0, 1.9)],
        }
    ]
    assert second == [
        {
            "start": 0.0,
            "end": 1.0,
            "text": " I don't.",
            "avg_logprob": -0.2,
            "no_speech_prob": 0.01,
            "words": [
                word(" I", pytest.approx(-0.1), pytest.approx(0.2)),
                word(" don't.", pytest.approx(0.2), pytest.approx(0.6)),
            ],
        }
    ]


@pytest.mark.parametrize("timestamps", [False, True], ids=["segments", "words"])
def test_packed_words_equal_one_at_a_time(transcribers, clips, timestamps, monkeypatch):
    """Speech of 0.5 to 4 s and a silent clip packed into one window, the 35 s track and the empty clip alone."""
    asr = transcribers["faster-whisper", timestamps]
    offsets = [7.5 * i for i in range(len(clips))]
    single = [asr.transcribe(c, o) for c, o in zip(clips, offsets)]
    calls = []
    batched_call = asr._faster_many
    monkeypatch.setattr(
        asr,
        "_faster_many",
        lambda waves, flags: calls.append(([len(w) for w in waves], flags)) or batched_call(waves, flags),
    )
    packed = asr.transcribe_many(clips, offsets, pack=True, pack_gap=1.0)
    assert calls == [([sum(len(c) for c in clips[:5] + clips[7:]) + 5 * SAMPLE_RATE], [True])]
    assert [words(p) for p in packed] == [words(s) for s in single]
    assert packed[3]["text"] == packed[6]["text"] == "" and packed[3]["segments"] == []  # silence stays silent
    assert packed[5] == single[5] and packed[6] == single[6]  # not packed: decoded alone
    for clip, offset, result in zip(clips, offsets, packed):
        assert result["language"] == "en"
        end = round(offset + len(clip) / SAMPLE_RATE, 3)  # transcripts round times to the millisecond
        for seg in result["segments"]:
            assert offset <= seg["start"] <= seg["end"] <= end and -5 < seg["avg_logprob"] <= 0
            assert ("words" in seg) == timestamps
            assert all(offset <= w["start"] <= w["end"] <= end for w in seg.get("words", []))
            if timestamps:
                assert " ".join(w["word"] for w in seg["words"]) == seg["text"]


def test_clips_over_ten_seconds_are_not_packed(transcribers, clips, monkeypatch):
    asr = transcribers["faster-whisper", False]
    ten = np.concatenate([clips[4], np.zeros(SAMPLE_RATE * 10, np.float32)])  # 12.9 s: spoken, then silence
    batch = [clips[1], ten, clips[2], clips[4]]
    calls = []
    batched_call = asr._faster_many
    monkeypatch.setattr(
        asr,
        "_faster_many",
        lambda waves, flags: calls.append(([len(w) for w in waves], flags)) or batched_call(waves, flags),
    )
    packed = asr.transcribe_many(batch, pack=True, pack_gap=2.0)
    assert calls == [([len(clips[1]), len(ten), len(clips[2]) + 2 * SAMPLE_RATE + len(clips[4])], [False, False, True])]
    assert_same(packed[0], asr.transcribe(batch[0]))
    assert_same(packed[1], asr.transcribe(ten))
    assert [words(p) for p in packed[2:]] == [words(asr.transcribe(c)) for c in batch[2:]]
