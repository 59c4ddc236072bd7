"""The text towers of image-text and video-text models: class prompts in the space their image or video
tower embeds into (zero-shot, prompt-initialised and CoOp heads).

| `text.encoder` | model | tokenisation | embedding |
|---|---|---|---|
| `clip` | CLIPModel | padded to the longest prompt | projected text embedding (`get_text_features`) |
| `xclip` | XCLIPModel | padded to the longest prompt | projected text embedding, before X-CLIP's video-conditioned prompt generator (which needs the video) |
| `siglip`, `siglip2` | SiglipModel, Siglip2Model | padded to `max_position_embeddings` (64), as SigLIP's processor does | `get_text_features` |
| `clap` | ClapModel (features/audio_encoders.py) | padded to the longest prompt | projected text embedding, for audio tagging |
"""

from __future__ import annotations

import torch
from vidprobe.features.backbones.base import BACKBONES, load_pretrained
from vidprobe.features.errors import FeatureConfigError


def towers() -> dict[str, tuple[str, str, str]]:
    """The families with a text tower (`@register_backbone(..., text_tower=...)`): name -> (class, label, padding)."""
    return {name: f.text_tower for name, f in BACKBONES.items() if f.text_tower}


def tower_text_features(encoder: str, model: str, texts: list[str], batch_size: int = 256) -> tuple[torch.Tensor, str]:
    """(len(texts), D) text embeddings from `encoder`'s text tower of `model`, and the weights' identity."""
    import transformers
    from transformers import AutoTokenizer

    cls_name, what, padding = towers()[encoder]
    net, weights = load_pretrained(getattr(transformers, cls_name), model, what)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise FeatureConfigError(f"text.model: no tokenizer with the {what} model {model!r}: {err}") from None
    length = getattr(net.config.text_config, "max_position_embeddings", None) if padding == "max_length" else None
    return text_features(
        net, tokenizer, texts, batch_size, padding=padding if length else True, max_length=length
    ), weights


def text_features(net, tokenizer, texts: list[str], batch_size: int = 256, **tokenize) -> torch.Tensor:
    """(len(texts), D) `net.get_text_features` over `texts`, `batch_size` at a time (truncated to the tower)."""
    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i : i + batch_size], truncation=True, return_tensors="pt", **tokenize)
            out.append(net.get_text_features(**batch).pooler_output.float())
    return torch.cat(out) if out else torch.zeros(0, getattr(net.config, "projection_dim", 0))
