"""What every backbone shares: the registry, the `Backbone` interface, loading weights by hub id or
path, the checkpoint's own preprocessing, and intermediate layers (`backbone.layers`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from vidprobe.features.config import BackboneConfig
from vidprobe.features.errors import FeatureConfigError
from vidprobe.features.video import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class Native:
    """The architecture and input of a family's example checkpoint: what benchmarks/backbones.py builds with random
    weights (transformers' model and config classes, with config overrides) and feeds (frames x size)."""

    model_class: str | None  # None: the weights come packaged (I3D)
    config_class: str | None
    frames: int
    size: int
    mean: tuple = IMAGENET_MEAN  # the example processor's
    std: tuple = IMAGENET_STD
    overrides: dict = field(default_factory=dict)  # config keys that differ from the class's defaults


@dataclass(frozen=True)
class Family:
    """A family of the registry: how to build it (`backbone.name=<name>`), and everything the rest of vidprobe
    derives from it instead of listing families by hand: `backbone.name=auto` (model_types), the tiny random
    models of tests and benchmarks (tiny), the backbone benchmark (native), the zoo test's reference forward
    (reference), class prompts through its text tower (text_tower), and its row of the README's table
    (example, input, pooling, keys: `vidprobe backbones` prints the table)."""

    name: str
    build: Callable[[BackboneConfig], Backbone]
    example: str = ""  # an example backbone.model
    input: str = ""  # the clip shape it takes
    pooling: str = ""  # how `video/pooled` is made
    keys: str = ""  # what it writes
    model_types: tuple[str, ...] = ()  # the transformers `model_type`s of config.json that `auto` maps here
    tiny: Callable[[Path, int], Path] | None = None  # (directory, seed) -> a tiny random model, saved like a real one
    native: Native | None = None
    reference: Callable | None = None  # (transformers model, (1, T, 3, S, S) pixels) -> (1, D): its video/pooled
    text_tower: tuple[str, str, str] | None = None  # (transformers class, label, padding) of its text tower

    def __call__(self, cfg: BackboneConfig) -> Backbone:
        return self.build(cfg)


BACKBONES: dict[str, Family] = {}


def register_backbone(name: str, **about):
    """`@register_backbone("name", example=..., model_types=..., tiny=..., ...)` on a builder (cfg -> Backbone):
    the family, with what `Family` says about it. A module under features/backbones/ is imported with its package,
    so a new family is one new module."""

    def deco(fn):
        if name in BACKBONES:
            raise ValueError(f"backbone family {name!r} is registered twice")
        BACKBONES[name] = Family(name, fn, **about)
        return fn

    return deco


def build_backbone(cfg: BackboneConfig) -> Backbone:
    if cfg.name not in BACKBONES:
        raise FeatureConfigError(f"backbone.name: unknown backbone {cfg.name!r}; valid: {', '.join(sorted(BACKBONES))}")
    bb = BACKBONES[cfg.name](cfg)
    if cfg.token_grid is not None:
        bb.keep_tokens(list(cfg.token_grid))
    if cfg.layers:
        bb.select_layers(list(cfg.layers), cfg.layers_as)
    return bb


def markdown_table() -> str:
    """The README's table of families, from the registry (`vidprobe backbones`)."""
    default = BackboneConfig().name
    families = sorted(
        (f for f in BACKBONES.values() if f.example),
        key=lambda f: (f.name != default, f.name.endswith("-random"), f.name),
    )
    rows = [
        "| `backbone.name` | example `backbone.model` | input (frames x px) | pooling | keys |",
        "|---|---|---|---|---|",
    ]
    rows += [
        f"| `{f.name}`{' (default)' if f.name == default else ''} | {f.example} | {f.input} | {f.pooling} | {f.keys} |"
        for f in families
    ]
    return "\n".join(rows)


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

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        num_frames: int,
        image_size: int,
        weights: str,
        mean: tuple = IMAGENET_MEAN,
        std: tuple = IMAGENET_STD,
        preprocessing: str = "family default",
    ):
        self.name, self.model, self.num_frames, self.image_size = name, model, num_frames, image_size
        self.weights, self.mean, self.std = weights, tuple(mean), tuple(std)  # weights: hub id@revision or path@digest
        self.preprocessing = preprocessing  # where mean/std come from: the checkpoint's processor config or defaults
        self.layers: list[int] = []
        self.layers_as = "separate"
        model.eval().requires_grad_(False)

    def embed(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, T, 3, S, S) normalised clips -> {feature key: (B, ...)}."""
        raise NotImplementedError(f"{type(self).__name__} must say how it embeds a clip")

    frame_multiple = 1  # frames must be a multiple of this (a tubelet), when not fixed
    size_multiple = 1  # the side must be a multiple of this (a patch), when not fixed

    def check_input(self, frames: int, size: int) -> None:
        """Refuse a clip shape this model cannot take, saying why (sampling.num_frames / sampling.size)."""
        bad = [
            f"{what} {got} is not a multiple of {unit} ({why})"
            for what, got, unit, why in (
                ("sampling.num_frames", frames, self.frame_multiple, "its tubelet"),
                ("sampling.size", size, self.size_multiple, "its patch"),
            )
            if got % unit
        ]
        if bad:
            raise FeatureConfigError(f"sampling: {self.name} cannot take this clip: {'; '.join(bad)}")

    # --- token grids (`backbone.token_grid`): the output tokens in the family's own layout (time steps x patch
    # rows x patch columns), CLS and register tokens left out, average-pooled to T x H x W as `video/tokens`

    token_grid: tuple[int, int, int] | None = None
    TOKENS = "video/tokens"

    def token_layout(self, hidden: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """A hidden state (or the top output) as (B, T', H', W', D): the family's token layout."""
        raise FeatureConfigError(
            f"backbone.token_grid: {self.name} has no token layout to pool; leave backbone.token_grid unset"
        )

    def keep_tokens(self, grid: list[int]) -> None:
        """Also write `video/tokens`: (N, T*H*W, D), the tokens pooled to `grid` = [T, H, W]."""
        if len(grid) != 3 or min(grid) < 1:
            raise FeatureConfigError(f"backbone.token_grid: {grid} is no grid; give [T, H, W], each >= 1")
        self.token_grid = tuple(int(g) for g in grid)
        self.feature_keys = (*self.feature_keys, self.TOKENS)

    def grid_tokens(self, layout: torch.Tensor) -> torch.Tensor:
        """(B, T', H', W', D) -> (B, T*H*W, D): adaptive average pooling to `token_grid` (each cell the mean of the
        tokens it covers, as torch's adaptive_avg_pool3d splits them), in time-row-column order."""
        have = tuple(layout.shape[1:4])
        if any(g > n for g, n in zip(self.token_grid, have)):
            raise FeatureConfigError(
                f"backbone.token_grid: {list(self.token_grid)} is finer than {self.name}'s token layout "
                f"{list(have)} (time steps x rows x columns) at this input; use at most {list(have)}"
            )
        pooled = F.adaptive_avg_pool3d(layout.permute(0, 4, 1, 2, 3).float(), self.token_grid)
        return pooled.flatten(2).transpose(1, 2).to(layout.dtype)

    def with_tokens(self, out: dict[str, torch.Tensor], hidden: torch.Tensor, pixels: torch.Tensor) -> dict:
        """`out` plus `video/tokens` of `hidden` when a token grid is kept."""
        if self.token_grid is not None:
            out[self.TOKENS] = self.grid_tokens(self.token_layout(hidden, pixels.shape[0], pixels.shape[1]))
        return out

    def check_token_grid(self, frames: int, size: int) -> None:
        """Refuse, before any video is decoded, a token grid this model's layout cannot fill at frames x size."""
        if self.token_grid is None:
            return
        param = next(self.model.parameters())
        with torch.inference_mode():
            self(torch.zeros(1, frames, 3, size, size, device=param.device))

    # --- intermediate layers: `hidden_states` as transformers returns them (0: the embeddings, -1: the last
    # block's output, before any final norm), each pooled as `pool_layer` says.

    layer_pooling = ""  # how one hidden state is pooled; empty: this backbone has no layer choice

    def hidden_states(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise FeatureConfigError(f"backbone.layers: {self.name} has no intermediate layers to choose from")

    def pool_layer(self, hidden: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
        raise FeatureConfigError(f"backbone.layers: {self.name} has no intermediate layers to choose from")

    def select_layers(self, layers: list[int], layers_as: str) -> None:
        """Write these layers instead of the top outputs: keys `<key>@<layer>` (separate) or the layers' features
        side by side under the usual keys (concat)."""
        if not self.layer_pooling:
            raise FeatureConfigError(
                f"backbone.layers: {self.name} has no intermediate layers to choose from; leave backbone.layers unset"
            )
        depth = self.depth()
        bad = [i for i in layers if depth and not -depth <= i < depth]
        if bad:
            raise FeatureConfigError(
                f"backbone.layers: {bad} out of range for {self.name}: its hidden states are "
                f"0 (embeddings) .. {depth - 1} (last block), or -1 .. -{depth}"
            )
        self.layers, self.layers_as = layers, layers_as
        self.pooling = f"layers {layers} ({layers_as}): {self.layer_pooling}"
        if layers_as == "separate":
            self.feature_keys = tuple(f"{k}@{i}" for i in layers for k in self.feature_keys)

    def depth(self) -> int | None:
        """How many hidden states the model returns (blocks + 1); None: not known before a forward."""
        return self.model.config.num_hidden_layers + 1

    def embed_layers(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.hidden_states(pixels)
        per_layer = {
            i: self.with_tokens(self.pool_layer(hidden[i], pixels.shape[0]), hidden[i], pixels) for i in self.layers
        }
        if self.layers_as == "separate":
            return {f"{k}@{i}": v for i, feats in per_layer.items() for k, v in feats.items()}
        return {k: torch.cat([per_layer[i][k] for i in self.layers], dim=-1) for k in per_layer[self.layers[0]]}

    def __call__(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.embed_layers(pixels) if self.layers else self.embed(pixels)

    def provenance(self) -> dict:
        grid = (
            {
                "token_grid": list(self.token_grid),
                "token_pooling": "adaptive average pooling of the output tokens "
                "(time x rows x columns, CLS and registers left out) to the grid",
            }
            if self.token_grid
            else {}
        )
        return {
            **grid,
            "backbone": self.name,
            "weights": self.weights,
            "pooling": self.pooling,
            "num_frames": self.num_frames,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "mean_std_from": self.preprocessing,
            "layers": self.layers or None,
            "feature_keys": list(self.feature_keys),
        }

    def blocks(self) -> Blocks:
        raise FeatureConfigError(
            f"backbone.name: fine-tuning knows videomae, i3d-kinetics400 and clip backbones, not {self.name!r}"
        )

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


def load_failure(model: str, what: str, err: Exception) -> FeatureConfigError:
    return FeatureConfigError(
        f"backbone.model: could not load {what} {model!r}: {err}\n"
        f"Pass a local directory (backbone.model=/path/to/{what.lower()}) or make sure the hub id is "
        "cached (HF_HUB_OFFLINE=1 allows only cached ids)."
    )


def load_pretrained(cls, model: str, what: str):
    """`cls.from_pretrained(model)` for a hub id or a local directory; (network, weights identity).

    Never falls back to another model: a failure names what was tried and how to pass a local copy.
    """
    quiet_transformers()
    try:
        net = cls.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise load_failure(model, what, err) from None
    local = Path(model)
    digest = files_digest(local) if local.is_dir() else getattr(net.config, "_commit_hash", None) or "hub"
    return net, f"{model}@{digest}"


def model_config(model: str, what: str):
    """The checkpoint's `config.json` (AutoConfig), or a load error naming how to pass a local path."""
    from transformers import AutoConfig

    quiet_transformers()
    try:
        return AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise load_failure(model, what, err) from None


def require_model(cfg: BackboneConfig, example: str) -> str:
    if not cfg.model:
        raise FeatureConfigError(f"backbone.model: {cfg.name} needs a hub id or local path, e.g. {example}")
    return cfg.model


# --- the checkpoint's own preprocessing

PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json")


def processor_config(model: str) -> tuple[dict, str]:
    """The checkpoint's image/video processor settings and the file they came from ({} and "" when it has none)."""
    from transformers.utils import cached_file

    for name in PROCESSOR_FILES:
        if Path(model).is_dir():
            path = Path(model) / name
            found = path if path.is_file() else None
        else:
            try:
                found = cached_file(
                    model,
                    name,
                    _raise_exceptions_for_missing_entries=False,
                    _raise_exceptions_for_connection_errors=False,
                )
            except OSError:
                found = None
        if found:
            return json.loads(Path(found).read_text()), name
    return {}, ""


def save_processor_config(directory: Path, processor: str, size: int, mean: tuple, std: tuple, **more) -> Path:
    """A `preprocessor_config.json` as real checkpoints carry (resize the short side, centre crop, rescale,
    normalise), written without instantiating the processor (which needs pillow or torchvision)."""
    conf = {
        "image_processor_type": processor,
        "do_resize": True,
        "size": {"shortest_edge": size},
        "do_center_crop": True,
        "crop_size": {"height": size, "width": size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(mean),
        "image_std": list(std),
        **more,
    }
    path = Path(directory) / "preprocessor_config.json"
    path.write_text(json.dumps(conf, indent=2) + "\n")
    return path


def side(value) -> int | None:
    """A processor's `size` / `crop_size` as one side in pixels."""
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        for key in ("height", "shortest_edge", "width"):
            if value.get(key):
                return int(value[key])
    return None


@dataclass
class Preprocessing:
    mean: tuple
    std: tuple
    size: int | None  # the processor's crop (else resize) side; None: not stated
    source: str  # "preprocessor_config.json" or "family default"


def preprocessing(model: str, mean: tuple, std: tuple) -> Preprocessing:
    """Mean and std on [0, 1] pixels equal to the checkpoint's processor: its `rescale_factor` (and ViViT's
    `offset`) folded in, `do_normalize: false` honoured. `mean`/`std`: the family's default when it has no
    processor config."""
    conf, source = processor_config(model)
    if not conf:
        return Preprocessing(tuple(mean), tuple(std), None, "family default (no processor config in the checkpoint)")
    rescale = conf.get("rescale_factor", 1 / 255) if conf.get("do_rescale", True) else 1.0
    offset = 1.0 if conf.get("offset", False) else 0.0  # ViViT: x * rescale - 1
    m = conf.get("image_mean", mean) if conf.get("do_normalize", True) else (0.0, 0.0, 0.0)
    s = conf.get("image_std", std) if conf.get("do_normalize", True) else (1.0, 1.0, 1.0)
    m = [m] * 3 if isinstance(m, (int, float)) else m
    s = [s] * 3 if isinstance(s, (int, float)) else s
    k = 255.0 * rescale  # processor: (x * rescale - offset - m) / s == (x / 255 - (m + offset) / k) / (s / k)
    size = side(conf.get("crop_size")) if conf.get("do_center_crop", True) else None
    return Preprocessing(
        tuple((mi + offset) / k for mi in m), tuple(si / k for si in s), size or side(conf.get("size")), source
    )
