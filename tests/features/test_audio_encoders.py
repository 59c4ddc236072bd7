"""features/audio_encoders.py with tiny random wav2vec2, HuBERT, WavLM, AST and CLAP models saved and loaded by
path: frames equal a direct transformers forward (the checkpoint's feature extractor, the model class), long
audio keeps the whole wave's time grid, AST/CLAP windows pool by overlap, and CLAP's text tower for prompts."""

import json

import numpy as np
import pytest
import torch
import transformers
from scipy.signal import resample_poly
from vidprobe.features.audio_encoders import (
    AUDIO_ENCODERS,
    clap_text_features,
    load_audio_encoder,
    save_tiny_ast,
    save_tiny_audio,
    save_tiny_clap,
    save_tiny_hubert,
    save_tiny_wav2vec2,
    save_tiny_wavlm,
)
from vidprobe.features.errors import FeatureConfigError
from vidprobe.features.rows import StoredRows, align_frames

FRAME_LEVEL = ["wav2vec2", "hubert", "wavlm"]
CLASSES = {
    "wav2vec2": transformers.Wav2Vec2Model,
    "hubert": transformers.HubertModel,
    "wavlm": transformers.WavLMModel,
    "ast": transformers.ASTModel,
    "clap": transformers.ClapModel,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """family -> the folder of its tiny random model, each saved by its own helper."""
    root = tmp_path_factory.mktemp("audio-models")
    savers = {
        "wav2vec2": save_tiny_wav2vec2,
        "hubert": save_tiny_hubert,
        "wavlm": save_tiny_wavlm,
        "ast": save_tiny_ast,
        "clap": save_tiny_clap,
    }
    return {family: save(root / family, seed=2) for family, save in savers.items()}


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.RandomState(seed).randn(int(16000 * seconds)) * 0.1).astype(np.float32)


