"""`vidprobe audio-embed` with tiny random wav2vec2, HuBERT, WavLM, AST and CLAP models saved and loaded by path:
rows aligned with the video feature set (per sample and per window), values equal to a direct transformers
forward, a clip without audio masked, and CLAP prompts classifying audio zero-shot."""

import dataclasses
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
import transformers
from scipy.signal import resample_poly
from vidprobe import layout
from vidprobe.artifacts import read_audio_index, writing
from vidprobe.cli import STAGES, main
from vidprobe.config import AudioEmbedConfig, load_config
from vidprobe.features.audio import load_audio
from vidprobe.features.audio_encoders import AUDIO_ENCODERS, save_tiny_audio
from vidprobe.features.errors import LockHeld
from vidprobe.features.store import FeatureSet
from vidprobe.heads.runs import load_run
from vidprobe.stages import audio, audio_embed, embed, index, text, train


@pytest.fixture(scope="module")
def mixed_root(demo_root, tmp_path_factory):
    """The demo dataset with one clip's audio stream removed."""
    root = tmp_path_factory.mktemp("mixed") / "data"
    shutil.copytree(demo_root, root)
    clip = next(iter(sorted((root / "train").rglob("*.mp4"))))
    silent = clip.with_suffix(".tmp.mp4")
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(clip), "-an", "-c:v", "copy", str(silent)], check=True
    )
    silent.replace(clip)
    return root


@pytest.fixture(scope="module")
def staged(mixed_root, tmp_path_factory):
    """index, embed (videomae-tiny-random) and audio run once; `make(*overrides)` gives configs over that cache."""
    tmp = tmp_path_factory.mktemp("audio-embed")
    base = [
        f"dataset.root={mixed_root}",
        f"paths.cache={tmp / 'cache'}",
        "dataset.name=demo",
        "task.traits=[]",
        "embed.num_workers=0",
        "index.num_workers=1",
        "backbone.name=videomae-tiny-random",
    ]

    def make(*overrides: str):
        return load_config(None, base + list(overrides))

    cfg = make()
    index.run(cfg)
    embed.run(cfg)
    make.table = audio.run(cfg).set_index("sample_id")
    make.models = {f: save_tiny_audio(f, tmp / "models" / f, seed=3) for f in AUDIO_ENCODERS}
    return make


