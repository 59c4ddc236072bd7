"""audio -> transcribe -> text on real speech (espeak-ng) with the bundled Whisper tiny.en: a spoken
clip, a video without audio, a silent track and a 45 s track, all through all three stages."""

import json
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from vidprobe import layout
from vidprobe.config import ConfigError, load_config
from vidprobe.features.audio import load_audio
from vidprobe.features.speech import encoder_frames
from vidprobe.features.store import FeatureSet
from vidprobe.stages import audio, embed, index, text, transcribe

SENTENCE = "please open the door and turn on the light"


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def speech_root(tmp_path_factory):
    """train/talk/{speech, noaudio, silent, long}.mp4"""
    tmp = tmp_path_factory.mktemp("speech")
    root = tmp / "data"
    (root / "train/talk").mkdir(parents=True)
    wav = tmp / "s.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), SENTENCE], check=True)
    video = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10"]
    ffmpeg(
        *video,
        "-i",
        str(wav),
        "-shortest",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        str(root / "train/talk/speech.mp4"),
    )
    ffmpeg(*video, "-t", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(root / "train/talk/noaudio.mp4"))
    ffmpeg(
        *video,
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=16000:cl=mono",
        "-t",
        "3",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        str(root / "train/talk/silent.mp4"),
    )
    # the sentence at 0 s and again at 36 s, 45 s in all
    ffmpeg(
        "-i",
        str(wav),
        "-i",
        str(wav),
        "-filter_complex",
        "[1]adelay=36000[b];[0][b]amix=inputs=2:duration=longest:normalize=0,apad=whole_dur=45",
        "-t",
        "45",
        str(tmp / "long.wav"),
    )
    ffmpeg(
        *video,
        "-i",
        str(tmp / "long.wav"),
        "-t",
        "45",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        str(root / "train/talk/long.mp4"),
    )
    return root


def test_audio_transcribe_text_stages(speech_root, tmp_path):
    cfg = load_config(
        None,
        [
            f"dataset.root={speech_root}",
            f"paths.cache={tmp_path}",
            "dataset.name=talk",
            "dataset.splits=[train]",
            "backbone.name=videomae-tiny-random",
            "embed.num_workers=0",
            "transcribe.subtitles=[srt]",
            "transcribe.word_timestamps=true",
        ],
    )
    index.run(cfg)
    embed.run(cfg)  # video rows first, so audio/temporal lines up with video/temporal
    table = audio.run(cfg).set_index("sample_id")
    assert not table.loc["train/talk/noaudio", "has_audio"]
    assert table.loc["train/talk/silent", "peak"] < 1e-4
    assert table.loc["train/talk/long", "seconds"] == pytest.approx(45, abs=0.1)
    assert audio.run(cfg).equals(table.reset_index())  # a re-run reuses the cut files

    transcribe.run(cfg)
    records = {r["sample_id"]: r for r in map(json.loads, layout.transcripts(cfg).read_text().splitlines())}
    said = records["train/talk/speech"]["text"].lower()
    assert all(w in said for w in ("open", "door", "light")), said
    assert records["train/talk/noaudio"] == {
        "sample_id": "train/talk/noaudio",
        "has_audio": False,
        "language": None,
        "text": "",
        "segments": [],
    }
    assert records["train/talk/silent"]["text"] == ""
    long = records["train/talk/long"]["segments"]
    assert long[0]["start"] < 5 and any(s["start"] > 30 and "door" in s["text"].lower() for s in long), long
    starts = [s["start"] for s in long]
    assert starts == sorted(starts) and all(0 <= s["start"] <= s["end"] <= 45 for s in long)
    srt = (layout.transcripts(cfg).parent / "whisper-tiny.en" / "train/talk/speech.srt").read_text()
    assert srt.startswith("1\n00:00:0")

    fs = FeatureSet(tmp_path / "talk" / "whisper-tiny.en")
    ids = ["train/talk/long", "train/talk/noaudio", "train/talk/silent", "train/talk/speech"]
    assert sorted(fs.ids) == ids
    present = dict(zip(ids, fs.get("audio/present", ids)))
    assert present == {
        "train/talk/long": True,
        "train/talk/noaudio": False,
        "train/talk/silent": True,
        "train/talk/speech": True,
    }
    assert fs.keys["audio/temporal"] == (4, 384)  # the tiny VideoMAE's 4 temporal steps, tiny.en's 384 dims

    # audio/pooled against a direct openai-whisper encoder pass on the same mel input, trimmed the same way
    import whisper
    from vidprobe.features.speech import load_openai_whisper, tiny_en_ct2

    model = load_openai_whisper(str(tiny_en_ct2()), cache_dir=layout.model_cache(cfg))
    wave = load_audio(tmp_path / "talk" / "audio" / table.loc["train/talk/speech", "file"])
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(wave)), model.dims.n_mels)
    with torch.no_grad():
        states = model.embed_audio(mel[None])[0]
    real = int(np.ceil(len(wave) / 320))
    assert np.abs(fs.get("audio/pooled", ["train/talk/speech"])[0] - states[:real].mean(0).numpy()).max() <= 1e-5
    assert not fs.get("audio/pooled", ["train/talk/noaudio"]).any()

    out = text.run(
        load_config(
            None,
            [
                f"dataset.root={speech_root}",
                f"paths.cache={tmp_path}",
                "dataset.name=talk",
                "backbone.name=videomae-tiny-random",
                "text.source=transcripts",
            ],
        )
    )
    assert out["present"] == 2  # the spoken clip and the long one; nothing said in the others
    tfs = FeatureSet(out["dir"])
    assert tfs.keys["text/pooled"] == (384,)
    vec = tfs.get("text/pooled", ["train/talk/speech"])[0]
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)
    assert not tfs.get("text/present", ["train/talk/silent"])[0]
    assert pd.read_csv(tmp_path / "talk" / "audio" / "audio.csv").shape[0] == 4


