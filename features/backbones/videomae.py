"""VideoMAE: any checkpoint (pre-trained or fine-tuned, with or without `fc_norm`) by hub id or path."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch
from torch import nn
from vidprobe.features.backbones.base import (
    Backbone,
    Blocks,
    Native,
    load_pretrained,
    model_config,
    preprocessing,
    quiet_transformers,
    register_backbone,
    require_model,
    save_processor_config,
)
from vidprobe.features.config import BackboneConfig
from vidprobe.features.video import IMAGENET_MEAN, IMAGENET_STD


class VideoMAE(Backbone):
    """VideoMAE has no CLS token: `video/pooled` is the mean over all patch tokens, passed through the
    checkpoint's own `fc_norm` when it has one (fine-tuned checkpoints with `use_mean_pooling`);
    `video/temporal` is the spatial mean of the tokens of each tubelet step."""

    feature_keys = ("video/pooled", "video/temporal")

    def __init__(self, *args, tubelet_size: int, fc_norm: torch.nn.Module | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tubelet_size, self.fc_norm = tubelet_size, fc_norm
        self.pooling = (
            "fc_norm(mean over all patch tokens), the checkpoint's own"
            if fc_norm is not None
            else "mean over all patch tokens (VideoMAE has no CLS token)"
        )

    def embed(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = self.model(pixel_values=pixels).last_hidden_state  # (B, T/tubelet * h * w, D)
        b, _, d = tokens.shape
        temporal = tokens.reshape(b, self.num_frames // self.tubelet_size, -1, d).mean(dim=2)
        pooled = tokens.mean(dim=1)
        out = {"video/pooled": pooled if self.fc_norm is None else self.fc_norm(pooled), "video/temporal": temporal}
        return self.with_tokens(out, tokens, pixels)

    def token_layout(self, hidden: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """The patch tokens as tubelet steps x rows x columns (VideoMAE has no CLS token)."""
        steps = frames // self.tubelet_size
        side = math.isqrt(hidden.shape[1] // steps)
        return hidden.reshape(batch, steps, side, side, hidden.shape[-1])

    layer_pooling = "mean over all patch tokens; temporal: spatial mean per tubelet step"

    def hidden_states(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model(pixel_values=pixels, output_hidden_states=True).hidden_states

    def pool_layer(self, hidden: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
        d = hidden.shape[-1]
        return {
            "video/pooled": hidden.mean(1),
            "video/temporal": hidden.reshape(batch, self.num_frames // self.tubelet_size, -1, d).mean(2),
        }

    def blocks(self) -> Blocks:
        m = self.model
        return Blocks(
            [m.embeddings],
            list(m.encoder.layer),
            [n for n in (m.layernorm, self.fc_norm) if n is not None],
            m.config.hidden_size,
        )

    def export(self, out: Path, stem: str, classifier: nn.Linear, classes: list[str]) -> tuple[str, Path]:
        if self.fc_norm is None:
            self.model.save_pretrained(out)
            return "videomae", out
        # keep the checkpoint's fc_norm: a video classifier whose own forward gives the fine-tuned logits
        from transformers import VideoMAEForVideoClassification

        config = self.model.config.__class__.from_dict(self.model.config.to_dict())
        config.id2label, config.label2id = dict(enumerate(classes)), {c: i for i, c in enumerate(classes)}
        full = VideoMAEForVideoClassification(config)
        full.videomae.load_state_dict(self.model.state_dict())
        full.fc_norm.load_state_dict(self.fc_norm.state_dict())
        full.classifier.load_state_dict(classifier.state_dict())
        full.save_pretrained(out)
        return "videomae", out


def load_videomae(model: str, name: str = "videomae") -> VideoMAE:
    """A VideoMAE encoder from a hub id or a local directory (the path every user takes)."""
    from transformers import VideoMAEForVideoClassification, VideoMAEModel

    config = model_config(model, "VideoMAE")
    fc_norm = None
    if config.use_mean_pooling and "VideoMAEForVideoClassification" in (config.architectures or []):
        full, weights = load_pretrained(VideoMAEForVideoClassification, model, "VideoMAE")
        net, fc_norm = full.videomae, full.fc_norm
    else:
        net, weights = load_pretrained(VideoMAEModel, model, "VideoMAE")
    c, pre = net.config, preprocessing(model, IMAGENET_MEAN, IMAGENET_STD)
    return VideoMAE(
        name,
        net,
        c.num_frames,
        c.image_size,
        weights,
        pre.mean,
        pre.std,
        pre.source,
        tubelet_size=c.tubelet_size,
        fc_norm=fc_norm,
    )


TINY_VIDEOMAE = dict(
    image_size=64,
    patch_size=16,
    num_channels=3,
    num_frames=8,
    tubelet_size=2,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    use_mean_pooling=False,
)


def save_tiny_videomae(directory: Path, seed: int = 0) -> Path:
    """Build a small randomly initialised VideoMAE from a config and `save_pretrained` it, with the image
    processor a real checkpoint carries."""
    from transformers import VideoMAEConfig, VideoMAEModel

    quiet_transformers()
    torch.manual_seed(seed)
    VideoMAEModel(VideoMAEConfig(**TINY_VIDEOMAE)).save_pretrained(directory)
    save_processor_config(directory, "VideoMAEImageProcessor", TINY_VIDEOMAE["image_size"], IMAGENET_MEAN, IMAGENET_STD)
    return directory


def patch_token_mean(net, pixels: torch.Tensor) -> torch.Tensor:
    """VideoMAE's own forward, its patch tokens averaged: what `video/pooled` is without an fc_norm."""
    return net(pixel_values=pixels).last_hidden_state.mean(1)


@register_backbone(
    "videomae",
    example="`MCG-NJU/videomae-base`, fine-tuned ones too",
    input="exactly `num_frames` x `image_size`",
    pooling="mean of all patch tokens (no CLS), through the checkpoint's `fc_norm` when it has one",
    keys="`video/pooled`, `video/temporal` (T/tubelet)",
    model_types=("videomae",),
    tiny=save_tiny_videomae,
    native=Native("VideoMAEModel", "VideoMAEConfig", 16, 224),
    reference=patch_token_mean,
)
def videomae(cfg: BackboneConfig) -> Backbone:
    return load_videomae(require_model(cfg, "MCG-NJU/videomae-base"))


@register_backbone(
    "videomae-tiny-random",
    example="seeded random weights (`backbone.seed`), saved and loaded back like a real checkpoint",
    input="8 x 64",
    pooling="as `videomae`",
    keys="as `videomae`: for smoke tests and the demo's variants",
)
def videomae_tiny_random(cfg: BackboneConfig) -> Backbone:
    """A 2-layer VideoMAE with seeded random weights: offline, fast, for smoke tests.

    It is saved and loaded back through `load_videomae`, the path real checkpoints take.
    """
    with tempfile.TemporaryDirectory() as tmp:
        bb = load_videomae(str(save_tiny_videomae(Path(tmp), cfg.seed)), "videomae-tiny-random")
    bb.weights = f"videomae-tiny-random(seed={cfg.seed})@{bb.weights.rsplit('@', 1)[1]}"
    return bb
