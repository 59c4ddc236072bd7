"""Image encoders run on every sampled frame: `frames` (T, D) per clip and `video/pooled`, their mean over time.

| family | model class | per-frame embedding | layer token |
|---|---|---|---|
| `clip` (features/backbones/clip.py) | CLIPModel | projected image embedding (`get_image_features`) | CLS |
| `siglip` | SiglipModel (SigLIP, and SigLIP 2 fixed-resolution checkpoints) | the attention-pooling head's output (`get_image_features`) | mean of patch tokens |
| `siglip2` | Siglip2Model (NaFlex) | as siglip; the square crop cut into patches as its processor does | mean of patch tokens |
| `dinov2` | Dinov2Model | `pooler_output`: the final-norm CLS token | CLS |
| `dinov3` | DINOv3ViTModel | `pooler_output`: the final-norm CLS token | CLS |
| `image` | any AutoModel vision backbone | `pooler_output` when the model has one, else the mean of `last_hidden_state` | mean of tokens |

Any number of frames (8 by default); the size is the processor's crop (else the model's `image_size`) and may
be changed for the families with interpolated position embeddings (dinov2, dinov3, siglip2).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from vidprobe.features.backbones.base import (
    Backbone,
    Native,
    load_pretrained,
    model_config,
    preprocessing,
    register_backbone,
    require_model,
)
from vidprobe.features.backbones.tiny import HALF, SIZE, VIT, save_tiny_model
from vidprobe.features.config import BackboneConfig
from vidprobe.features.errors import FeatureConfigError
from vidprobe.features.video import IMAGENET_MEAN, IMAGENET_STD


class FrameEncoder(Backbone):
    """An image model on each of a clip's T frames: `frame_output` runs its image tower, `frame_embedding` says
    what one frame's embedding is; the tower's output tokens are the token layout (T x patch rows x columns)."""

    feature_keys = ("frames", "video/pooled")
    fixed_frames = False
    layer_token = "cls"  # how an intermediate hidden state is pooled per frame: its CLS token, or the token mean

    def __init__(self, *args, pooling: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.pooling = pooling

    def frame_output(self, images: torch.Tensor):
        """(N, 3, S, S) -> the image tower's output (`last_hidden_state`, and the embedding per frame)."""
        raise NotImplementedError

    def frame_embedding(self, out) -> torch.Tensor:
        """One embedding per frame, (N, D), of `frame_output`'s output."""
        return out.pooler_output

    def vision(self):
        """The module whose `hidden_states` are the image tower's layers."""
        return getattr(self.model, "vision_model", self.model)

    def vision_inputs(self, images: torch.Tensor) -> dict:
        return {"pixel_values": images}

    def embed(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        b, t = pixels.shape[:2]
        out = self.frame_output(pixels.flatten(0, 1))
        frames = self.frame_embedding(out).reshape(b, t, -1)
        return self.with_tokens({"frames": frames, "video/pooled": frames.mean(dim=1)}, out.last_hidden_state, pixels)

    def token_layout(self, hidden: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """Per frame, the patch tokens as rows x columns: the last side**2 tokens (CLS and register tokens come
        first), or a convolutional stage's (C, H, W) map."""
        if hidden.dim() == 4:
            grid = hidden.permute(0, 2, 3, 1)
        else:
            side = math.isqrt(hidden.shape[1])
            grid = hidden[:, hidden.shape[1] - side * side :].reshape(len(hidden), side, side, hidden.shape[-1])
        return grid.reshape(batch, frames, *grid.shape[1:])

    @property
    def layer_pooling(self) -> str:
        return ("CLS token" if self.layer_token == "cls" else "mean of the tokens") + " per frame; pooled: over frames"

    def depth(self) -> int | None:
        config = self.model.config
        layers = getattr(getattr(config, "vision_config", config), "num_hidden_layers", None)
        return layers + 1 if layers else None

    def hidden_states(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.vision()(**self.vision_inputs(pixels.flatten(0, 1)), output_hidden_states=True).hidden_states

    def pool_layer(self, hidden: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
        if hidden.dim() == 4:  # a convolutional stage: (N, C, H, W)
            per_frame = hidden.mean((2, 3))
        else:
            per_frame = hidden[:, 0] if self.layer_token == "cls" else hidden.mean(1)
        frames = per_frame.reshape(batch, -1, per_frame.shape[-1])
        return {"frames": frames, "video/pooled": frames.mean(1)}


class ImageTextFrames(FrameEncoder):
    """An image-text model's image tower (SigLIP): the embedding it compares with text."""

    layer_token = "mean"

    def frame_output(self, images: torch.Tensor):
        return self.model.get_image_features(**self.vision_inputs(images))


class Siglip2Frames(ImageTextFrames):
    """SigLIP 2 (NaFlex) takes patches, not images: the square crop cut into its patch grid, every patch real."""

    def vision_inputs(self, images: torch.Tensor) -> dict:
        n, c, h, w = images.shape
        p = self.model.config.vision_config.patch_size
        patches = (
            images.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(n, (h // p) * (w // p), -1)
        )
        shapes = torch.tensor([[h // p, w // p]] * n, device=images.device)
        mask = torch.ones(n, patches.shape[1], dtype=torch.long, device=images.device)
        return {"pixel_values": patches, "pixel_attention_mask": mask, "spatial_shapes": shapes}


class PoolerFrames(FrameEncoder):
    """A vision backbone's own `pooler_output` per frame (DINOv2/v3: the normalised CLS token), else the mean
    of its last hidden state."""

    def frame_output(self, images: torch.Tensor):
        return self.model(pixel_values=images)

    def frame_embedding(self, out) -> torch.Tensor:
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            return out.last_hidden_state.mean(1)
        return pooled.flatten(1)  # convolutional backbones pool to (N, D, 1, 1)


def load_frames(
    kind: type[FrameEncoder],
    cls,
    model: str,
    name: str,
    what: str,
    mean: tuple,
    std: tuple,
    pooling: str,
    fixed_size: bool = True,
    num_frames: int = 8,
) -> FrameEncoder:
    net, weights = load_pretrained(cls, model, what)
    pre = preprocessing(model, mean, std)
    vision = getattr(net.config, "vision_config", net.config)
    size = getattr(vision, "image_size", None)
    if not fixed_size and pre.size:
        size = pre.size  # DINOv2 is configured for 518 px, its processor crops 224
    if size is None and hasattr(vision, "num_patches"):
        size = int(vision.num_patches**0.5) * vision.patch_size  # SigLIP 2: the square of its patch budget
    size = size or pre.size or 224
    bb = kind(name, net, num_frames, int(size), weights, pre.mean, pre.std, pre.source, pooling=pooling)
    bb.fixed_size = fixed_size
    bb.size_multiple = getattr(vision, "patch_size", 1) if isinstance(getattr(vision, "patch_size", 1), int) else 1
    return bb


# --- tiny random models of each architecture (tests, offline benchmarks) and the forwards they are checked against


def save_tiny_siglip(directory: Path, seed: int = 0) -> Path:
    from transformers import SiglipConfig, SiglipModel

    text = dict(vocab_size=514, max_position_embeddings=16, **VIT)
    return save_tiny_model(
        lambda: SiglipModel(SiglipConfig(text_config=text, vision_config=dict(image_size=SIZE, patch_size=16, **VIT))),
        directory,
        seed,
        "SiglipImageProcessor",
        HALF,
        HALF,
        tokenizer=True,
    )


def save_tiny_siglip2(directory: Path, seed: int = 0) -> Path:
    from transformers import Siglip2Config, Siglip2Model

    text = dict(vocab_size=514, max_position_embeddings=16, **VIT)
    return save_tiny_model(
        lambda: Siglip2Model(Siglip2Config(text_config=text, vision_config=dict(num_patches=4, patch_size=16, **VIT))),
        directory,
        seed,
        "Siglip2ImageProcessor",
        HALF,
        HALF,
        tokenizer=True,
    )


def save_tiny_dinov2(directory: Path, seed: int = 0) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    return save_tiny_model(
        lambda: Dinov2Model(
            Dinov2Config(
                image_size=SIZE, patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2
            )
        ),
        directory,
        seed,
        "BitImageProcessor",
        IMAGENET_MEAN,
        IMAGENET_STD,
    )


def save_tiny_dinov3(directory: Path, seed: int = 0) -> Path:
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    return save_tiny_model(
        lambda: DINOv3ViTModel(DINOv3ViTConfig(image_size=SIZE, patch_size=16, num_register_tokens=2, **VIT)),
        directory,
        seed,
        "DINOv3ViTImageProcessor",
        IMAGENET_MEAN,
        IMAGENET_STD,
    )


def save_tiny_image(directory: Path, seed: int = 0) -> Path:
    from transformers import ViTConfig, ViTModel

    return save_tiny_model(
        lambda: ViTModel(ViTConfig(image_size=SIZE, patch_size=16, **VIT)),
        directory,
        seed,
        "ViTImageProcessor",
        HALF,
        HALF,
    )


def image_features_mean(net, pixels: torch.Tensor) -> torch.Tensor:
    """An image-text model's own image embedding of each frame (`get_image_features`), averaged over the frames."""
    return net.get_image_features(pixel_values=pixels[0]).pooler_output.mean(0, keepdim=True)


def siglip2_reference(net, pixels: torch.Tensor) -> torch.Tensor:
    """SigLIP 2's image embedding of each frame, cut into patches by transformers' own function, averaged."""
    import numpy as np
    from transformers.models.siglip2.image_processing_pil_siglip2 import convert_image_to_patches

    patches = torch.from_numpy(np.stack([convert_image_to_patches(f.numpy(), 16) for f in pixels[0]]))
    grid = pixels.shape[-1] // 16
    out = net.get_image_features(
        pixel_values=patches,
        pixel_attention_mask=torch.ones(patches.shape[:2]),
        spatial_shapes=torch.tensor([[grid, grid]] * len(patches)),
    )
    return out.pooler_output.mean(0, keepdim=True)


def pooler_output_mean(net, pixels: torch.Tensor) -> torch.Tensor:
    """A vision model's own `pooler_output` of each frame, averaged over the frames."""
    return net(pixel_values=pixels[0]).pooler_output.mean(0, keepdim=True)


@register_backbone(
    "siglip",
    example="`google/siglip-base-patch16-224`, SigLIP 2 fixed-resolution ids",
    input="any T (8) x `image_size`",
    pooling="per frame: attention-pooling head's embedding; mean over frames",
    keys="`frames`, `video/pooled`",
    model_types=("siglip",),
    tiny=save_tiny_siglip,
    native=Native("SiglipModel", "SiglipConfig", 8, 224, HALF, HALF),
    reference=image_features_mean,
    text_tower=("SiglipModel", "SigLIP", "max_length"),
)
def siglip(cfg: BackboneConfig) -> Backbone:
    from transformers import SiglipModel

    return load_frames(
        ImageTextFrames,
        SiglipModel,
        require_model(cfg, "google/siglip-base-patch16-224"),
        "siglip",
        "SigLIP",
        HALF,
        HALF,
        "mean over frames of the per-frame image embeddings of SigLIP's attention-pooling head",
    )


@register_backbone(
    "siglip2",
    example="`google/siglip2-base-patch16-naflex`",
    input="any T (8) x any px (256: its patch budget)",
    pooling="as siglip, on the square crop's patches",
    keys="`frames`, `video/pooled`",
    model_types=("siglip2",),
    tiny=save_tiny_siglip2,
    native=Native("Siglip2Model", "Siglip2Config", 8, 256, HALF, HALF),
    reference=siglip2_reference,
    text_tower=("Siglip2Model", "SigLIP2", "max_length"),
)
def siglip2(cfg: BackboneConfig) -> Backbone:
    from transformers import Siglip2Model

    return load_frames(
        Siglip2Frames,
        Siglip2Model,
        require_model(cfg, "google/siglip2-base-patch16-naflex"),
        "siglip2",
        "SigLIP2",
        HALF,
        HALF,
        "mean over frames of the per-frame image embeddings of SigLIP 2's attention-pooling head (square crop's patches)",
        fixed_size=False,
    )


@register_backbone(
    "dinov2",
    example="`facebook/dinov2-base`",
    input="any T (8) x any px (the processor's 224)",
    pooling="per frame: final-norm CLS token (`pooler_output`); mean over frames",
    keys="`frames`, `video/pooled`",
    model_types=("dinov2",),
    tiny=save_tiny_dinov2,
    native=Native("Dinov2Model", "Dinov2Config", 8, 224),
    reference=pooler_output_mean,
)
def dinov2(cfg: BackboneConfig) -> Backbone:
    from transformers import Dinov2Model

    return load_frames(
        PoolerFrames,
        Dinov2Model,
        require_model(cfg, "facebook/dinov2-base"),
        "dinov2",
        "DINOv2",
        IMAGENET_MEAN,
        IMAGENET_STD,
        "mean over frames of the per-frame CLS token after the final norm (pooler_output)",
        fixed_size=False,
    )


@register_backbone(
    "dinov3",
    example="`facebook/dinov3-vitb16-pretrain-lvd1689m`",
    input="any T (8) x any px (224)",
    pooling="as dinov2",
    keys="`frames`, `video/pooled`",
    model_types=("dinov3_vit",),
    tiny=save_tiny_dinov3,
    native=Native(
        "DINOv3ViTModel",
        "DINOv3ViTConfig",
        8,
        224,
        overrides={"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    ),
    reference=pooler_output_mean,
)
def dinov3(cfg: BackboneConfig) -> Backbone:
    from transformers import DINOv3ViTModel

    return load_frames(
        PoolerFrames,
        DINOv3ViTModel,
        require_model(cfg, "facebook/dinov3-vitb16-pretrain-lvd1689m"),
        "dinov3",
        "DINOv3",
        IMAGENET_MEAN,
        IMAGENET_STD,
        "mean over frames of the per-frame CLS token after the final norm (pooler_output)",
        fixed_size=False,
    )


@register_backbone(
    "image",
    example="any AutoModel vision backbone, e.g. `google/vit-base-patch16-224-in21k`",
    input="any T (8) x `image_size`",
    pooling="per frame: the model's `pooler_output`, else the mean of its last hidden state",
    keys="`frames`, `video/pooled`",
    tiny=save_tiny_image,
    native=Native("ViTModel", "ViTConfig", 8, 224, HALF, HALF),
    reference=pooler_output_mean,
)
def image(cfg: BackboneConfig) -> Backbone:
    """Any transformers vision backbone AutoModel loads (ViT, BEiT, ConvNeXt, Swin, ...)."""
    from transformers import AutoModel

    model = require_model(cfg, "google/vit-base-patch16-224-in21k")
    config = model_config(model, "image model")
    if getattr(config, "vision_config", None) is not None:
        raise FeatureConfigError(
            f"backbone.model: {model!r} is a {config.model_type} model with several towers; "
            "use its own family (clip, siglip, xclip) or backbone.name=auto"
        )
    bb = load_frames(
        PoolerFrames,
        AutoModel,
        model,
        "image",
        "image model",
        IMAGENET_MEAN,
        IMAGENET_STD,
        "mean over frames of the per-frame pooler_output (else mean of the last hidden state)",
    )
    bb.layer_token = "mean"
    return bb