def test_batched_transcripts_equal_one_at_a_time(speech_root, tmp_path):
    """transcribe.batch_size=16 (spoken and silent clips decoded together, the 45 s one alone) against 1."""
    base = [
        f"dataset.root={speech_root}",
        f"paths.cache={tmp_path}",
        "dataset.name=talk",
        "dataset.splits=[train]",
        "backbone.name=videomae-tiny-random",
        "transcribe.embed=false",
        "transcribe.word_timestamps=true",
    ]
    index.run(load_config(None, base))
    audio.run(load_config(None, base))
    records = {}
    for size in (1, 16):
        cfg = load_config(None, [*base, f"transcribe.batch_size={size}"])
        transcribe.run(cfg)
        records[size] = [json.loads(line) for line in layout.transcripts(cfg).read_text().splitlines()]
    assert [r["sample_id"] for r in records[16]] == [r["sample_id"] for r in records[1]]
    assert "door" in " ".join(r["text"].lower() for r in records[16])
    for a, b in zip(records[16], records[1]):
        assert {k: v for k, v in a.items() if k != "segments"} == {k: v for k, v in b.items() if k != "segments"}
        assert [(s["start"], s["end"], s["text"], [w["word"] for w in s["words"]]) for s in a["segments"]] == [
            (s["start"], s["end"], s["text"], [w["word"] for w in s["words"]]) for s in b["segments"]
        ]
        assert [s["avg_logprob"] for s in a["segments"]] == pytest.approx(
            [s["avg_logprob"] for s in b["segments"]], abs=1e-3
        )
    with pytest.raises(ConfigError, match="transcribe.batch_size"):
        transcribe.run(load_config(None, [*base, "transcribe.batch_size=0"]))


