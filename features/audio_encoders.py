"""Audio encoders beside Whisper, by hub id or local folder: wav2vec2, HuBERT, WavLM, AST and CLAP.

Each turns a sample's 16 kHz wave into a sequence of frame features, which `features.rows.align_frames` pools
over each video row's span exactly as it pools Whisper's encoder frames (`audio/pooled`, `audio/temporal`,
`audio/present`). Preprocessing is the checkpoint's own feature extractor (`preprocessor_config.json`:
sampling rate, normalisation, mel settings); the wave is resampled to its rate when that is not 16 kHz.

| family | model class | one frame | frame length |
|---|---|---|---|
| `wav2vec2`, `hubert`, `wavlm` | Wav2Vec2Model, HubertModel, WavLMModel | a row of `last_hidden_state` | the product of the conv strides / rate (20 ms) |
| `ast` | ASTModel | `pooler_output` (mean of the CLS and distillation tokens) of one input window | `max_length` fbank frames (10.24 s) |
| `clap` | ClapModel | the projected audio embedding (`get_audio_features`) of one window | the extractor's `max_length_s` (10 s) |

Audio longer than `chunk_seconds` (frame-level families) or than one window (AST, CLAP) is encoded window by
window, so memory stays bounded and CLAP's extractor never truncates at random; a window is at least as long
as the model's receptive field (shorter audio is zero-padded to it). `clap_text_features` embeds class
prompts with CLAP's text tower, for zero-shot audio tagging (`vidprobe text text.encoder=clap`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from features.audio import SAMPLE_RATE
from features.backbones.base import load_failure, load_pretrained, quiet_transformers
from features.errors import FeatureConfigError

FAMILIES = {"wav2vec2": ("Wav2Vec2Model", "wav2vec2", "facebook/wav2vec2-base"),
            "hubert": ("HubertModel", "HuBERT", "facebook/hubert-base-ls960"),
            "wavlm": ("WavLMModel", "WavLM", "microsoft/wavlm-base-plus"),
            "ast": ("ASTModel", "AST", "MIT/ast-finetuned-audioset-10-10-0.4593"),
            "clap": ("ClapModel", "CLAP", "laion/clap-htsat-unfused")}
FRAME_LEVEL = ("wav2vec2", "hubert", "wavlm")


def resample(wave: np.ndarray, rate: int) -> np.ndarray:
    """A 16 kHz wave at `rate` (polyphase, as scipy does it)."""
    if rate == SAMPLE_RATE:
        return wave
    from scipy.signal import resample_poly

    g = math.gcd(rate, SAMPLE_RATE)
    return resample_poly(wave, rate // g, SAMPLE_RATE // g).astype(np.float32)


@dataclass
class AudioEncoder:
    """A frozen audio model and its feature extractor; `frames(wave)` -> (F, D) at `frame_seconds` apart."""

    family: str
    net: torch.nn.Module
    extractor: object
    weights: str
    frame_seconds: float
    window_seconds: float  # audio encoded per forward pass
    dim: int
    pooling: str

    @property
    def rate(self) -> int:
        return int(self.extractor.sampling_rate)

    def frames(self, wave: np.ndarray) -> torch.Tensor:
        """(F, D) frame features of a 16 kHz mono wave, window by window."""
        wave = resample(np.asarray(wave, np.float32), self.rate)
        step = int(round(self.window_seconds * self.rate))
        out = [self.window(wave[i : i + step]) for i in range(0, max(len(wave), 1), step)]
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    def window(self, wave: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            if self.family in FRAME_LEVEL:
                wave = np.pad(wave, (0, max(0, self.receptive_field() - len(wave))))
                inputs = self.extractor(wave, sampling_rate=self.rate, return_tensors="pt")
                return self.net(input_values=inputs["input_values"]).last_hidden_state[0]
            inputs = self.extractor(wave, sampling_rate=self.rate, return_tensors="pt")
            if self.family == "ast":
                return self.net(**inputs).pooler_output
            return self.net.get_audio_features(**inputs).pooler_output  # clap: projected

    def receptive_field(self) -> int:
        c = self.net.config
        field = 1
        for kernel, stride in zip(reversed(c.conv_kernel), reversed(c.conv_stride)):
            field = (field - 1) * stride + kernel
        return field


def load_audio_encoder(family: str, model: str | None, chunk_seconds: float = 30.0) -> AudioEncoder:
    """The audio encoder `family` with the weights and feature extractor of `model` (hub id or local folder)."""
    import transformers
    from transformers import AutoFeatureExtractor

    if family not in FAMILIES:
        raise FeatureConfigError(f"audio_embed.encoder: unknown audio encoder {family!r}; valid: {', '.join(FAMILIES)}")
    cls_name, what, example = FAMILIES[family]
    if not model:
        raise FeatureConfigError(f"audio_embed.model: {family} needs a hub id or local path, e.g. {example}")
    net, weights = load_pretrained(getattr(transformers, cls_name), model, what)
    quiet_transformers()
    try:
        extractor = AutoFeatureExtractor.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise load_failure(model, f"{what} feature extractor", err) from None
    net.eval().requires_grad_(False)
    c = net.config
    if family in FRAME_LEVEL:
        hop = int(np.prod(c.conv_stride))
        return AudioEncoder(family, net, extractor, weights, hop / extractor.sampling_rate, chunk_seconds,
                            c.hidden_size, "mean of the encoder's frames (last_hidden_state) over the row's span")
    if family == "ast":
        window = extractor.max_length * 0.01  # fbank frames are 10 ms apart
        return AudioEncoder(family, net, extractor, weights, window, window, c.hidden_size,
                            "mean over the row's windows of AST's pooler_output (mean of CLS and distillation tokens)")
    window = float(extractor.max_length_s)
    return AudioEncoder(family, net, extractor, weights, window, window, c.projection_dim,
                        "mean over the row's windows of CLAP's projected audio embedding")


def clap_text_features(model: str, texts: list[str], batch_size: int = 256) -> tuple[torch.Tensor, str]:
    """(len(texts), D) projected CLAP text embeddings, and the weights' identity."""
    from transformers import AutoTokenizer, ClapModel

    net, weights = load_pretrained(ClapModel, model, "CLAP")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise FeatureConfigError(f"text.model: no tokenizer with the CLAP model {model!r}: {err}") from None
    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, return_tensors="pt")
            out.append(net.get_text_features(**batch).pooler_output)
    return torch.cat(out), weights


