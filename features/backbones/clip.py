"""CLIP's image tower per frame, its text tower for prompts, and a tiny CLIP with a real tokenizer."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from vidprobe.features.backbones.base import (
    Backbone,
    Blocks,
    Native,
    load_pretrained,
    preprocessing,
    quiet_transformers,
    register_backbone,
    require_model,
    save_processor_config,
)
from vidprobe.features.backbones.frames import FrameEncoder, image_features_mean
from vidprobe.features.backbones.tiny import byte_level_vocab
from vidprobe.features.config import BackboneConfig
from vidprobe.features.video import CLIP_MEAN, CLIP_STD


class CLIPFrames(FrameEncoder):
    """CLIP's image tower on every sampled frame: the projected image embeddings (what CLIP compares
    with text) as `frames` (T, D), and their mean over time as `video/pooled`."""

    def frame_output(self, images: torch.Tensor):
        return self.model.get_image_features(pixel_values=images)  # transformers 5: pooler_output projected

    def blocks(self) -> Blocks:
        v = self.model.vision_model
        return Blocks(
            [v.embeddings, v.pre_layrnorm],
            list(v.encoder.layers),
            [v.post_layernorm, self.model.visual_projection],
            self.model.config.projection_dim,
        )

    def export(self, out: Path, stem: str, classifier: nn.Linear, classes: list[str]) -> tuple[str, Path]:
        self.model.save_pretrained(out)
        return "clip", out


def load_clip(model: str, name: str = "clip", num_frames: int = 8) -> CLIPFrames:
    from transformers import CLIPModel

    net, weights = load_pretrained(CLIPModel, model, "CLIP")
    pre = preprocessing(model, CLIP_MEAN, CLIP_STD)
    return CLIPFrames(
        name,
        net,
        num_frames,
        net.config.vision_config.image_size,
        weights,
        pre.mean,
        pre.std,
        pre.source,
        pooling="mean over frames of the projected per-frame image embeddings",
    )


def clip_text_features(model: str, texts: list[str], batch_size: int = 256) -> tuple[torch.Tensor, str]:
    """(len(texts), D) projected CLIP text embeddings, and the weights' identity."""
    from vidprobe.features.backbones.text import tower_text_features

    return tower_text_features("clip", model, texts, batch_size)


@contextlib.contextmanager
def clip_source(model: str, seed: int = 0) -> Iterator[str]:
    """`model` (a CLIP hub id or folder), or when empty the tiny random CLIP of `seed`, saved for the block."""
    if model:
        yield model
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield str(save_tiny_clip(Path(tmp), seed))


TINY_CLIP_TEXT = dict(
    vocab_size=514,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=64,
    bos_token_id=512,
    eos_token_id=513,
    pad_token_id=513,
)
TINY_CLIP_VISION = dict(
    image_size=64, patch_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
)


def save_tiny_clip(directory: Path, seed: int = 0) -> Path:
    """A small randomly initialised CLIP (both towers) and its tokenizer, saved with `save_pretrained`."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    quiet_transformers()
    torch.manual_seed(seed)
    CLIPModel(
        CLIPConfig(text_config=TINY_CLIP_TEXT, vision_config=TINY_CLIP_VISION, projection_dim=16)
    ).save_pretrained(directory)
    CLIPTokenizer(vocab=byte_level_vocab(), merges=[]).save_pretrained(directory)
    save_processor_config(directory, "CLIPImageProcessor", TINY_CLIP_VISION["image_size"], CLIP_MEAN, CLIP_STD)
    (Path(directory) / "vidprobe.json").write_text(json.dumps({"seed": seed}))
    return Path(directory)


@register_backbone(
    "clip",
    example="`openai/clip-vit-base-patch32`",
    input="any T (8) x `image_size`",
    pooling="per frame: projected image embedding; mean over frames",
    keys="`frames` (T, D), `video/pooled`",
    model_types=("clip",),
    tiny=save_tiny_clip,
    native=Native("CLIPModel", "CLIPConfig", 8, 224, CLIP_MEAN, CLIP_STD),
    reference=image_features_mean,
    text_tower=("CLIPModel", "CLIP", "longest"),
)
def clip(cfg: BackboneConfig) -> Backbone:
    return load_clip(require_model(cfg, "openai/clip-vit-base-patch32"))


@register_backbone(
    "clip-tiny-random",
    example="seeded random weights (`backbone.seed`), both towers and a tokenizer",
    input="any T (8) x 64",
    pooling="as `clip`",
    keys="as `clip`: for smoke tests and the prompt recipes",
)
def clip_tiny_random(cfg: BackboneConfig) -> Backbone:
    """A 2-layer CLIP with seeded random weights (64 px), saved and loaded back like a real checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        bb = load_clip(str(save_tiny_clip(Path(tmp), cfg.seed)), "clip-tiny-random")
    bb.weights = f"clip-tiny-random(seed={cfg.seed})@{bb.weights.rsplit('@', 1)[1]}"
    return bb
