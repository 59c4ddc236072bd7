"""Dataset adapters: turn a layout on disk into manifest rows (before any probing)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from pipeline.config import ConfigError, DatasetConfig

ADAPTERS: dict[str, Callable[[DatasetConfig], pd.DataFrame]] = {}


def register_adapter(name: str):
    def deco(fn):
        ADAPTERS[name] = fn
        return fn

    return deco


def list_samples(cfg: DatasetConfig) -> pd.DataFrame:
    """Rows with at least `sample_id`, `path` (relative to the root) and `split`."""
    if cfg.adapter not in ADAPTERS:
        raise ConfigError(f"dataset.adapter: unknown adapter {cfg.adapter!r}; valid: {', '.join(sorted(ADAPTERS))}")
    if not cfg.root:
        raise ConfigError("dataset.root is not set: pass dataset.root=DIR (the folder holding the videos)")
    if not Path(cfg.root).is_dir():
        raise ConfigError(f"dataset.root: {cfg.root!r} is not a directory: pass dataset.root=DIR")
    df = ADAPTERS[cfg.adapter](cfg)
    if cfg.metadata:
        df = join_metadata(df, cfg)
    return df


@register_adapter("folder")
def class_folders(cfg: DatasetConfig) -> pd.DataFrame:
    """`<root>/<split>/<class>/<video>`: the class is the folder name."""
    root = Path(cfg.root)
    exts = {e.lower() for e in cfg.extensions}
    rows = []
    for split in cfg.splits:
        for class_dir in sorted(p for p in (root / split).glob("*") if p.is_dir()):
            for video in sorted(class_dir.rglob("*")):
                if video.is_file() and video.suffix.lower() in exts:
                    rel = video.relative_to(root).as_posix()
                    rows.append({"sample_id": rel.rsplit(".", 1)[0], "path": rel, "split": split, "label": class_dir.name})
    if not rows:
        raise ConfigError(
            f"dataset.root: no videos found under {root} (expected {root}/{{{','.join(cfg.splits)}}}/<class>/<video> "
            f"with one of {', '.join(sorted(exts))})"
        )
    return pd.DataFrame(rows)


def read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ConfigError(f"dataset.metadata: {path} does not exist")
    if path.suffix.lower() in (".jsonl", ".json"):
        return pd.read_json(path, lines=path.suffix.lower() == ".jsonl")
    return pd.read_csv(path)


def join_metadata(df: pd.DataFrame, cfg: DatasetConfig) -> pd.DataFrame:
    """Copy `dataset.traits` (and `text`, when present) from the metadata table, joined on `path`."""
    path = Path(cfg.root) / cfg.metadata
    meta = read_table(path)
    wanted = ["path"] + list(cfg.traits)
    missing = [c for c in wanted if c not in meta.columns]
    if missing:
        raise ConfigError(f"dataset.traits: {path} has no column(s) {missing}; it has {list(meta.columns)}")
    for trait in cfg.traits:
        if not pd.api.types.is_numeric_dtype(meta[trait]):
            raise ConfigError(f"dataset.traits: column {trait!r} of {path} is not numeric")
    if "text" in meta.columns and "text" not in wanted:
        wanted.append("text")
    return df.merge(meta[wanted], on="path", how="left")
