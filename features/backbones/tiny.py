"""Tiny randomly initialised models of every transformers family, saved with `save_pretrained` (and the
processor config a real checkpoint carries) so they load through exactly the path real ones take: what tests
and the offline benchmarks use. `save_tiny(family, directory, seed)`; `TINY` lists the families."""

from __future__ import annotations

from pathlib import Path

import torch

from vidprobe.features.backbones.base import quiet_transformers, save_processor_config
from vidprobe.features.backbones.clip import CLIP_MEAN, CLIP_STD, TINY_CLIP_TEXT, byte_level_vocab, save_tiny_clip
from vidprobe.features.backbones.videomae import save_tiny_videomae
from vidprobe.features.video import IMAGENET_MEAN, IMAGENET_STD

SIZE, FRAMES = 32, 4  # 2 x 2 patches of 16 px, 4 frames: every family forwards in milliseconds
VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
HALF = (0.5, 0.5, 0.5)


def _vjepa2():
    from transformers import VJEPA2Config, VJEPA2Model

    return VJEPA2Model(VJEPA2Config(crop_size=SIZE, frames_per_clip=FRAMES, patch_size=16, tubelet_size=2,
                                    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                    pred_hidden_size=32, pred_num_hidden_layers=1, pred_num_attention_heads=2)), \
        ("VJEPA2VideoProcessor", IMAGENET_MEAN, IMAGENET_STD)


def _timesformer():
    from transformers import TimesformerConfig, TimesformerModel

    return TimesformerModel(TimesformerConfig(image_size=SIZE, patch_size=16, num_frames=FRAMES, **VIT)), \
        ("VideoMAEImageProcessor", IMAGENET_MEAN, IMAGENET_STD)


def _vivit():
    from transformers import VivitConfig, VivitModel

    return VivitModel(VivitConfig(image_size=SIZE, num_frames=FRAMES, tubelet_size=[2, 16, 16], **VIT)), \
        ("VivitImageProcessor", HALF, HALF)


def _xclip():
    from transformers import XCLIPConfig, XCLIPModel

    vision = dict(image_size=SIZE, patch_size=16, num_frames=FRAMES, mit_hidden_size=16, mit_intermediate_size=32,
                  mit_num_hidden_layers=1, mit_num_attention_heads=2, **VIT)
    return XCLIPModel(XCLIPConfig(text_config=TINY_CLIP_TEXT, vision_config=vision, projection_dim=16,
                                  prompt_layers=1, prompt_attention_heads=2)), ("CLIPImageProcessor", CLIP_MEAN, CLIP_STD)


def _siglip():
    from transformers import SiglipConfig, SiglipModel

    text = dict(vocab_size=514, max_position_embeddings=16, **VIT)
    return SiglipModel(SiglipConfig(text_config=text, vision_config=dict(image_size=SIZE, patch_size=16, **VIT))), \
        ("SiglipImageProcessor", HALF, HALF)


def _siglip2():
    from transformers import Siglip2Config, Siglip2Model

    text = dict(vocab_size=514, max_position_embeddings=16, **VIT)
    return Siglip2Model(Siglip2Config(text_config=text, vision_config=dict(num_patches=4, patch_size=16, **VIT))), \
        ("Siglip2ImageProcessor", HALF, HALF)


def _dinov2():
    from transformers import Dinov2Config, Dinov2Model

    return Dinov2Model(Dinov2Config(image_size=SIZE, patch_size=16, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, mlp_ratio=2)), ("BitImageProcessor", IMAGENET_MEAN, IMAGENET_STD)


def _dinov3():
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    return DINOv3ViTModel(DINOv3ViTConfig(image_size=SIZE, patch_size=16, num_register_tokens=2, **VIT)), \
        ("DINOv3ViTImageProcessor", IMAGENET_MEAN, IMAGENET_STD)


def _image():
    from transformers import ViTConfig, ViTModel

    return ViTModel(ViTConfig(image_size=SIZE, patch_size=16, **VIT)), ("ViTImageProcessor", HALF, HALF)


BUILDERS = {"vjepa2": _vjepa2, "timesformer": _timesformer, "vivit": _vivit, "xclip": _xclip, "siglip": _siglip,
            "siglip2": _siglip2, "dinov2": _dinov2, "dinov3": _dinov3, "image": _image}
TINY = ("videomae", "clip", *BUILDERS)


def save_tiny(family: str, directory: Path, seed: int = 0) -> Path:
    """A tiny random model of `family`'s real architecture, saved where `backbone.model` can load it."""
    if family == "videomae":
        return save_tiny_videomae(Path(directory), seed)
    if family == "clip":
        return save_tiny_clip(Path(directory), seed)
    quiet_transformers()
    torch.manual_seed(seed)
    net, (processor, mean, std) = BUILDERS[family]()
    net.save_pretrained(directory)
    save_processor_config(Path(directory), processor, SIZE, mean, std)
    if family in ("xclip", "siglip", "siglip2"):
        save_tokenizer(family, Path(directory))
    return Path(directory)


def save_tokenizer(family: str, directory: Path) -> None:
    """A character-level tokenizer of the family's own class: real tokenization for the tiny text towers."""
    from transformers import CLIPTokenizer

    CLIPTokenizer(vocab=byte_level_vocab(), merges=[]).save_pretrained(directory)
