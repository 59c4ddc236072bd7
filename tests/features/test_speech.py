"""Speech recognition on real speech (espeak-ng, muxed into a video) with the bundled Whisper tiny.en.

Each backend's model is loaded once per module; its transcripts of the clip are computed once too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from vidprobe.features import speech
from vidprobe.features.speech import BACKENDS, SAMPLE_RATE, Transcriber, write_srt, write_vtt

pytest.importorskip("faster_whisper")
pytest.importorskip("whisper")
try:
    speech.tiny_en_ct2()
except FileNotFoundError as error:
    pytest.skip(str(error), allow_module_level=True)
if not (shutil.which("ffmpeg") and shutil.which("espeak-ng")):
    pytest.skip("needs ffmpeg and espeak-ng", allow_module_level=True)

SENTENCE = "please open the door and turn on the light"  # tiny.en gets it word for word from espeak-ng
KEY_WORDS = ("open", "door", "turn", "light")


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def read_audio(video: Path) -> np.ndarray:
    """The video's audio track as 16 kHz mono float32, decoded by ffmpeg."""
    out = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(video), "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(out, np.float32).copy()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> np.ndarray:
    """The spoken sentence, muxed as AAC into a test-pattern video, read back from the video."""
    tmp = tmp_path_factory.mktemp("speech")
    wav, video = tmp / "speech.wav", tmp / "clip.mp4"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), SENTENCE], check=True, capture_output=True)
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=128x96:rate=10",
            "-i",
            str(wav),
            "-shortest",
            "-c:v",
            "mpeg4",
            "-c:a",
            "aac",
            "-ar",
            "16000",
            "-ac",
            "1",
            str(video),
        ],
        check=True,
    )
    audio = read_audio(video)
    assert 1.5 < len(audio) / SAMPLE_RATE < 6
    return audio


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """Where the CTranslate2 -> openai-whisper conversion is cached."""
    return tmp_path_factory.mktemp("whisper-cache")


@pytest.fixture(scope="module")
def transcribers(cache) -> dict[str, Transcriber]:
    return {b: Transcriber(b, word_timestamps=True, cache_dir=cache) for b in BACKENDS}


@pytest.fixture(scope="module")
def results(transcribers, clip) -> dict[str, dict]:
    return {b: t.transcribe(clip) for b, t in transcribers.items()}