def direct_pooled(family: str, model_dir, wave16k: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The row's value by transformers alone: frame-level, the mean of `last_hidden_state` rows whose centre
    (20 ms-ish hops from the start) falls in [lo, hi); AST / CLAP, the clip's single window's embedding."""
    extractor = transformers.AutoFeatureExtractor.from_pretrained(model_dir)
    net = getattr(transformers, AUDIO_ENCODERS[family].model_class).from_pretrained(model_dir).eval()
    rate = extractor.sampling_rate
    wave = wave16k if rate == 16000 else resample_poly(wave16k, rate // 16000, 1).astype(np.float32)
    inputs = extractor(wave, sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        if family == "ast":
            assert len(wave16k) <= extractor.max_length * 160  # one window
            return net(**inputs).pooler_output[0].numpy()
        if family == "clap":
            assert len(wave) <= extractor.nb_max_samples
            return net.get_audio_features(**inputs).pooler_output[0].numpy()
        frames = net(**inputs).last_hidden_state[0]
    centres = (np.arange(len(frames)) + 0.5) * np.prod(net.config.conv_stride) / rate
    inside = (centres >= lo) & (centres < hi)
    return frames[inside].mean(0).numpy()


def test_the_registry_is_the_config_choice_and_the_stage_is_registered():
    choices = next(f for f in dataclasses.fields(AudioEmbedConfig) if f.name == "encoder").metadata["choices"]
    assert list(choices) == list(AUDIO_ENCODERS) == ["wav2vec2", "hubert", "wavlm", "ast", "clap"]
    assert "audio-embed" in STAGES


@pytest.mark.slow
@pytest.mark.parametrize("family", list(AUDIO_ENCODERS))
def test_audio_encoders_align_with_video_rows_and_equal_a_direct_forward(family, staged):
    model_dir = staged.models[family]
    cfg = staged(f"audio_embed.encoder={family}", f"audio_embed.model={model_dir}")
    out = audio_embed.run(cfg)
    fs, video = FeatureSet(out["dir"]), FeatureSet(layout.feature_set(cfg))
    assert fs.dir.name == f"{family}-{family}" and sorted(fs.ids) == sorted(video.ids)
    assert fs.keys["audio/temporal"][0] == video.keys["video/temporal"][0]  # the same time steps as the video rows
    table = staged.table
    mute = [s for s in fs.ids if not table.loc[s, "has_audio"]]
    assert len(mute) == 1 and not fs.get("audio/present", mute)[0] and not fs.get("audio/pooled", mute).any()
    assert out["with_audio"] == len(fs.ids) - 1

    for sid in [s for s in fs.ids if table.loc[s, "has_audio"]][:2]:
        wave = load_audio(layout.audio_dir(cfg) / table.loc[sid, "file"])
        span = video.get("span", [sid]).reshape(-1, 2)
        expected = direct_pooled(family, model_dir, wave, span[:, 0].min(), span[:, 1].max())
        assert np.abs(fs.get("audio/pooled", [sid])[0] - expected).max() <= 1e-5
    provenance = json.loads(fs.attrs["provenance"])
    assert provenance["encoder"] == family and provenance["weights"].startswith(f"{model_dir}@")
    assert provenance["sampling_rate"] == (48000 if family == "clap" else 16000)
    again = audio_embed.run(cfg)  # stored: the encoder does not run again
    assert again["rows"] == out["rows"] and not again["written"]


@pytest.mark.slow
def test_window_rows_pool_their_own_span(staged, tmp_path):
    """sampling.mode=windows: a row per 0.6 s window, each the mean of the frames inside its span."""
    cfg = staged(
        f"paths.cache={tmp_path}",
        "sampling.mode=windows",
        "sampling.window=0.6",
        "sampling.stride=0.6",
        "audio_embed.encoder=wav2vec2",
        f"audio_embed.model={staged.models['wav2vec2']}",
    )
    index.run(cfg)
    embed.run(cfg)
    audio.run(cfg)
    table = read_audio_index(cfg).set_index("sample_id")  # with each sample's start on the video clock
    fs, video = FeatureSet(audio_embed.run(cfg)["dir"]), FeatureSet(layout.feature_set(cfg))
    assert fs.ids == video.ids and any("#w" in i for i in fs.ids)
    sources = video.get("source_id", fs.ids).astype(str)
    sid = next(s for s in sources if table.loc[s, "has_audio"])
    rows = [i for i, s in zip(fs.ids, sources) if s == sid]
    wave = load_audio(layout.audio_dir(cfg) / table.loc[sid, "file"])
    spans = video.get("span", rows).reshape(len(rows), -1, 2)
    pooled = fs.get("audio/pooled", rows)
    assert len(rows) >= 2 and not np.allclose(pooled[0], pooled[1])
    for got, span in zip(pooled, spans):
        lo, hi = span[:, 0].min() - table.loc[sid, "start"], span[:, 1].max() - table.loc[sid, "start"]
        assert np.abs(got - direct_pooled("wav2vec2", staged.models["wav2vec2"], wave, lo, hi)).max() <= 1e-5


def test_a_missing_or_unloadable_audio_model_is_a_usage_error(demo_root, tmp_path, capsys):
    base = [f"dataset.root={demo_root}", f"paths.cache={tmp_path}", "dataset.name=demo"]
    assert main(["audio-embed", *base]) == 2
    assert (
        "audio_embed.model: wav2vec2 needs a hub id or local path, e.g. facebook/wav2vec2-base"
        in capsys.readouterr().err
    )
    missing = f"{tmp_path}/no-such-model"
    assert main(["audio-embed", *base, f"audio_embed.model={missing}", "audio_embed.encoder=hubert"]) == 2
    err = capsys.readouterr().err
    assert f"could not load HuBERT '{missing}'" in err and "audio_embed.model=/path/to/hubert" in err
    ast = save_tiny_audio("ast", tmp_path / "ast")
    assert main(["audio-embed", *base, f"audio_embed.model={ast}", "audio_embed.encoder=clap"]) == 2
    assert "is a 'audio-spectrogram-transformer' checkpoint, not CLAP" in capsys.readouterr().err
    assert main(["audio-embed", *base, f"audio_embed.model={ast}", "audio_embed.encoder=beats"]) == 2
    assert "audio_embed.encoder" in capsys.readouterr().err


def test_a_second_writer_refuses_at_once(demo_root, tmp_path):
    model = save_tiny_audio("hubert", tmp_path / "hubert")
    cfg = load_config(
        None,
        [
            f"dataset.root={demo_root}",
            f"paths.cache={tmp_path}",
            "dataset.name=demo",
            "audio_embed.encoder=hubert",
            f"audio_embed.model={model}",
        ],
    )
    with (
        writing(cfg, layout.feature_set(cfg, layout.audio_set_name(cfg)), "another audio-embed"),
        pytest.raises(LockHeld),
    ):
        audio_embed.run(cfg)


@pytest.mark.slow
def test_clap_prompts_tag_audio_zero_shot(staged):
    clap = staged.models["clap"]
    cfg = staged(
        "audio_embed.encoder=clap",
        f"audio_embed.model={clap}",
        "text.encoder=clap",
        f"text.model={clap}",
        "text.templates=['the sound of {label}.']",
        "head.name=zero-shot",
        "run.name=clap-zero-shot",
        "head.features=clap-clap:audio/pooled",
        "head.prompts=videomae-tiny-random-prompts",
    )
    audio_embed.run(cfg)
    prompts = FeatureSet(text.run(cfg)["dir"])
    net = transformers.ClapModel.from_pretrained(clap).eval()
    tok = transformers.AutoTokenizer.from_pretrained(clap)
    with torch.no_grad():
        emb = net.get_text_features(**tok(["the sound of left."], return_tensors="pt")).pooler_output
    expected = torch.nn.functional.normalize(emb, dim=-1)[0].numpy()
    assert np.abs(prompts.get("text/pooled", ["left"])[0] - expected).max() <= 1e-5
    metrics = train.run(cfg)  # random weights: any accuracy, but the whole path runs
    assert 0.0 <= metrics["acc"] <= 1.0 and load_run(layout.run_dir(cfg)).classes == ["down", "left", "right", "up"]