def at_rate(wave16k: np.ndarray, rate: int) -> np.ndarray:
    return resample_poly(wave16k, rate // 16000, 1).astype(np.float32) if rate != 16000 else wave16k


def direct(family: str, model_dir, wave16k: np.ndarray, resampled: bool = False) -> torch.Tensor:
    """The model's output on one piece of 16 kHz audio (or audio already at the extractor's rate), by
    transformers alone: (frames, D) or (1, D)."""
    extractor = transformers.AutoFeatureExtractor.from_pretrained(model_dir)
    net = CLASSES[family].from_pretrained(model_dir).eval()
    rate = extractor.sampling_rate
    wave = wave16k if resampled else at_rate(wave16k, rate)
    inputs = extractor(wave, sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        if family == "ast":
            return net(**inputs).pooler_output
        if family == "clap":
            return net.get_audio_features(**inputs).pooler_output
        return net(**inputs).last_hidden_state[0]


@pytest.mark.parametrize("family", FRAME_LEVEL)
def test_frame_level_frames_equal_a_direct_forward(family, tiny):
    enc = load_audio_encoder(family, str(tiny[family]))
    wave = noise(1.0)
    expected = direct(family, tiny[family], wave)
    frames = enc.frames(wave)
    assert frames.shape == expected.shape and np.abs(frames.numpy() - expected.numpy()).max() <= 1e-5
    assert enc.frame_seconds == pytest.approx(np.prod(enc.net.config.conv_stride) / 16000)
    assert enc.weights.startswith(f"{tiny[family]}@")


def test_long_audio_is_chunked_on_the_whole_wave_time_grid(tiny):
    enc = load_audio_encoder("wav2vec2", str(tiny["wav2vec2"]), chunk_seconds=0.24)
    net = transformers.Wav2Vec2Model.from_pretrained(tiny["wav2vec2"])
    wave = noise(1.3, seed=1)
    count = int(net._get_feat_extract_output_lengths(torch.tensor(len(wave))))
    field = next(n for n in range(1, 1000) if net._get_feat_extract_output_lengths(torch.tensor(n)) == 1)
    hop = int(np.prod(net.config.conv_stride))
    per = round(0.24 * 16000 / hop)
    assert (field, hop, per) == (400, 320, 12)  # wav2vec2's own 25 ms field and 20 ms hop
    frames = enc.frames(wave)
    assert frames.shape[0] == count  # as many frames as one forward pass over the whole wave
    for k, start in enumerate(range(0, len(wave), per * hop)):
        piece = direct("wav2vec2", tiny["wav2vec2"], wave[start : start + per * hop + field - hop])
        got = frames[k * per : (k + 1) * per]
        assert np.abs(got.numpy() - piece[: len(got)].numpy()).max() <= 1e-5


@pytest.mark.parametrize("family", ["ast", "clap"])
def test_window_families_embed_each_window_and_pool_rows_by_overlap(family, tiny):
    enc = load_audio_encoder(family, str(tiny[family]))
    win = enc.window_seconds
    assert win == pytest.approx({"ast": 1.28, "clap": 2.0}[family])
    wave = noise(2.5 * win, seed=3)
    step, high = int(round(win * enc.rate)), at_rate(wave, enc.rate)  # resampled whole, then cut
    windows = [direct(family, tiny[family], high[i : i + step], resampled=True)[0] for i in range(0, len(high), step)]
    assert len(windows) == 3
    assert np.abs(enc.windows(wave).numpy() - torch.stack(windows).numpy()).max() <= 1e-5
    frames = enc.frames(wave)
    assert frames.shape[0] == int(np.ceil(len(wave) / 16000 / enc.frame_seconds - 1e-9))

    # rows: the first window, a span straddling the first two equally, one inside the second, most of the wave
    spans = np.array([[0.0, win], [0.55 * win, 1.45 * win], [1.1 * win, 1.6 * win], [0.0, 2.4 * win]])
    rows = StoredRows(["a", "b", "c", "d"], ["s"] * 4, spans, 0)
    pooled, _, present = align_frames(enc.frames, rows, {"s": (wave, 0.0)}, 16000, enc.frame_seconds, enc.dim)
    w = [x.numpy() for x in windows]
    assert present.all()
    for got, want in zip(pooled[:3], [w[0], (w[0] + w[1]) / 2, w[1]]):
        assert np.abs(got - want).max() <= 1e-5
    # the documented pooling: each window stands for the grid steps of the audio it holds; a row averages the
    # steps whose centre falls in its span
    n, g = round(win / enc.frame_seconds), enc.frame_seconds
    steps = [(k, k * n + j) for k in range(3) for j in range(int(np.ceil(min(n, (len(high) - k * step) / step * n))))]
    inside = [k for k, j in steps if 0.0 <= (j + 0.5) * g < 2.4 * win]
    assert inside.count(2) < n and np.abs(pooled[3] - np.mean([w[k] for k in inside], 0)).max() <= 1e-5


def test_clap_frames_follow_the_extractor_rate_and_a_clip_shorter_than_a_window(tiny):
    enc = load_audio_encoder("clap", str(tiny["clap"]))
    assert enc.rate == 48000
    wave = noise(1.2, seed=4)
    expected = direct("clap", tiny["clap"], wave)[0].numpy()
    frames = enc.frames(wave)
    assert frames.shape == (12, 16) and np.abs(frames.numpy() - expected).max() <= 1e-5


@pytest.mark.parametrize("family", list(AUDIO_ENCODERS))
def test_too_short_audio_is_padded_and_no_audio_has_no_frames(family, tiny):
    enc = load_audio_encoder(family, str(tiny[family]))
    for n in (1, 30):
        frames = enc.frames(noise(n / 16000))
        assert frames.shape == (1, enc.dim) and torch.isfinite(frames).all()
    assert enc.frames(np.zeros(0, np.float32)).shape == (0, enc.dim)


def test_preprocessing_follows_the_feature_extractor_config(tmp_path):
    model_dir = save_tiny_audio("wav2vec2", tmp_path / "w2v")
    wave = noise(1.0) + 0.3  # an offset that normalising removes
    before = load_audio_encoder("wav2vec2", str(model_dir)).frames(wave)
    conf = json.loads((model_dir / "preprocessor_config.json").read_text())
    conf["do_normalize"] = False
    (model_dir / "preprocessor_config.json").write_text(json.dumps(conf))
    after = load_audio_encoder("wav2vec2", str(model_dir)).frames(wave)
    assert before.shape == after.shape and not torch.allclose(before, after)
    assert np.abs(after.numpy() - direct("wav2vec2", model_dir, wave).numpy()).max() <= 1e-5


def test_a_model_that_cannot_be_used_is_named_and_never_replaced(tiny, tmp_path):
    with pytest.raises(
        FeatureConfigError, match="unknown audio encoder 'beats'; valid: wav2vec2, hubert, wavlm, ast, clap"
    ):
        load_audio_encoder("beats", str(tiny["wav2vec2"]))
    with pytest.raises(
        FeatureConfigError,
        match=r"audio_embed.model: .* is a 'wav2vec2' checkpoint, not HuBERT .*"
        r"audio_embed.encoder=wav2vec2",
    ):
        load_audio_encoder("hubert", str(tiny["wav2vec2"]))
    with pytest.raises(FeatureConfigError, match="not the input_values ASTModel takes"):
        (tmp_path / "ast").mkdir()
        for name in ("config.json", "model.safetensors"):
            (tmp_path / "ast" / name).write_bytes((tiny["ast"] / name).read_bytes())
        (tmp_path / "ast" / "preprocessor_config.json").write_bytes(
            (tiny["clap"] / "preprocessor_config.json").read_bytes()
        )
        load_audio_encoder("ast", str(tmp_path / "ast"))
    with pytest.raises(
        FeatureConfigError,
        match=r"(?s)audio_embed.model: could not load wav2vec2 'nobody/no-such-w2v'.*"
        r"audio_embed.model=/path/to/wav2vec2",
    ):
        load_audio_encoder("wav2vec2", "nobody/no-such-w2v")


def test_clap_text_features_equal_a_direct_get_text_features(tiny):
    texts = ["the sound of rain.", "a dog barking in the distance, far away.", "up"]
    got, weights = clap_text_features(str(tiny["clap"]), texts, batch_size=2)
    net = transformers.ClapModel.from_pretrained(tiny["clap"]).eval()
    tok = transformers.AutoTokenizer.from_pretrained(tiny["clap"])
    with torch.no_grad():
        expected = net.get_text_features(**tok(texts, padding=True, return_tensors="pt")).pooler_output
    assert got.shape == (3, net.config.projection_dim) and weights.startswith(f"{tiny['clap']}@")
    assert np.abs(got.numpy() - expected.numpy()).max() <= 1e-5
    with pytest.raises(FeatureConfigError, match=r"text.model: .* is a 'audio-spectrogram-transformer' checkpoint"):
        clap_text_features(str(tiny["ast"]), texts)
