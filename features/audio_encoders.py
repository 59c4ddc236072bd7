"""Audio encoders beside Whisper, by hub id or local folder: wav2vec2, HuBERT, WavLM, AST and CLAP.

Each turns a sample's 16 kHz wave into a sequence of frame features on a fixed time grid (`frames(wave)` ->
(F, D), frame i centred at (i + 0.5) * `frame_seconds`), which `features.rows.align_frames` pools over each
video row's span exactly as it pools Whisper's encoder frames (`audio/pooled`, `audio/temporal`,
`audio/present`). Preprocessing is the checkpoint's own feature extractor (`preprocessor_config.json`:
sampling rate, normalisation, mel settings); the wave is resampled (polyphase) to its rate when that is not
16 kHz. The checkpoint must be of the family asked for (`config.json`'s `model_type`): loading a HuBERT
class onto wav2vec2 weights would initialise most of it at random, so it is an error, never a fallback.

| family | model class | one frame | frame length |
|---|---|---|---|
| `wav2vec2`, `hubert`, `wavlm` | Wav2Vec2Model, HubertModel, WavLMModel | a row of `last_hidden_state` | the product of the conv strides / rate (20 ms) |
| `ast` | ASTModel | `pooler_output` (mean of the CLS and distillation tokens) of the window holding it | about 0.1 s |
| `clap` | ClapModel | the projected audio embedding (`get_audio_features`) of the window holding it | about 0.1 s |

Frame-level families encode `chunk_seconds` at a time (memory stays bounded); consecutive chunks overlap by
the receptive field less one hop, so their frames continue the whole wave's grid, and audio of one chunk
gives exactly the frames of a single forward pass. AST and CLAP embed one input window at a time (AST:
`max_length` fbank frames, 10.24 s; CLAP: the extractor's `max_length_s`, 10 s, so it never truncates at
random), and a window's embedding stands for each ~0.1 s step of the real audio it encoded: a row pools the
windows it overlaps, weighted by the overlap (a row inside one window gets that window's embedding; a
1.2 s clip gets its single window's). Audio shorter than a model can take is zero-padded to its minimum
(frame-level: the receptive field; AST: one 25 ms fbank window; CLAP pads by repeating, as its extractor
does); an empty wave has no frames (`audio/present` false).

`clap_text_features` embeds class prompts with CLAP's text tower, for zero-shot audio tagging
(`vidprobe text text.encoder=clap`). `save_tiny_<family>` save tiny random models of the real
architectures with their feature extractors (and CLAP's tokenizer), for tests and benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from vidprobe.features.audio import SAMPLE_RATE
from vidprobe.features.backbones.base import load_failure, load_pretrained, model_config, quiet_transformers
from vidprobe.features.backbones.text import text_features
from vidprobe.features.errors import FeatureConfigError

GRID_SECONDS = 0.1  # AST / CLAP: the time step a window's embedding is repeated at


def resample(wave: np.ndarray, rate: int) -> np.ndarray:
    """A 16 kHz wave at `rate` (polyphase, as scipy does it)."""
    if rate == SAMPLE_RATE:
        return wave
    from scipy.signal import resample_poly

    g = math.gcd(rate, SAMPLE_RATE)
    return resample_poly(wave, rate // g, SAMPLE_RATE // g).astype(np.float32)


class AudioEncoder:
    """A frozen audio model and its checkpoint's feature extractor: `frames(wave)` -> (F, D), `frame_seconds` apart."""

    family: str
    pooling: str  # how a row's value is made, recorded in the shard
    takes: str  # the extractor output the model takes

    def __init__(self, family: str, net: torch.nn.Module, extractor, weights: str, chunk_seconds: float):
        self.family, self.net, self.extractor, self.weights = family, net, extractor, weights
        self.chunk_seconds = chunk_seconds

    @property
    def rate(self) -> int:
        return int(self.extractor.sampling_rate)

    @property
    def dim(self) -> int:
        raise NotImplementedError

    @property
    def frame_seconds(self) -> float:
        raise NotImplementedError

    def min_samples(self) -> int:
        """The shortest input (at `rate`) the model runs on; shorter audio is zero-padded to it."""
        return 1

    def frames(self, wave: np.ndarray) -> torch.Tensor:
        """(F, D) frame features of a 16 kHz mono wave."""
        raise NotImplementedError

    def forward(self, wave: np.ndarray) -> torch.Tensor:
        """The model's output for one piece of audio at `rate` (padded to `min_samples`)."""
        raise NotImplementedError

    def inputs(self, wave: np.ndarray) -> dict:
        wave = np.pad(wave, (0, max(0, self.min_samples() - len(wave))))
        return dict(self.extractor(wave, sampling_rate=self.rate, return_tensors="pt"))

    def check(self, model: str, key: str) -> None:
        """Fail at load, naming why, when the checkpoint's extractor does not make the input the model takes."""
        got = self.inputs(np.zeros(self.min_samples(), np.float32))
        if self.takes not in got:
            raise FeatureConfigError(
                f"{key}: the feature extractor of {model!r} ({type(self.extractor).__name__}) gives "
                f"{', '.join(got)}, not the {self.takes} {type(self.net).__name__} takes: is it a {self.family} checkpoint?"
            )


