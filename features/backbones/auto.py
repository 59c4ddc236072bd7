"""`backbone.name=auto`: the family of a transformers checkpoint, read from its `config.json`."""

from __future__ import annotations

from vidprobe.features.backbones.base import BACKBONES, Backbone, model_config, register_backbone, require_model
from vidprobe.features.config import BackboneConfig
from vidprobe.features.errors import FeatureConfigError

AUDIO = {"wav2vec2", "hubert", "wavlm", "audio-spectrogram-transformer", "clap", "whisper"}
NOT_VISION = {"bert", "roberta", "gpt2", "t5", "bart", "llama", "mpnet", "distilbert"}


def detect_family(model: str) -> str:
    """The registry family that loads `model` (a hub id or local folder)."""
    kind = model_config(model, "model").model_type
    families = {t: f.name for f in BACKBONES.values() for t in f.model_types}  # each family names its model_types
    if kind in families:
        return families[kind]
    if kind in AUDIO:
        raise FeatureConfigError(
            f"backbone.model: {model!r} is an audio model ({kind}); embed audio with "
            "`vidprobe audio-embed` (or `vidprobe transcribe` for Whisper)"
        )
    if kind in NOT_VISION:
        raise FeatureConfigError(f"backbone.model: {model!r} is a text model ({kind}), not a video or image encoder")
    return "image"  # any other vision backbone AutoModel loads


@register_backbone("auto")
def auto(cfg: BackboneConfig) -> Backbone:
    family = detect_family(require_model(cfg, "MCG-NJU/videomae-base or facebook/dinov2-small"))
    return BACKBONES[family](cfg)
