"""Reading what one stage left for another, and the reports every stage gives the same way.

Stages never read each other's modules: what `index` wrote (the manifest, the class list), what `audio`
and `transcribe` wrote (audio index, transcripts), the feature sets a head reads, all come through here,
each with the message that says which command makes it when it is missing.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
from vidprobe import layout
from vidprobe.config import Config, ConfigError, RunFailed
from vidprobe.features.errors import StoreError
from vidprobe.features.identity import feature_hash
from vidprobe.features.locks import WriteLock
from vidprobe.features.sampling import Item
from vidprobe.features.store import FeatureSet


def read_manifest(cfg: Config) -> pd.DataFrame:
    path = layout.manifest(cfg)
    if not path.is_file():
        raise ConfigError(f"no manifest at {path}: run `vidprobe index` with the same config first")
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"sample_id": str, "path": str, "label": str})


def read_classes(cfg: Config) -> dict | None:
    """The class list and long-tail segments `index` saved (datasets with a class file), else None."""
    path = layout.classes_file(cfg)
    return json.loads(path.read_text()) if path.is_file() else None


def clip_items(cfg: Config) -> tuple[list[Item], int]:
    """(every readable sample of the manifest as a clip to decode, how many are unreadable)."""
    manifest = read_manifest(cfg)
    ok = manifest[manifest.status == "ok"]
    items = []
    for row in ok.itertuples(index=False):
        get = row._asdict().get
        start, end, rot = get("start"), get("end"), get("rotation")
        items.append(
            Item(
                row.sample_id,
                os.path.join(cfg.dataset.root, row.path),
                None if start is None or np.isnan(start) else float(start),
                None if end is None or np.isnan(end) else float(end),
                0 if rot is None or np.isnan(rot) else int(rot),
            )
        )
    return items, len(manifest) - len(ok)


def read_audio_index(cfg: Config) -> pd.DataFrame:
    """audio.csv joined to the manifest's start (the clock offset of each sample's audio)."""
    path = layout.audio_index(cfg)
    if not path.is_file():
        raise ConfigError(f"no audio index at {path}: run `vidprobe audio` with the same config first")
    audio = pd.read_csv(path, keep_default_na=False, dtype={"sample_id": str, "file": str, "error": str})
    manifest = read_manifest(cfg).set_index("sample_id")
    start = manifest["start"] if "start" in manifest else pd.Series(0.0, index=manifest.index)
    audio["start"] = audio.sample_id.map(start.fillna(0.0)).fillna(0.0).astype(float)
    return audio


def read_transcripts(cfg: Config) -> dict[str, dict]:
    """sample_id -> its transcript record (text, segments)."""
    path = layout.transcripts(cfg)
    if not path.is_file():
        raise ConfigError(f"no transcripts at {path}: run `vidprobe transcribe` with the same config first")
    return {r["sample_id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def read_captions(cfg: Config) -> dict[str, dict]:
    """row id (a sample, or a `<sample_id>#w<j>` window) -> its caption record (text, captions)."""
    path = layout.captions(cfg)
    if not path.is_file():
        raise ConfigError(f"no captions at {path}: run `vidprobe caption` with the same config first")
    return {r["id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def read_embed_failures(cfg: Config) -> dict[str, tuple[str, str]]:
    """sample_id -> (kind, error) of the samples `embed` could not decode (every shard's record)."""
    out = {}
    for path in sorted(layout.feature_set(cfg).glob("failures-*-of-*.json")):
        out.update({f["sample_id"]: (f["kind"], f["error"]) for f in json.loads(path.read_text())})
    return out


def open_set(cfg: Config, name: str, key: str) -> FeatureSet:
    """A feature set of this dataset by name; a missing one is a config error under `key`."""
    try:
        return FeatureSet(layout.feature_set(cfg, name))
    except StoreError as err:
        raise ConfigError(f"{key}: {err}") from None


def video_set(cfg: Config) -> FeatureSet | None:
    """This config's video feature set, or None when it has not been embedded."""
    try:
        return FeatureSet(layout.feature_set(cfg))
    except StoreError:
        return None


@dataclass
class HeadInputs:
    """Everything a head config reads, opened once."""

    manifest: pd.DataFrame  # the manifest rows that have features
    features: FeatureSet  # head.features' set
    fused: list[tuple[str, FeatureSet, str]]  # head.fuse: (spec, set, key)
    hashes: dict[str, str]  # config hash of every set read besides this config's own video features
    prompts: tuple[FeatureSet, str] | None  # head.prompts' set and key, for heads that start from prompts


def head_inputs(cfg: Config, with_prompts: bool = False) -> HeadInputs:
    """The sets `head.features`, `head.fuse` (and, `with_prompts`, `head.prompts`) name. This config's own
    video features are checked against it (config hash); another set is recorded by its hash in the run."""
    manifest = read_manifest(cfg)
    own = layout.video_set_name(cfg)
    name, _ = cfg.head.feature_spec(own)
    fs = open_set(cfg, name, "head.features")
    if name == own:
        fs.require_hash(*feature_hash(cfg.sampling, cfg.backbone, cfg.embed.storage_dtype))
    targets = {"task.label": [cfg.task.label], "task.multilabel": [cfg.task.multilabel], "task.traits": cfg.task.traits}
    for key, col in ((k, c) for k, cols in targets.items() for c in cols if c):
        if col not in manifest.columns:
            raise ConfigError(f"{key}: the manifest has no column {col!r}; it has {list(manifest.columns)}")
    have = fs.has(manifest.sample_id)
    missing = manifest[(manifest.status == "ok") & ~have]
    if len(missing):
        print(
            f"warning: {len(missing)} indexed samples have no features (failed at embed), e.g. {list(missing.sample_id[:3])}"
        )
    fused = [
        (spec, open_set(cfg, set_name, f"head.fuse: {spec!r}"), key)
        for spec, set_name, key in cfg.head.fused_specs(own)
    ]
    hashes = {spec: other.config_hash for spec, other, _ in fused}
    if name != own:
        hashes[cfg.head.features] = fs.config_hash
    prompts = None
    if with_prompts and cfg.head.uses_prompts and cfg.head.prompts:
        prompt_set, prompt_key = cfg.head.prompt_spec()
        prompts = (open_set(cfg, prompt_set, "head.prompts"), prompt_key)
    return HeadInputs(manifest[have], fs, fused, hashes, prompts)


def writing(cfg: Config, target, what: str) -> WriteLock:
    """The lock a writer of `target` (a stage output, a run folder) holds while it writes (`with writing(...)`):
    a second writer refuses at once, naming the first; a dead writer's lock is taken over."""
    return WriteLock(target, cfg.paths.lock_timeout, what)


def failure_summary(errors: list[str], kinds: Counter | None = None) -> str:
    """Warn about every failure; return their count by kind, most frequent first ("2 missing, 1 unreadable";
    "none" when there are none)."""
    for err in errors:
        print(f"warning: {err}")
    return ", ".join(f"{n} {kind}" for kind, n in (kinds or Counter()).most_common()) or "none"


def check_failures(count: int, limit: int | None, what: str, key: str, where) -> None:
    """A run that met more than `limit` failures (the config key `key`) fails, exit 1, pointing at the record."""
    if limit is not None and count > limit:
        raise RunFailed(f"{count} {what} ({key}={limit}); see {where}")
