"""What every dataset adapter shares: the registry, `list_samples` (adapter, metadata join, held-out val,
validation), and readers of the files datasets ship.

`@register_adapter(name, settings=...)`: an adapter's own settings are a dataclass declared beside it; they join
the `dataset` section as `dataset.<key>` (pipeline/config.py composes it). Every module of this folder is
imported with the package, so a new layout is one new module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from vidprobe.yamlconfig import ConfigError

if TYPE_CHECKING:
    from vidprobe.config import DatasetConfig

ADAPTERS: dict[str, Callable[[DatasetConfig], pd.DataFrame]] = {}
SETTINGS: dict[str, tuple[type, ...]] = {}  # adapter -> the settings dataclasses it reads
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validate": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


def register_adapter(name: str, settings: tuple[type, ...] = ()):
    def deco(fn):
        ADAPTERS[name] = fn
        SETTINGS[name] = settings
        return fn

    return deco


def adapter_settings() -> list[type]:
    """Every registered adapter's settings, once each, in registration order (they join DatasetConfig)."""
    return list(dict.fromkeys(s for group in SETTINGS.values() for s in group))


@dataclass
class Annotations:
    annotations: str | None = None  # official split files / CSVs: relative to the root, or beside it


def list_samples(cfg: DatasetConfig) -> pd.DataFrame:
    """Validated rows with at least `sample_id`, `path` (relative to the root) and `split`, sorted by id."""
    if cfg.adapter not in ADAPTERS:
        raise ConfigError(f"dataset.adapter: unknown adapter {cfg.adapter!r}; valid: {', '.join(sorted(ADAPTERS))}")
    if not cfg.root:
        raise ConfigError("dataset.root is not set: pass dataset.root=DIR (the folder holding the videos)")
    if not Path(cfg.root).is_dir():
        raise ConfigError(f"dataset.root: {cfg.root!r} is not a directory: pass dataset.root=DIR")
    df = ADAPTERS[cfg.adapter](cfg)
    classes = df.attrs.get("classes")
    if cfg.metadata:
        df = join_metadata(df, cfg)
    if cfg.val_fraction > 0 and not (df.split == "val").any():
        df = hold_out_val(df, cfg.val_fraction)
    validate(df, cfg)
    df = df.sort_values("sample_id", kind="stable").reset_index(drop=True)
    df.attrs = {"classes": classes} if classes else {}
    return df


# --- validation ----------------------------------------------------------------------------------


def validate(df: pd.DataFrame, cfg: DatasetConfig) -> None:
    """Every problem with the rows at once; files that are missing are only listed (index records them)."""
    problems = list(df.attrs.get("problems", []))
    dup = df.sample_id[df.sample_id.duplicated()].unique()
    if len(dup):
        problems.append(f"{len(dup)} duplicate sample_ids, e.g. {list(dup[:3])}")
    splits_per_path = df.groupby("path").split.nunique()
    leaked = splits_per_path[splits_per_path > 1].index
    if len(leaked):
        problems.append(f"{len(leaked)} videos are in more than one split (leakage), e.g. {list(leaked[:3])}")
    for split in cfg.splits:
        if not (df.split == split).any():
            empty = EMPTY_SPLIT.get(split)
            if split == "test":
                print(f"warning: split 'test' is empty: {empty}")
            else:
                problems.append(
                    f"split {split!r} is empty: {empty or 'no sample is in it; drop it from dataset.splits'}"
                )
    root = Path(cfg.root).resolve()
    outside = [p for p in df.path.unique() if not (root / p).resolve().is_relative_to(root)]
    if outside:
        problems.append(f"{len(outside)} paths resolve outside dataset.root (refused), e.g. {outside[:3]}")
    if {"start", "end"} <= set(df.columns):
        bad = df[df.start.notna() & df.end.notna() & (df.start >= df.end)]
        if len(bad):
            problems.append(f"{len(bad)} rows with start >= end, e.g. {list(bad.sample_id[:3])}")
    if problems:
        raise ConfigError(f"dataset {cfg.name!r} ({cfg.adapter} adapter, root {cfg.root}):\n  " + "\n  ".join(problems))
    missing = [p for p in df.path.unique() if not (root / p).is_file()]
    if missing:
        print(
            f"warning: {len(missing)} listed videos are not on disk (recorded as status 'missing'), e.g. {missing[:3]}"
        )