def check_times(result: dict, lo: float, hi: float) -> None:
    starts = [s["start"] for s in result["segments"]]
    assert starts == sorted(starts)
    for seg in result["segments"]:
        assert lo <= seg["start"] <= seg["end"] <= hi
        for word in seg["words"]:
            assert seg["start"] <= word["start"] <= word["end"] <= seg["end"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_transcribes_the_speech_in_a_video(results, clip, backend):
    result = results[backend]
    text = normalise(result["text"])
    assert all(word in text.split() for word in KEY_WORDS), result["text"]
    assert result["language"] == "en" and result["segments"]
    check_times(result, 0.0, len(clip) / SAMPLE_RATE)
    words = [w for s in result["segments"] for w in s["words"]]
    assert normalise(" ".join(w["word"] for w in words)) == text
    assert all(0 <= w["probability"] <= 1 for w in words)
    assert all(s["avg_logprob"] <= 0 and 0 <= s["no_speech_prob"] <= 1 for s in result["segments"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_offset_shifts_every_time(transcribers, results, clip, backend):
    shifted = transcribers[backend].transcribe(clip, offset=10.0)
    base = results[backend]
    assert shifted["text"] == base["text"]
    check_times(shifted, 10.0, 10.0 + len(clip) / SAMPLE_RATE)
    for a, b in zip(base["segments"], shifted["segments"], strict=True):
        assert (b["start"], b["end"]) == pytest.approx((a["start"] + 10, a["end"] + 10), abs=1e-6)
        for wa, wb in zip(a["words"], b["words"], strict=True):
            assert (wb["start"], wb["end"]) == pytest.approx((wa["start"] + 10, wa["end"] + 10), abs=1e-6)


def test_converted_checkpoint_matches_faster_whisper(results):
    openai, faster = results["openai-whisper"], results["faster-whisper"]
    assert normalise(openai["text"]) == normalise(faster["text"])
    for a, b in zip(openai["segments"], faster["segments"], strict=True):
        assert a["avg_logprob"] == pytest.approx(b["avg_logprob"], abs=1e-3)


def test_converted_checkpoint_loads_with_whisper_load_model(transcribers, cache):
    import torch
    import whisper

    ours = transcribers["openai-whisper"]._model
    files = list(cache.glob("ct2-*.pt"))
    assert len(files) == 1
    theirs = whisper.load_model(str(files[0]), device="cpu")
    assert theirs.dims == ours.dims and (theirs.dims.n_mels, theirs.dims.n_vocab) == (80, 51864)
    for name, value in ours.state_dict().items():
        assert torch.equal(value, theirs.state_dict()[name]), name
    reference = whisper.model.Whisper(ours.dims)
    reference.set_alignment_heads(whisper._ALIGNMENT_HEADS["tiny.en"])  # openai's word-timing heads for tiny.en
    assert torch.equal(ours.alignment_heads.to_dense(), reference.alignment_heads.to_dense())
    ids = {b: t.model_id for b, t in transcribers.items()}
    assert ids["openai-whisper"].startswith("openai-whisper:") and ids["faster-whisper"].startswith("faster-whisper:")
    assert len({i.split(":", 1)[1] for i in ids.values()}) == 1 and "@sha256:" in ids["faster-whisper"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_audio_longer_than_30s(transcribers, clip, backend):
    gap = np.zeros(30 * SAMPLE_RATE, np.float32)
    track = np.concatenate([clip, gap, clip])
    track = np.pad(track, (0, 45 * SAMPLE_RATE - len(track)))
    result = transcribers[backend].transcribe(track)
    assert normalise(result["text"]).split().count("door") == 2, result["text"]
    check_times(result, 0.0, 45.0)
    late = [s for s in result["segments"] if "door" in normalise(s["text"]).split()][-1]
    assert 30.0 < late["start"] < late["end"] <= 45.0
    assert late["start"] == pytest.approx(len(clip) / SAMPLE_RATE + 30, abs=1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_silence_and_empty_audio_give_empty_text(transcribers, backend):
    for audio in (np.zeros(2 * SAMPLE_RATE, np.float32), np.zeros(0, np.float32)):
        result = transcribers[backend].transcribe(audio, offset=3.0)
        assert result["text"] == "" and result["segments"] == []


def test_reader_dequantises_int8_and_follows_aliases(tmp_path):
    """A model.bin written by CTranslate2's own serializer with int8 weights and a shared (aliased) weight."""
    from ctranslate2.specs import common_spec, model_spec

    class TinySpec(model_spec.ModelSpec):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.ln = common_spec.LinearSpec(), common_spec.LinearSpec(), common_spec.LayerNormSpec()

        @property
        def name(self):
            return "TinySpec"

    w = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    spec = TinySpec()
    spec.a.weight, spec.a.bias, spec.b.weight = w.copy(), np.ones(8, np.float32), w.copy()  # ct2 scales in place
    spec.ln.gamma, spec.ln.beta = np.ones(5, np.float32), np.zeros(5, np.float32)
    spec.validate()
    spec.optimize("int8_float16")
    spec.save(str(tmp_path))
    assert speech.ct2_weight_dtypes(tmp_path / "model.bin") == {"int8": 1, "float32": 1, "float16": 3}  # + the scale
    name, v = speech.read_ct2_model(tmp_path / "model.bin")
    assert name == "TinySpec" and set(v) == {"a/weight", "a/bias", "b/weight", "ln/gamma", "ln/beta"}
    step = np.abs(w).max(axis=1, keepdims=True) / 127  # one int8 step per row
    assert np.all(np.abs(v["a/weight"] - w) <= step / 2 + 1e-6) and np.array_equal(v["b/weight"], v["a/weight"])
    assert v["a/bias"].dtype == np.float32 and np.array_equal(v["a/bias"], np.ones(8))


def test_unknown_backend_names_the_valid_ones():
    with pytest.raises(ValueError, match="openai-whisper.*faster-whisper"):
        Transcriber("whisper.cpp")


def test_uncached_model_name_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="'base.en'.*local .pt checkpoint or a CTranslate2 folder"):
        speech.load_openai_whisper("base.en")
    assert time.perf_counter() - start < 5


SEGMENTS = [
    {"start": 0.0, "end": 1.5, "text": " Hello there."},
    {"start": 3661.0024, "end": 3662.25, "text": "General Kenobi!"},
]


def test_write_srt(tmp_path):
    text = write_srt(SEGMENTS, tmp_path / "a.srt").read_text()
    assert text == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n2\n01:01:01,002 --> 01:01:02,250\nGeneral Kenobi!\n"
    )


def test_write_vtt(tmp_path):
    text = write_vtt(SEGMENTS, tmp_path / "a.vtt").read_text()
    assert text == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n\n01:01:01.002 --> 01:01:02.250\nGeneral Kenobi!\n"
    )
