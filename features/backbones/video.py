"""Video transformers of transformers, by hub id or local folder: V-JEPA 2, TimeSformer, ViViT and X-CLIP's
video tower (VideoMAE: features/backbones/videomae.py).

| family | input | `video/pooled` | `video/temporal` |
|---|---|---|---|
| `vjepa2` | `frames_per_clip` x `crop_size` by default; any multiple of its tubelet and patch (RoPE) | mean of the encoder's patch tokens (it has no CLS) | spatial mean per tubelet step |
| `timesformer` | exactly `num_frames` x `image_size` | the final-norm CLS token (what its classifier reads) | spatial mean of each frame's patch tokens |
| `vivit` | exactly `num_frames` x `image_size` | the final-norm CLS token (what its classifier reads) | spatial mean per tubelet step |
| `xclip` | exactly `vision_config.num_frames` x `image_size` | the video embedding of its multi-frame integration transformer (`get_video_features`) | `frames` (T, D): per-frame projected image embeddings |

Mean and std come from the checkpoint's processor config (`preprocessor_config.json`), else the family's
published defaults.
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
from vidprobe.features.backbones.frames import FrameEncoder
from vidprobe.features.backbones.tiny import FRAMES, HALF, SIZE, VIT, save_tiny_model
from vidprobe.features.config import BackboneConfig
from vidprobe.features.video import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD


class TokenVideo(Backbone):
    """A video transformer whose last hidden state is [CLS?] + patch tokens of (time steps x space)."""

    feature_keys = ("video/pooled", "video/temporal")
    has_cls = False  # a CLS token first: it is `video/pooled`; else the mean of the patch tokens is
    space_major = False  # patch tokens ordered (space, time) (TimeSformer) instead of (time, space)

    def __init__(self, *args, steps: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = steps  # time steps per `num_frames` frames (frames / tubelet)

    def encoder(self):
        return self.model

    def inputs(self, pixels: torch.Tensor) -> dict:
        return {"pixel_values": pixels}

    def embed(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.encoder()(**self.inputs(pixels)).last_hidden_state
        return self.with_tokens(self.pool(hidden, pixels), hidden, pixels)

    def token_layout(self, hidden: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """The patch tokens (CLS left out) as time steps x rows x columns."""
        patches = hidden[:, 1:] if self.has_cls else hidden
        steps, d = self.steps * frames // self.num_frames, patches.shape[-1]
        if self.space_major:  # TimeSformer: (rows, columns, frames)
            grid = patches.reshape(batch, -1, steps, d).transpose(1, 2)
        else:
            grid = patches.reshape(batch, steps, -1, d)
        side = math.isqrt(grid.shape[2])
        return grid.reshape(batch, steps, side, side, d)

    def pool(self, tokens: torch.Tensor, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        b, d = tokens.shape[0], tokens.shape[-1]
        patches = tokens[:, 1:] if self.has_cls else tokens
        steps = self.steps * pixels.shape[1] // self.num_frames  # a model with RoPE may take other lengths
        grid = (
            patches.reshape(b, -1, steps, d).transpose(1, 2) if self.space_major else patches.reshape(b, steps, -1, d)
        )
        return {"video/pooled": tokens[:, 0] if self.has_cls else patches.mean(1), "video/temporal": grid.mean(2)}

    @property
    def layer_pooling(self) -> str:
        return ("CLS token" if self.has_cls else "mean of the patch tokens") + "; temporal: spatial mean per step"

    def hidden_states(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.encoder()(**self.inputs(pixels), output_hidden_states=True).hidden_states

    def pool_layer(self, hidden: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
        return self.pool(hidden, torch.empty(batch, self.num_frames))


class VJEPA2(TokenVideo):
    fixed_frames = False
    fixed_size = False
    pooling = "mean of the encoder's patch tokens (V-JEPA 2 has no CLS token; its own probe is attentive)"

    def inputs(self, pixels: torch.Tensor) -> dict:
        return {"pixel_values_videos": pixels, "skip_predictor": True}  # the predictor is for pre-training only


class CLSVideo(TokenVideo):
    has_cls = True
    pooling = "the CLS token after the final norm (what the checkpoint's classifier reads)"


class TimeSformer(CLSVideo):
    space_major = True


class XCLIPVideo(FrameEncoder):
    """X-CLIP's video tower: per-frame CLIP embeddings (with cross-frame messages) integrated over time."""

    fixed_frames = True
    feature_keys = ("frames", "video/pooled")

    def embed(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        b, t = pixels.shape[:2]
        vision = self.model.vision_model(pixel_values=pixels.flatten(0, 1))
        frames = self.model.visual_projection(vision.pooler_output).reshape(b, t, -1)
        out = {"frames": frames, "video/pooled": self.model.mit(frames).pooler_output}
        return self.with_tokens(out, vision.last_hidden_state, pixels)


def load_token_video(
    kind: type[TokenVideo],
    cls,
    name: str,
    model: str,
    what: str,
    mean: tuple,
    std: tuple,
    frames_key: str,
    size_key: str,
    tubelet: int,
) -> TokenVideo:
    net, weights = load_pretrained(cls, model, what)
    c, pre = net.config, preprocessing(model, mean, std)
    frames, size = getattr(c, frames_key), getattr(c, size_key)
    return kind(name, net, frames, size, weights, pre.mean, pre.std, pre.source, steps=frames // tubelet)


# --- tiny random models of each architecture (tests, offline benchmarks) and the forwards they are checked against


def save_tiny_vjepa2(directory: Path, seed: int = 0) -> Path:
    from transformers import VJEPA2Config, VJEPA2Model

    return save_tiny_model(
        lambda: VJEPA2Model(
            VJEPA2Config(
                crop_size=SIZE,
                frames_per_clip=FRAMES,
                patch_size=16,
                tubelet_size=2,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                mlp_ratio=2,
                pred_hidden_size=32,
                pred_num_hidden_layers=1,
                pred_num_attention_heads=2,
            )
        ),
        directory,
        seed,
        "VJEPA2VideoProcessor",
        IMAGENET_MEAN,
        IMAGENET_STD,
    )


def save_tiny_timesformer(directory: Path, seed: int = 0) -> Path:
    from transformers import TimesformerConfig, TimesformerModel

    return save_tiny_model(
        lambda: TimesformerModel(TimesformerConfig(image_size=SIZE, patch_size=16, num_frames=FRAMES, **VIT)),
        directory,
        seed,
        "VideoMAEImageProcessor",
        IMAGENET_MEAN,
        IMAGENET_STD,
    )


def save_tiny_vivit(directory: Path, seed: int = 0) -> Path:
    from transformers import VivitConfig, VivitModel

    return save_tiny_model(
        lambda: VivitModel(VivitConfig(image_size=SIZE, num_frames=FRAMES, tubelet_size=[2, 16, 16], **VIT)),
        directory,
        seed,
        "VivitImageProcessor",
        HALF,
        HALF,
    )


def save_tiny_xclip(directory: Path, seed: int = 0) -> Path:
    from transformers import XCLIPConfig, XCLIPModel
    from vidprobe.features.backbones.clip import TINY_CLIP_TEXT

    vision = dict(
        image_size=SIZE,
        patch_size=16,
        num_frames=FRAMES,
        mit_hidden_size=16,
        mit_intermediate_size=32,
        mit_num_hidden_layers=1,
        mit_num_attention_heads=2,
        **VIT,
    )
    return save_tiny_model(
        lambda: XCLIPModel(
            XCLIPConfig(
                text_config=TINY_CLIP_TEXT,
                vision_config=vision,
                projection_dim=16,
                prompt_layers=1,
                prompt_attention_heads=2,
            )
        ),
        directory,
        seed,
        "CLIPImageProcessor",
        CLIP_MEAN,
        CLIP_STD,
        tokenizer=True,
    )


def vjepa2_reference(net, pixels: torch.Tensor) -> torch.Tensor:
    return net(pixel_values_videos=pixels, skip_predictor=True).last_hidden_state.mean(1)


def cls_reference(net, pixels: torch.Tensor) -> torch.Tensor:
    return net(pixel_values=pixels).last_hidden_state[:, 0]


def xclip_reference(net, pixels: torch.Tensor) -> torch.Tensor:
    return net.get_video_features(pixel_values=pixels).pooler_output


@register_backbone(
    "vjepa2",
    example="`facebook/vjepa2-vitl-fpc16-256-ssv2`",
    input="`frames_per_clip` x `crop_size`; any multiple of tubelet / patch (RoPE)",
    pooling="mean of the encoder's patch tokens (no CLS; the predictor is skipped)",
    keys="`video/pooled`, `video/temporal` (T/tubelet)",
    model_types=("vjepa2",),
    tiny=save_tiny_vjepa2,
    native=Native("VJEPA2Model", "VJEPA2Config", 16, 256, overrides={"frames_per_clip": 16}),
    reference=vjepa2_reference,
)
def vjepa2(cfg: BackboneConfig) -> Backbone:
    from transformers import VJEPA2Model

    model = require_model(cfg, "facebook/vjepa2-vitl-fpc64-256")
    c = model_config(model, "V-JEPA 2")
    bb = load_token_video(
        VJEPA2,
        VJEPA2Model,
        "vjepa2",
        model,
        "V-JEPA 2",
        IMAGENET_MEAN,
        IMAGENET_STD,
        "frames_per_clip",
        "crop_size",
        c.tubelet_size,
    )
    bb.frame_multiple, bb.size_multiple = c.tubelet_size, c.patch_size
    return bb


@register_backbone(
    "timesformer",
    example="`facebook/timesformer-base-finetuned-k400`",
    input="exactly `num_frames` x `image_size`",
    pooling="final-norm CLS token (what its classifier reads)",
    keys="`video/pooled`, `video/temporal` (T)",
    model_types=("timesformer",),
    tiny=save_tiny_timesformer,
    native=Native("TimesformerModel", "TimesformerConfig", 8, 224),
    reference=cls_reference,
)
def timesformer(cfg: BackboneConfig) -> Backbone:
    from transformers import TimesformerModel

    return load_token_video(
        TimeSformer,
        TimesformerModel,
        "timesformer",
        require_model(cfg, "facebook/timesformer-base-finetuned-k400"),
        "TimeSformer",
        IMAGENET_MEAN,
        IMAGENET_STD,
        "num_frames",
        "image_size",
        1,
    )


@register_backbone(
    "vivit",
    example="`google/vivit-b-16x2-kinetics400`",
    input="exactly `num_frames` x `image_size`",
    pooling="final-norm CLS token",
    keys="`video/pooled`, `video/temporal` (T/tubelet)",
    model_types=("vivit",),
    tiny=save_tiny_vivit,
    native=Native("VivitModel", "VivitConfig", 32, 224, HALF, HALF),
    reference=cls_reference,
)
def vivit(cfg: BackboneConfig) -> Backbone:
    from transformers import VivitModel

    model = require_model(cfg, "google/vivit-b-16x2-kinetics400")
    c = model_config(model, "ViViT")
    return load_token_video(
        CLSVideo,
        VivitModel,
        "vivit",
        model,
        "ViViT",
        (0.5,) * 3,
        (0.5,) * 3,
        "num_frames",
        "image_size",
        c.tubelet_size[0],
    )


@register_backbone(
    "xclip",
    example="`microsoft/xclip-base-patch32`",
    input="exactly `vision_config.num_frames` x `image_size`",
    pooling="its video embedding: per-frame CLS embeddings integrated over time (`get_video_features`)",
    keys="`frames` (T, D), `video/pooled`",
    model_types=("xclip",),
    tiny=save_tiny_xclip,
    native=Native("XCLIPModel", "XCLIPConfig", 8, 224, CLIP_MEAN, CLIP_STD),
    reference=xclip_reference,
    text_tower=("XCLIPModel", "X-CLIP", "longest"),
)
def xclip(cfg: BackboneConfig) -> Backbone:
    from transformers import XCLIPModel

    model = require_model(cfg, "microsoft/xclip-base-patch32")
    net, weights = load_pretrained(XCLIPModel, model, "X-CLIP")
    pre, v = preprocessing(model, CLIP_MEAN, CLIP_STD), net.config.vision_config
    return XCLIPVideo(
        "xclip",
        net,
        v.num_frames,
        v.image_size,
        weights,
        pre.mean,
        pre.std,
        pre.source,
        pooling="X-CLIP's video embedding: per-frame projected CLS embeddings integrated by its "
        "multi-frame transformer (get_video_features)",
    )