EMPTY_SPLIT = {  # what an empty split means, and the fix
    "train": "heads need training samples; check dataset.root and the adapter's layout (class folders: "
    "<root>/train/<class>/<video>, or <root>/<class>/<video> to split them by a stable hash)",
    "val": "heads stop early and are chosen on val; hold out part of train with dataset.val_fraction=0.1, or add "
    "a val split",
    "test": "`vidprobe evaluate` has no test split to score (training does not need it); add test videos, or set "
    "dataset.splits=[train,val]",
}


def stable_draw(key) -> float:
    """A number in [0, 1] fixed by `key` alone: the same split on every machine and every run."""
    return int(hashlib.sha1(str(key).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def hash_split(keys: pd.Series, fractions: list[float]) -> pd.Series:
    """train/val/test by a stable hash of each key, in the proportions `fractions` (dataset.split_fractions)."""
    edges = pd.Series(fractions).cumsum() / sum(fractions)
    return keys.map(stable_draw).map(lambda d: ["train", "val", "test"][min(int((edges <= d).sum()), 2)])


def hold_out_val(df: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Move a stable share of train to val, whole groups at a time (UCF-101's gNN) so no group leaks."""
    groups = df["group"] if "group" in df.columns else df["path"]
    draw = groups.map(stable_draw)
    df = df.copy()
    train = df.split == "train"
    chosen = train & (draw < fraction)
    if not chosen.any() and train.any():  # a small dataset still gets a val split: the lowest draw
        chosen = train & (groups == groups[train][draw[train].idxmin()])
    df.loc[chosen, "split"] = "val"
    return df


# --- helpers -------------------------------------------------------------------------------------


def annotations_dir(cfg: DatasetConfig, default: str) -> Path:
    """The annotation folder or file: relative to the root, else beside it (where releases unpack it)."""
    name = cfg.annotations or default
    root = Path(cfg.root)
    for candidate in (root / name, root.parent / name):  # an absolute name stays itself
        if candidate.exists():
            return candidate
    raise ConfigError(
        f"dataset.annotations: {name!r} not found in {root} or {root.parent}; "
        f"pass dataset.annotations=PATH to the official {default}"
    )


def read_text(path: Path) -> str:
    """UTF-8, else Windows-1252 (as some official releases ship), said aloud."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        print(f"warning: {path} is not UTF-8; read as Windows-1252")
        return data.decode("cp1252", errors="replace")


def read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ConfigError(f"dataset: table {path} does not exist")
    from io import StringIO

    text = read_text(path)
    if path.suffix.lower() in (".jsonl", ".json"):
        return pd.read_json(StringIO(text), lines=path.suffix.lower() == ".jsonl")
    return pd.read_csv(StringIO(text))


def require_columns(table: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {missing}; it has {list(table.columns)}")


def stem_id(rel: str) -> str:
    return rel.rsplit(".", 1)[0]


def join_metadata(df: pd.DataFrame, cfg: DatasetConfig) -> pd.DataFrame:
    """Copy `dataset.traits`, `dataset.columns` (any type, e.g. another label) and `text` (when present)
    from the metadata table, joined on `path`."""
    path = Path(cfg.root) / cfg.metadata
    meta = read_table(path)
    require_columns(meta, ["path"] + list(cfg.traits) + list(cfg.columns), path)
    for trait in cfg.traits:
        if not pd.api.types.is_numeric_dtype(meta[trait]):
            raise ConfigError(f"dataset.traits: column {trait!r} of {path} is not numeric")
    wanted = list(dict.fromkeys(["path", *cfg.traits, *cfg.columns] + (["text"] if "text" in meta.columns else [])))
    return df.merge(meta[wanted], on="path", how="left")
