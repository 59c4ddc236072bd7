"""Frozen video backbones behind a registry. A backbone embeds clips and knows nothing of labels."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from features.video import IMAGENET_MEAN, IMAGENET_STD
from pipeline.config import BackboneConfig, ConfigError

BACKBONES: dict[str, Callable[[BackboneConfig], "Backbone"]] = {}


def register_backbone(name: str):
    def deco(fn):
        BACKBONES[name] = fn
        return fn

    return deco


def build_backbone(cfg: BackboneConfig) -> "Backbone":
    if cfg.name not in BACKBONES:
        raise ConfigError(f"backbone.name: unknown backbone {cfg.name!r}; valid: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[cfg.name](cfg)


@dataclass
class Backbone:
    """A frozen model plus what its input must look like and what it writes."""

    name: str
    model: torch.nn.Module
    num_frames: int
    image_size: int
    tubelet_size: int
    weights: str  # what identifies the weights: hub id or path, and a digest of the files
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    pooling: str = "mean over all patch tokens (VideoMAE has no CLS token)"
    feature_keys: tuple = ("video/pooled", "video/temporal")
    extra: dict = field(default_factory=dict)

    @torch.no_grad()
    def embed(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, T, 3, S, S) normalised clips -> {'video/pooled': (B, D), 'video/temporal': (B, T/tubelet, D)}."""
        tokens = self.model(pixel_values=pixels).last_hidden_state  # (B, T/tubelet * h * w, D)
        b, _, d = tokens.shape
        steps = self.num_frames // self.tubelet_size
        temporal = tokens.reshape(b, steps, -1, d).mean(dim=2)
        return {"video/pooled": tokens.mean(dim=1), "video/temporal": temporal}

    def provenance(self) -> dict:
        return {
            "backbone": self.name,
            "weights": self.weights,
            "pooling": self.pooling,
            "num_frames": self.num_frames,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
        }


def quiet_transformers() -> None:
    """One progress bar per stage is ours; the loader's and saver's add nothing."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def files_digest(directory: Path) -> str:
    """sha256 over the weight files of a saved model, so a shard names exactly what made it."""
    h = hashlib.sha256()
    for f in sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.bin")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def load_videomae(model: str) -> Backbone:
    """Load a VideoMAE encoder from a hub id or a local directory (the path every user takes)."""
    from transformers import VideoMAEModel

    quiet_transformers()
    try:
        net = VideoMAEModel.from_pretrained(model)
    except OSError as err:
        raise ConfigError(
            f"backbone.model: could not load VideoMAE {model!r}: {err}\n"
            "Pass a local directory (backbone.model=/path/to/videomae) or make sure the hub id is "
            "cached (HF_HUB_OFFLINE=1 allows only cached ids)."
        ) from None
    net.eval().requires_grad_(False)
    c = net.config
    local = Path(model)
    digest = files_digest(local) if local.is_dir() else getattr(c, "_commit_hash", None) or "hub"
    return Backbone(
        name="videomae",
        model=net,
        num_frames=c.num_frames,
        image_size=c.image_size,
        tubelet_size=c.tubelet_size,
        weights=f"{model}@{digest}",
    )


@register_backbone("videomae")
def videomae(cfg: BackboneConfig) -> Backbone:
    if not cfg.model:
        raise ConfigError("backbone.model: videomae needs a hub id or local path, e.g. MCG-NJU/videomae-base")
    return load_videomae(cfg.model)


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
    """Build a small randomly initialised VideoMAE from a config and `save_pretrained` it."""
    from transformers import VideoMAEConfig, VideoMAEModel

    quiet_transformers()
    torch.manual_seed(seed)
    VideoMAEModel(VideoMAEConfig(**TINY_VIDEOMAE)).save_pretrained(directory)
    return directory


@register_backbone("videomae-tiny-random")
def videomae_tiny_random(cfg: BackboneConfig) -> Backbone:
    """A 2-layer VideoMAE with seeded random weights: offline, fast, for the demo and tests.

    It is saved and loaded back through `load_videomae`, the path real checkpoints take.
    """
    with tempfile.TemporaryDirectory() as tmp:
        bb = load_videomae(str(save_tiny_videomae(Path(tmp), cfg.seed)))
    bb.name = "videomae-tiny-random"
    bb.weights = f"videomae-tiny-random(seed={cfg.seed})@{bb.weights.rsplit('@', 1)[1]}"
    return bb