def test_packed_transcripts_equal_unpacked(speech_root, tmp_path):
    """transcribe.pack=true with pack_across (the spoken and silent clips, two videos, in one window; the 45 s
    one alone): the same words."""
    base = [
        f"dataset.root={speech_root}",
        f"paths.cache={tmp_path}",
        "dataset.name=talk",
        "dataset.splits=[train]",
        "backbone.name=videomae-tiny-random",
        "transcribe.embed=false",
        "transcribe.word_timestamps=true",
    ]
    index.run(load_config(None, base))
    seconds = audio.run(load_config(None, base)).set_index("sample_id")["seconds"]
    records = {}
    for pack in (False, True):
        cfg = load_config(None, [*base, f"transcribe.pack={str(pack).lower()}", "transcribe.pack_across=true"])
        transcribe.run(cfg)
        records[pack] = {r["sample_id"]: r for r in map(json.loads, layout.transcripts(cfg).read_text().splitlines())}
    words = {
        pack: {k: re.sub(r"[^\w\s]", " ", r["text"].lower()).split() for k, r in recs.items()}
        for pack, recs in records.items()
    }
    assert words[True] == words[False] and "door" in words[True]["train/talk/speech"]
    assert (
        records[True]["train/talk/silent"]["segments"] == []
        and records[True]["train/talk/long"] == records[False]["train/talk/long"]
    )
    for sample_id, rec in records[True].items():
        for seg in rec["segments"]:  # the samples start at 0 s on their video's clock
            assert 0 <= seg["start"] <= seg["end"] <= seconds[sample_id] + 1e-3
            assert all(seg["start"] - 1e-3 <= w["start"] <= w["end"] <= seg["end"] + 1e-3 for w in seg["words"])
    with pytest.raises(ConfigError, match="transcribe.pack_gap"):
        transcribe.run(load_config(None, [*base, "transcribe.pack_gap=-1"]))


def test_encoder_frames_of_a_random_tiny_whisper_trim_each_30s_window(tmp_path):
    """The openai-whisper path without real weights: a tiny Whisper from ModelDimensions, saved and loaded."""
    import whisper
    from vidprobe.features.speech import load_openai_whisper
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=32,
        n_audio_head=2,
        n_audio_layer=1,
        n_vocab=51864,
        n_text_ctx=64,
        n_text_state=32,
        n_text_head=2,
        n_text_layer=1,
    )
    torch.manual_seed(0)
    torch.save({"dims": dims.__dict__, "model_state_dict": Whisper(dims).state_dict()}, tmp_path / "tiny.pt")
    model = load_openai_whisper(str(tmp_path / "tiny.pt"))
    wave = np.random.default_rng(0).normal(scale=0.1, size=16000 * 45).astype(np.float32)  # 45 s: two windows
    frames = encoder_frames(model, wave)
    assert frames.shape == (2250, 32)  # 50 frames a second of real audio, nothing of the padding
    with torch.no_grad():
        second = model.embed_audio(
            whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(wave[16000 * 30 :])), 80)[None]
        )[0]
    assert np.abs(frames[1500:].numpy() - second[:750].numpy()).max() <= 1e-5


def test_packed_clips_share_a_split_and_a_source(tmp_path):
    """What transcribe.pack keeps apart: another split, another video (or the manifest's group)."""
    from vidprobe.stages.transcribe import pack_groups

    cfg = load_config(None, [f"paths.cache={tmp_path}", "dataset.name=talk"])
    layout.manifest(cfg).parent.mkdir(parents=True)
    rows = {"sample_id": ["a1", "a2", "b1", "c1"], "path": ["a.mp4", "a.mp4", "b.mp4", "a.mp4"]}
    pd.DataFrame({**rows, "split": ["train", "train", "train", "test"]}).to_csv(layout.manifest(cfg), index=False)
    keys = pack_groups(cfg)
    assert keys["a1"] == keys["a2"] and keys["a1"] != keys["b1"] and keys["a1"] != keys["c1"]
    grouped = {**rows, "split": "train", "group": ["d1", "d1", "d1", "d2"]}  # e.g. a dialogue's utterances
    pd.DataFrame(grouped).to_csv(layout.manifest(cfg), index=False)
    keys = pack_groups(cfg)
    assert keys["a1"] == keys["b1"] != keys["c1"]
