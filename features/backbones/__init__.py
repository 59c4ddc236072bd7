"""Frozen backbones behind a registry (`backbone.name`). A backbone embeds clips and knows nothing of labels.

Each family states its input (frames, size, fixed or not), where its normalisation comes from (the
checkpoint's processor config, else the family's published values), how it pools, and the keys it writes.
Transformers families load by hub id or local folder (`backbone.model`); `backbone.name=auto` picks the
family from the checkpoint's `config.json`. `backbone.layers` stores intermediate hidden states instead of
the top outputs (base.py). The README's "Backbones" table lists every family; each module's docstring
says the details:

- base.py: the registry, the `Backbone` interface, loading, processor configs, layer choice
- videomae.py, video.py: video transformers (VideoMAE; V-JEPA 2, TimeSformer, ViViT, X-CLIP)
- clip.py, frames.py: image encoders on every frame (CLIP; SigLIP, SigLIP 2, DINOv2, DINOv3, any AutoModel)
- i3d_kinetics.py: DeepMind's Kinetics-400 I3D (its network: features/i3d.py)
- text.py: the text towers of image-text and video-text models, for class prompts
- tiny.py: tiny randomly initialised models of every family, saved like real checkpoints (tests, benchmarks)
"""

from vidprobe.features.backbones import auto, clip, frames, i3d_kinetics, video, videomae  # they register their families
from vidprobe.features.backbones.auto import detect_family
from vidprobe.features.backbones.base import (BACKBONES, Backbone, Blocks, build_backbone, files_digest, load_pretrained,
                                     quiet_transformers, register_backbone)
from vidprobe.features.backbones.clip import (CLIP_MEAN, CLIP_STD, byte_level_vocab, clip_source, clip_text_features,
                                     save_tiny_clip)
from vidprobe.features.backbones.videomae import save_tiny_videomae

__all__ = ["BACKBONES", "Backbone", "Blocks", "CLIP_MEAN", "CLIP_STD", "auto", "build_backbone", "byte_level_vocab",
           "clip", "clip_source", "clip_text_features", "detect_family", "files_digest", "frames", "i3d_kinetics",
           "load_pretrained", "quiet_transformers", "register_backbone", "save_tiny_clip", "save_tiny_videomae", "video",
           "videomae"]
