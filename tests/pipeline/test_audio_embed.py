"""`vidprobe audio-embed` with tiny random wav2vec2, HuBERT, WavLM, AST and CLAP models saved and loaded by path:
rows aligned with the video feature set, values equal to a direct transformers forward, preprocessing from the
checkpoint's feature extractor config, and CLAP prompts classifying audio zero-shot."""

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
import transformers

from features.audio import load_audio
from features.audio_encoders import FAMILIES, load_audio_encoder, resample, save_tiny_audio
from features.store import FeatureSet
from heads.runs import load_run
from pipeline import audio, audio_embed, embed, index, layout, text, train
from pipeline.cli import main
from pipeline.config import load_config

pytestmark = pytest.mark.slow  # five audio families through four stages


@pytest.fixture(scope="module")
def mixed_root(demo_root, tmp_path_factory):
    """The demo dataset with one clip's audio stream removed."""
    root = tmp_path_factory.mktemp("mixed") / "data"
    shutil.copytree(demo_root, root)
    clip = next(iter(sorted((root / "train").rglob("*.mp4"))))
    silent = clip.with_suffix(".tmp.mp4")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(clip), "-an", "-c:v", "copy", str(silent)], check=True)
    silent.replace(clip)
    return root


def direct_frames(family: str, model_dir, wave16k: np.ndarray) -> torch.Tensor:
    """(F, D) frame features from the transformers model and feature extractor themselves."""
    extractor = transformers.AutoFeatureExtractor.from_pretrained(model_dir)
    net = getattr(transformers, FAMILIES[family][0]).from_pretrained(model_dir).eval()
    wave = resample(wave16k, extractor.sampling_rate)
    with torch.no_grad():
        if family == "ast":
            return net(**extractor(wave, sampling_rate=16000, return_tensors="pt")).pooler_output
        if family == "clap":
            return net.get_audio_features(**extractor(wave, sampling_rate=48000, return_tensors="pt")).pooler_output
        wave = np.pad(wave, (0, max(0, 10 - len(wave))))
        return net(**extractor(wave, sampling_rate=16000, return_tensors="pt")).last_hidden_state[0]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_audio_encoders_align_with_video_rows_and_equal_a_direct_forward(family, mixed_root, tmp_path):
    model_dir = save_tiny_audio(family, tmp_path / family, seed=3)
    overrides = [f"dataset.root={mixed_root}", f"paths.cache={tmp_path / 'cache'}", "dataset.name=demo",
                 "task.traits=[]", "embed.num_workers=0", "index.num_workers=1", "backbone.name=videomae-tiny-random",
                 f"audio_embed.encoder={family}", f"audio_embed.model={model_dir}"]
    cfg = load_config(None, overrides)
    index.run(cfg)
    embed.run(cfg)
    table = audio.run(cfg).set_index("sample_id")
    out = audio_embed.run(cfg)
    fs, video = FeatureSet(out["dir"]), FeatureSet(layout.feature_set(cfg))
    assert fs.dir.name == f"{family}-{family}" and sorted(fs.ids) == sorted(video.ids)
    assert fs.keys["audio/temporal"][0] == video.keys["video/temporal"][0]  # the same time steps as the video rows
    mute = [s for s in fs.ids if not table.loc[s, "has_audio"]]
    assert len(mute) == 1 and not fs.get("audio/present", mute)[0] and not fs.get("audio/pooled", mute).any()

    sid = next(s for s in fs.ids if table.loc[s, "has_audio"])
    wave = load_audio(layout.audio_dir(cfg) / table.loc[sid, "file"])
    frames = direct_frames(family, model_dir, wave)
    enc = load_audio_encoder(family, str(model_dir))
    centres = (np.arange(len(frames)) + 0.5) * enc.frame_seconds
    lo, hi = video.get("span", [sid]).reshape(-1, 2)[:, 0].min(), video.get("span", [sid]).reshape(-1, 2)[:, 1].max()
    inside = (centres >= lo) & (centres < hi)
    expected = (frames[inside] if inside.any() else frames).mean(0).numpy()
    assert np.abs(fs.get("audio/pooled", [sid])[0] - expected).max() <= 1e-5
    provenance = json.loads(fs.attrs["provenance"])
    assert provenance["encoder"] == family and str(model_dir) in provenance["weights"]
    again = audio_embed.run(cfg)  # stored: the encoder does not run again
    assert again["rows"] == out["rows"]


def test_preprocessing_follows_the_feature_extractor_config(tmp_path):
    model_dir = save_tiny_audio("wav2vec2", tmp_path / "w2v")
    wave = (np.random.RandomState(0).randn(16000) * 0.1 + 0.3).astype(np.float32)  # an offset that normalising removes
    before = load_audio_encoder("wav2vec2", str(model_dir)).frames(wave)
    conf = json.loads((model_dir / "preprocessor_config.json").read_text())
    conf["do_normalize"] = False
    (model_dir / "preprocessor_config.json").write_text(json.dumps(conf))
    after = load_audio_encoder("wav2vec2", str(model_dir)).frames(wave)
    assert before.shape == after.shape and not torch.allclose(before, after)


def test_long_audio_is_encoded_window_by_window(tmp_path):
    enc = load_audio_encoder("ast", str(save_tiny_audio("ast", tmp_path / "ast")))
    wave = (np.random.RandomState(1).randn(int(16000 * enc.window_seconds * 2.5)) * 0.1).astype(np.float32)
    frames = enc.frames(wave)
    assert frames.shape[0] == 3  # two whole windows and a part
    step = int(round(enc.window_seconds * 16000))
    torch.testing.assert_close(frames[1], enc.frames(wave[step : 2 * step])[0])


def test_a_missing_or_unloadable_audio_model_is_a_usage_error(demo_root, tmp_path, capsys):
    base = [f"dataset.root={demo_root}", f"paths.cache={tmp_path}", "dataset.name=demo", "index.num_workers=1"]
    assert main(["audio-embed", *base]) == 2
    assert "audio_embed.model: wav2vec2 needs a hub id or local path" in capsys.readouterr().err
    assert main(["audio-embed", *base, f"audio_embed.model={tmp_path / 'missing'}", "audio_embed.encoder=hubert"]) == 2
    err = capsys.readouterr().err
    assert "could not load HuBERT" in err and "local directory" in err


def test_clap_prompts_tag_audio_zero_shot(demo_cfg, tmp_path):
    clap = save_tiny_audio("clap", tmp_path / "clap", seed=1)
    cfg = demo_cfg("audio_embed.encoder=clap", f"audio_embed.model={clap}", "text.encoder=clap", f"text.model={clap}",
                   "text.templates=['the sound of {label}.']", "task.traits=[]", "head.name=zero-shot",
                   "head.features=clap-clap:audio/pooled", "head.prompts=videomae-tiny-random-prompts")
    index.run(cfg)
    embed.run(cfg)
    audio.run(cfg)
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