class FrameEncoder(AudioEncoder):
    """wav2vec2, HuBERT, WavLM: one frame per conv hop (20 ms), `chunk_seconds` of audio per forward pass."""

    pooling = "mean of the encoder's frames (last_hidden_state, one per conv hop) over the row's span"
    takes = "input_values"

    @property
    def dim(self) -> int:
        return int(self.net.config.hidden_size)

    @property
    def hop(self) -> int:
        return int(np.prod(self.net.config.conv_stride))

    @property
    def frame_seconds(self) -> float:
        return self.hop / self.rate

    def min_samples(self) -> int:
        """The receptive field of one frame: the conv stack's kernels and strides."""
        field = 1
        for kernel, stride in zip(reversed(self.net.config.conv_kernel), reversed(self.net.config.conv_stride)):
            field = (field - 1) * stride + kernel
        return field

    def frames(self, wave: np.ndarray) -> torch.Tensor:
        wave = resample(np.asarray(wave, np.float32), self.rate)
        hop, field = self.hop, self.min_samples()
        per_chunk = max(1, round(self.chunk_seconds * self.rate / hop))
        step = per_chunk * hop
        out = []
        for start in range(0, len(wave), step):  # each piece reaches into the next so its frames fill the chunk
            piece = wave[start : start + step + field - hop]
            if start and len(piece) < field:  # under one hop of new audio: a single pass makes no frame of it
                break
            out.append(self.forward(piece)[:per_chunk])
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    def forward(self, wave: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return self.net(**self.inputs(wave)).last_hidden_state[0].float()


class WindowEncoder(AudioEncoder):
    """AST, CLAP: one embedding per input window, repeated every ~0.1 s over the real audio it encoded."""

    @property
    def window_samples(self) -> int:
        raise NotImplementedError

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.rate

    @property
    def per_window(self) -> int:
        return max(1, math.ceil(self.window_seconds / GRID_SECONDS - 1e-9))

    @property
    def frame_seconds(self) -> float:
        return self.window_seconds / self.per_window

    def frames(self, wave: np.ndarray) -> torch.Tensor:
        wave = resample(np.asarray(wave, np.float32), self.rate)
        step, out = self.window_samples, []
        for start in range(0, len(wave), step):
            piece = wave[start : start + step]
            steps = min(self.per_window, math.ceil(len(piece) / step * self.per_window - 1e-9))
            out.append(self.forward(piece).expand(max(steps, 1), -1))
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    def windows(self, wave: np.ndarray) -> torch.Tensor:
        """(W, D): one embedding per window of a 16 kHz wave, before it is spread over the time grid."""
        wave = resample(np.asarray(wave, np.float32), self.rate)
        step = self.window_samples
        out = [self.forward(wave[i : i + step]) for i in range(0, len(wave), step)]
        return torch.cat(out) if out else torch.zeros(0, self.dim)


class ASTEncoder(WindowEncoder):
    pooling = (
        "mean over the row's span of a 0.1 s grid, each step the pooler_output (mean of CLS and "
        "distillation tokens) of the AST window holding it: the row's windows weighted by overlap"
    )
    takes = "input_values"

    @property
    def dim(self) -> int:
        return int(self.net.config.hidden_size)

    @property
    def window_samples(self) -> int:
        return int(self.extractor.max_length) * self.rate // 100  # fbank frames are 10 ms apart

    def min_samples(self) -> int:
        return math.ceil(0.025 * self.rate)  # one 25 ms fbank window

    def forward(self, wave: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return self.net(**self.inputs(wave)).pooler_output.float()


class CLAPEncoder(WindowEncoder):
    pooling = (
        "mean over the row's span of a 0.1 s grid, each step CLAP's projected audio embedding of the "
        "window holding it: the row's windows weighted by overlap"
    )
    takes = "input_features"

    @property
    def dim(self) -> int:
        return int(self.net.config.projection_dim)

    @property
    def window_samples(self) -> int:
        return int(self.extractor.nb_max_samples)  # max_length_s at the extractor's rate: never truncated

    def forward(self, wave: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return self.net.get_audio_features(**self.inputs(wave)).pooler_output.float()


# --- the registry: a family is its transformers class, its encoder, and its tiny model


@dataclass(frozen=True)
class AudioFamily:
    model_class: str  # the transformers class the weights load into
    what: str  # its name in messages
    example: str  # a hub id, for messages
    encoder: type[AudioEncoder]
    save_tiny: Callable[..., Path]


AUDIO_ENCODERS: dict[str, AudioFamily] = {}


def register_audio_encoder(name: str, model_class: str, what: str, example: str, encoder: type[AudioEncoder]):
    """Registers a family under `name`; decorates the function that saves its tiny random model."""

    def deco(save_tiny):
        AUDIO_ENCODERS[name] = AudioFamily(model_class, what, example, encoder, save_tiny)
        return save_tiny

    return deco


def audio_family(family: str, key: str = "audio_embed.encoder") -> AudioFamily:
    if family not in AUDIO_ENCODERS:
        raise FeatureConfigError(f"{key}: unknown audio encoder {family!r}; valid: {', '.join(AUDIO_ENCODERS)}")
    return AUDIO_ENCODERS[family]


def rekeyed(err: FeatureConfigError, key: str) -> FeatureConfigError:
    """The loader's message names `backbone.model`; here the model comes from `key`."""
    return FeatureConfigError(str(err).replace("backbone.model", key))


def load_checked(cls, model: str, what: str, key: str):
    """(net, weights identity) of `cls` from `model`, refusing a checkpoint of another architecture."""
    try:
        found = model_config(model, what).model_type
        if found != cls.config_class.model_type:
            other = [n for n, f in AUDIO_ENCODERS.items() if f.what != what and _model_type(f) == found]
            hint = f" (audio_embed.encoder={other[0]} reads it)" if other else ""
            raise FeatureConfigError(
                f"{key}: {model!r} is a {found!r} checkpoint, not {what} "
                f"({cls.config_class.model_type!r}){hint}; loading it would leave weights random"
            )
        return load_pretrained(cls, model, what)
    except FeatureConfigError as err:
        raise rekeyed(err, key) from None


def _model_type(f: AudioFamily) -> str:
    import transformers

    return getattr(transformers, f.model_class).config_class.model_type


def load_audio_encoder(
    family: str, model: str | None, chunk_seconds: float = 30.0, key: str = "audio_embed.model"
) -> AudioEncoder:
    """The audio encoder `family` with the weights and feature extractor of `model` (hub id or local folder)."""
    import transformers
    from transformers import AutoFeatureExtractor

    f = audio_family(family)
    if not model:
        raise FeatureConfigError(f"{key}: {family} needs a hub id or local path, e.g. {f.example}")
    net, weights = load_checked(getattr(transformers, f.model_class), model, f.what, key)
    quiet_transformers()
    try:
        extractor = AutoFeatureExtractor.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise rekeyed(load_failure(model, f"{f.what} feature extractor", err), key) from None
    encoder = f.encoder(family, net.eval().requires_grad_(False), extractor, weights, chunk_seconds)
    encoder.check(model, key)
    return encoder


def clap_text_features(
    model: str, texts: list[str], batch_size: int = 256, key: str = "text.model"
) -> tuple[torch.Tensor, str]:
    """(len(texts), projection_dim) CLAP text embeddings (projected, not normalised), and the weights' identity."""
    from transformers import AutoTokenizer, ClapModel

    net, weights = load_checked(ClapModel, model, "CLAP", key)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise FeatureConfigError(f"{key}: no tokenizer with the CLAP model {model!r}: {err}") from None
    return text_features(net, tokenizer, texts, batch_size, padding=True), weights


# --- tiny random models of each family, saved like real checkpoints (tests, benchmarks)

TINY_SPEECH = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    conv_stride=(5, 2, 2, 2, 2, 2, 2),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)  # the real conv geometry: 20 ms hops


def _save_tiny_frame_level(model_class: str, directory, seed: int) -> Path:
    import transformers

    quiet_transformers()
    torch.manual_seed(seed)
    directory = Path(directory)
    config = getattr(transformers, model_class).config_class(**TINY_SPEECH)
    getattr(transformers, model_class)(config).save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    ).save_pretrained(directory)
    return directory


@register_audio_encoder("wav2vec2", "Wav2Vec2Model", "wav2vec2", "facebook/wav2vec2-base", FrameEncoder)
def save_tiny_wav2vec2(directory, seed: int = 0) -> Path:
    """A tiny random Wav2Vec2Model (2 layers, 32-d, the real 400-sample field and 320-sample hop) and its
    feature extractor."""
    return _save_tiny_frame_level("Wav2Vec2Model", directory, seed)


@register_audio_encoder("hubert", "HubertModel", "HuBERT", "facebook/hubert-base-ls960", FrameEncoder)
def save_tiny_hubert(directory, seed: int = 0) -> Path:
    """A tiny random HubertModel and its feature extractor."""
    return _save_tiny_frame_level("HubertModel", directory, seed)


@register_audio_encoder("wavlm", "WavLMModel", "WavLM", "microsoft/wavlm-base-plus", FrameEncoder)
def save_tiny_wavlm(directory, seed: int = 0) -> Path:
    """A tiny random WavLMModel and its feature extractor."""
    return _save_tiny_frame_level("WavLMModel", directory, seed)


@register_audio_encoder("ast", "ASTModel", "AST", "MIT/ast-finetuned-audioset-10-10-0.4593", ASTEncoder)
def save_tiny_ast(directory, seed: int = 0) -> Path:
    """A tiny random ASTModel (32 mel bins, 128 fbank frames: 1.28 s windows) and its feature extractor."""
    import transformers

    quiet_transformers()
    torch.manual_seed(seed)
    directory = Path(directory)
    config = transformers.ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_mel_bins=32,
        max_length=128,
    )
    transformers.ASTModel(config).save_pretrained(directory)
    transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=128).save_pretrained(directory)
    return directory