# --- tiny random models of each family, saved like real checkpoints (tests, benchmarks)

TINY_TEXT = dict(vocab_size=520, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64)
TINY_SPEECH = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                   conv_dim=(16, 16, 16), conv_kernel=(10, 4, 4), conv_stride=(5, 4, 4), num_conv_pos_embeddings=16,
                   num_conv_pos_embedding_groups=2)


def save_tiny_audio(family: str, directory: Path, seed: int = 0) -> Path:
    """A tiny randomly initialised model of `family`'s real architecture, with its feature extractor (and
    CLAP's tokenizer), saved with `save_pretrained`."""
    import transformers

    quiet_transformers()
    torch.manual_seed(seed)
    directory = Path(directory)
    if family in FRAME_LEVEL:
        config = getattr(transformers, FAMILIES[family][0].replace("Model", "Config"))(**TINY_SPEECH)
        getattr(transformers, FAMILIES[family][0])(config).save_pretrained(directory)
        transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                              do_normalize=True, return_attention_mask=False).save_pretrained(directory)
    elif family == "ast":
        config = transformers.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=64, num_mel_bins=32, max_length=128)
        transformers.ASTModel(config).save_pretrained(directory)
        transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=128).save_pretrained(directory)
    elif family == "clap":
        from features.backbones import byte_level_vocab

        audio = dict(spec_size=256, num_mel_bins=64, window_size=4, depths=[1, 1], num_attention_heads=[2, 2],
                     hidden_size=32, patch_embeds_hidden_size=16, projection_dim=16)
        transformers.ClapModel(transformers.ClapConfig(text_config={**TINY_TEXT, "projection_dim": 16},
                                                       audio_config=audio, projection_dim=16)).save_pretrained(directory)
        transformers.ClapFeatureExtractor(feature_size=64, sampling_rate=48000, max_length_s=2,
                                          truncation="rand_trunc").save_pretrained(directory)
        transformers.RobertaTokenizer(vocab=byte_level_vocab(), merges=[]).save_pretrained(directory)
    else:
        raise FeatureConfigError(f"no tiny {family!r}; valid: {', '.join(FAMILIES)}")
    return directory

