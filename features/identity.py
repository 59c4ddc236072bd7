"""What makes stored values the same: the one definition of a config's identity, and of "same features".

A config's identity is the hash of its YAML (keys sorted). Every feature set records the identity of
the config that made it (`config_hash`, `config`), and a reader compares it with what it asks for.
"""

from __future__ import annotations

import dataclasses
import hashlib

import yaml
from vidprobe.features.config import BackboneConfig, SamplingConfig

# The keys that decide what one clip's `video/pooled` is: two configs that agree on them compute the same
# features for a clip (views, crops, decoder and storage aside). Fine-tuning from a head checks them.
CLIP_KEYS = (
    "backbone.name",
    "backbone.model",
    "backbone.seed",
    "sampling.mode",
    "sampling.num_frames",
    "sampling.size",
    "sampling.fps",
    "backbone.layers",
    "backbone.layers_as",
    "backbone.token_grid",
)


def identity(config: dict) -> tuple[str, str]:
    """(hash, YAML) of a config: the hash is the first 16 hex digits of the YAML's sha256."""
    text = yaml.safe_dump(config, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16], text


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for key, value in (tree or {}).items():
        out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def differing(old: dict, new: dict) -> list[str]:
    """The dotted keys whose values differ between two nested configs, sorted."""
    a, b = flatten(old), flatten(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def config_diff(old_yaml: str, new_yaml: str) -> list[str]:
    """`key: old -> new` for every leaf that differs between two YAML configs."""
    old, new = flatten(yaml.safe_load(old_yaml or "{}")), flatten(yaml.safe_load(new_yaml or "{}"))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differing(old, new)]


def feature_config(sampling: SamplingConfig, backbone: BackboneConfig, storage_dtype: str) -> dict:
    """Everything a video feature set's stored values depend on (not where they were computed)."""
    weights = {k: v for k, v in dataclasses.asdict(backbone).items() if k not in ("device", "compile")}
    if not backbone.layers:  # the top outputs: the identity of every feature set made before layers could be chosen
        weights = {k: v for k, v in weights.items() if k not in ("layers", "layers_as")}
    if backbone.token_grid is None:  # no tokens: the identity of every feature set made before token grids
        weights.pop("token_grid")
    return {"sampling": dataclasses.asdict(sampling), "backbone": weights, "storage_dtype": storage_dtype}


def feature_hash(sampling: SamplingConfig, backbone: BackboneConfig, storage_dtype: str) -> tuple[str, str]:
    """(hash, YAML) of `feature_config`: the identity a video feature set records and is checked by."""
    return identity(feature_config(sampling, backbone, storage_dtype))


def clip_identity(sampling: SamplingConfig, backbone: BackboneConfig) -> dict:
    """The `CLIP_KEYS` of `feature_config`, as dotted keys in that order."""
    flat = flatten(feature_config(sampling, backbone, ""))
    return {key: flat.get(key) for key in CLIP_KEYS}