def tiny_roberta_tokenizer():
    """A character-level RoBERTa tokenizer (GPT-2 byte alphabet, no merges) with RoBERTa's special ids
    (<s> 0, <pad> 1, </s> 2, <unk> 3), as CLAP's text tower expects."""
    import transformers
    from vidprobe.features.backbones import byte_level_vocab

    chars = [c for c in byte_level_vocab() if len(c) == 1]
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{c: 4 + i for i, c in enumerate(chars)}}
    vocab["<mask>"] = len(vocab)
    return transformers.RobertaTokenizer(
        vocab=vocab, merges=[], model_max_length=TINY_CLAP_TEXT["max_position_embeddings"] - 2
    )


TINY_CLAP_TEXT = dict(
    vocab_size=261,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=130,
    projection_dim=16,
)
TINY_CLAP_AUDIO = dict(
    spec_size=256,
    num_mel_bins=64,
    window_size=4,
    depths=[1, 1],
    num_attention_heads=[2, 2],
    hidden_size=32,
    patch_embeds_hidden_size=16,
    projection_dim=16,
)


@register_audio_encoder("clap", "ClapModel", "CLAP", "laion/clap-htsat-unfused", CLAPEncoder)
def save_tiny_clap(directory, seed: int = 0) -> Path:
    """A tiny random ClapModel (HTSAT audio tower, RoBERTa text tower, 16-d projections), its feature extractor
    (48 kHz, 2 s windows, unfused) and a character-level tokenizer."""
    import transformers

    quiet_transformers()
    torch.manual_seed(seed)
    directory = Path(directory)
    config = transformers.ClapConfig(text_config=TINY_CLAP_TEXT, audio_config=TINY_CLAP_AUDIO, projection_dim=16)
    transformers.ClapModel(config).save_pretrained(directory)
    transformers.ClapFeatureExtractor(
        feature_size=64, sampling_rate=48000, max_length_s=2, truncation="rand_trunc"
    ).save_pretrained(directory)
    tiny_roberta_tokenizer().save_pretrained(directory)
    return directory


def save_tiny_audio(family: str, directory, seed: int = 0) -> Path:
    """The tiny random model of `family` (`save_tiny_<family>`), saved with `save_pretrained` into `directory`."""
    return audio_family(family, "family").save_tiny(directory, seed)
