"""Frozen backbones behind a registry (`backbone.name`). A backbone embeds clips and knows nothing of labels.

Each family states its input (frames, size, fixed or not), where its normalisation comes from (the
checkpoint's processor config, else the family's published values), how it pools, and the keys it writes.
Transformers families load by hub id or local folder (`backbone.model`); `backbone.name=auto` picks the
family from the checkpoint's `config.json`. `backbone.layers` stores intermediate hidden states instead of
the top outputs (base.py). The README's "Backbones" table lists every family; each module's docstring
says the details:

- base.py: the registry (`Family`: what each family tells the rest of vidprobe), the `Backbone` interface,
  loading, processor configs, layer choice
- videomae.py, video.py: video transformers (VideoMAE; V-JEPA 2, TimeSformer, ViViT, X-CLIP)
- clip.py, frames.py: image encoders on every frame (CLIP; SigLIP, SigLIP 2, DINOv2, DINOv3, any AutoModel)
- i3d_kinetics.py: DeepMind's Kinetics-400 I3D (its network: features/i3d.py)
- text.py: the text towers of image-text and video-text models, for class prompts
- tiny.py: what the families' tiny random models share (saved like real checkpoints: tests, benchmarks)

Every module of this folder is imported with the package, so a new family is one new module that calls
`@register_backbone`: it is then a `backbone.name`, found by `auto`, built tiny by `save_tiny`, measured by
benchmarks/backbones.py and run by tests/features/test_zoo.py, and its row is in `vidprobe backbones`.
"""

import importlib
import pkgutil

from vidprobe.features.backbones.auto import detect_family
from vidprobe.features.backbones.base import (
    BACKBONES,
    Backbone,
    Blocks,
    Family,
    Native,
    build_backbone,
    files_digest,
    load_pretrained,
    markdown_table,
    quiet_transformers,
    register_backbone,
)

for _module in pkgutil.iter_modules(__path__):  # each registers its families (vidprobe.code follows this too)
    importlib.import_module(f"{__name__}.{_module.name}")

from vidprobe.features.backbones.clip import clip_source, clip_text_features, save_tiny_clip  # noqa: E402
from vidprobe.features.backbones.tiny import byte_level_vocab, save_tiny, tiny_families  # noqa: E402
from vidprobe.features.backbones.videomae import save_tiny_videomae  # noqa: E402
from vidprobe.features.video import CLIP_MEAN, CLIP_STD  # noqa: E402

__all__ = [
    "BACKBONES",
    "Backbone",
    "Blocks",
    "CLIP_MEAN",
    "CLIP_STD",
    "Family",
    "Native",
    "build_backbone",
    "byte_level_vocab",
    "clip_source",
    "clip_text_features",
    "detect_family",
    "files_digest",
    "load_pretrained",
    "markdown_table",
    "quiet_transformers",
    "register_backbone",
    "save_tiny",
    "save_tiny_clip",
    "save_tiny_videomae",
    "tiny_families",
]
