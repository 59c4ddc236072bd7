"""Tiny randomly initialised models of the registry's transformers families, saved with `save_pretrained` (and
the processor config a real checkpoint carries) so they load through exactly the path real ones take: what tests
and the offline benchmarks use. Each family registers its own builder (`@register_backbone(..., tiny=...)`);
`save_tiny(family, directory, seed)` calls it, `tiny_families()` lists the families that have one."""

from __future__ import annotations

from pathlib import Path

import torch
from vidprobe.features.backbones.base import BACKBONES, quiet_transformers, save_processor_config
from vidprobe.features.errors import FeatureConfigError

SIZE, FRAMES = 32, 4  # 2 x 2 patches of 16 px, 4 frames: every family forwards in milliseconds
VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
HALF = (0.5, 0.5, 0.5)


def tiny_families() -> tuple[str, ...]:
    """The families with a tiny random model of their real architecture (the zoo test runs each)."""
    return tuple(name for name, family in BACKBONES.items() if family.tiny is not None)


def save_tiny(family: str, directory: Path, seed: int = 0) -> Path:
    """A tiny random model of `family`'s real architecture, saved where `backbone.model` can load it."""
    if family not in BACKBONES or BACKBONES[family].tiny is None:
        raise FeatureConfigError(f"no tiny model of {family!r}; families with one: {', '.join(tiny_families())}")
    return BACKBONES[family].tiny(Path(directory), seed)


def save_tiny_model(
    build,
    directory: Path,
    seed: int,
    processor: str,
    mean: tuple,
    std: tuple,
    size: int = SIZE,
    tokenizer: bool = False,
) -> Path:
    """`build()` (a transformers model) seeded with `seed`, saved with its processor config (and a
    character-level tokenizer for a text tower)."""
    quiet_transformers()
    torch.manual_seed(seed)
    build().save_pretrained(directory)
    save_processor_config(Path(directory), processor, size, mean, std)
    if tokenizer:
        save_tokenizer(Path(directory))
    return Path(directory)


def byte_level_vocab() -> dict[str, int]:
    """A character-level CLIP vocabulary (GPT-2 byte alphabet, no merges): a real tokenizer for tiny models."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = iter(range(256, 512))
    chars = [chr(b if b in keep else next(shifted)) for b in range(256)]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": 512, "<|endoftext|>": 513})
    return vocab


def save_tokenizer(directory: Path) -> None:
    """A character-level CLIP tokenizer: real tokenization for the tiny text towers."""
    from transformers import CLIPTokenizer

    CLIPTokenizer(vocab=byte_level_vocab(), merges=[]).save_pretrained(directory)
