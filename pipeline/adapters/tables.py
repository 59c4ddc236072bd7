"""Adapters for datasets listed in a table: one row per video with traits, utterance segments with start and
end times (MELD), several classes per video (multi-label, long tail)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from vidprobe.adapters.base import (
    SPLIT_NAMES,
    Annotations,
    annotations_dir,
    hash_split,
    read_table,
    read_text,
    register_adapter,
    require_columns,
    stem_id,
)
from vidprobe.features.config import choice
from vidprobe.yamlconfig import ConfigError

if TYPE_CHECKING:
    from vidprobe.config import DatasetConfig


@dataclass
class Table:
    table: str | None = None  # the CSV or JSONL listing the samples (relative to the root, or a path)
    path_template: str = "{path}"  # how a table row names its video, e.g. "videos/{id}.mp4"
    group: str | None = None  # no split column: rows sharing this column's value share a split; None: `group` if any


@dataclass
class MissingTraits:
    missing_traits: str = choice("mask", "drop")  # rows lacking a trait: kept with NaN (skipped per head), or dropped


@dataclass
class MultiLabel:
    classes: str | None = None  # the class list, one name per line
    label_column: str = "labels"  # the column holding each video's classes
    label_separator: str = ","  # how those classes are joined
    segment_cutoffs: list[int] = field(default_factory=lambda: [500, 100])  # head > 500 >= middle >= 100 > tail


@dataclass
class Meld:
    video_dirs: list[str] = field(default_factory=list)  # the clip folder of each split, in dataset.splits order


def table_path(cfg: DatasetConfig) -> Path:
    if not cfg.table:
        raise ConfigError(f"dataset.table: the {cfg.adapter} adapter needs the table listing the samples")
    path = Path(cfg.table)
    return path if path.is_absolute() else Path(cfg.root) / path


def split_column(table: pd.DataFrame, cfg: DatasetConfig, key: pd.Series) -> pd.Series:
    """The table's `split` column (train/val/test in any usual spelling), else a stable hash of the group
    (`group_keys`), so that clips of one subject or source video never sit on both sides."""
    if "split" in table.columns:
        return table.split.astype(str).str.lower().map(SPLIT_NAMES)
    return hash_split(group_keys(table, cfg, key), cfg.split_fractions)


def group_keys(table: pd.DataFrame, cfg: DatasetConfig, key: pd.Series) -> pd.Series:
    """What keeps rows together in a split: the column `dataset.group` (or `group`, when the table has it), else
    `key` (each video)."""
    column = cfg.group or ("group" if "group" in table.columns else None)
    if column is None:
        return key
    if column not in table.columns:
        raise ConfigError(f"dataset.group: the table has no column {column!r}; it has {list(table.columns)}")
    return pd.Series(table[column].astype(str).values, index=key.index)


def template_paths(table: pd.DataFrame, cfg: DatasetConfig, path: Path) -> pd.Series:
    try:
        return pd.Series([cfg.path_template.format(**row) for row in table.to_dict("records")], index=table.index)
    except KeyError as err:
        raise ConfigError(
            f"dataset.path_template: {cfg.path_template!r} names column {err} that {path} lacks; "
            f"it has {list(table.columns)}"
        ) from None


@register_adapter("traits", settings=(Table, MissingTraits))
def traits(cfg: DatasetConfig) -> pd.DataFrame:
    """A table with one row per video: a numeric column per trait (JSONL or CSV), a class `label`, or both;
    `dataset.columns` are copied too (e.g. a class column by another name, for task.label)."""
    path = table_path(cfg)
    table = read_table(path)
    if not cfg.traits and not cfg.columns and "label" not in table.columns:
        raise ConfigError(
            f"dataset.traits: name the numeric columns of {path} to use, e.g. dataset.traits=[openness, warmth] "
            "(or give it a `label` column, or name class columns in dataset.columns)"
        )
    require_columns(table, list(cfg.traits) + list(cfg.columns), path)
    problems = [
        f"{path}: column {t!r} is not numeric" for t in cfg.traits if not pd.api.types.is_numeric_dtype(table[t])
    ]
    if cfg.missing_traits == "drop":
        table = table.dropna(subset=list(cfg.traits))
    rel = template_paths(table, cfg, path)
    df = pd.DataFrame({"sample_id": rel.map(stem_id), "path": rel, "split": split_column(table, cfg, rel)})
    extra = [c for c in ("label", "text", cfg.group or "group") if c in table.columns]
    for column in dict.fromkeys(list(cfg.traits) + list(cfg.columns) + extra):
        df[column] = table[column].values
    if cfg.group and cfg.group != "group":
        df["group"] = table[cfg.group].astype(str).values
    if df.split.isna().any():
        problems.append(f"{path}: {int(df.split.isna().sum())} rows with a split name other than train/val/test")
    df.attrs["problems"] = problems
    return df


def seconds(value, where: str = "") -> float | None:
    """Seconds from 12.5, '12.5', '00:00:12,500' or '0:00:12.5' (SRT-style times)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value).strip().replace(",", ".")
    parts = text.split(":")
    try:
        return sum(float(p) * 60**i for i, p in enumerate(reversed(parts)))
    except ValueError:
        raise ConfigError(
            f"{where}cannot read {value!r} as a time (seconds or hh:mm:ss,ms; quote times that hold a comma)"
        ) from None


@register_adapter("utterances", settings=(Table,))
def utterances(cfg: DatasetConfig) -> pd.DataFrame:
    """Segments of longer videos: a table with the video path, `start`, `end` (seconds or hh:mm:ss,ms),
    the label and optional `text`; the sampler cuts them, nothing is re-encoded."""
    path = table_path(cfg)
    table = read_table(path)
    require_columns(table, ["start", "end"], path)
    rel = template_paths(table, cfg, path)
    start = pd.Series([seconds(v, f"{path} row {i + 2}: ") for i, v in enumerate(table.start)])
    end = pd.Series([seconds(v, f"{path} row {i + 2}: ") for i, v in enumerate(table.end)])
    df = pd.DataFrame(
        {
            "sample_id": [f"{stem_id(r)}@{s:.3f}-{e:.3f}" for r, s, e in zip(rel, start, end)],
            "path": rel,
            "split": split_column(table, cfg, rel),
            "start": start,
            "end": end,
        }
    )
    for column in [c for c in ("label", "text", "speaker") if c in table.columns] + list(cfg.traits):
        df[column] = table[column].values
    return df


@register_adapter("multilabel", settings=(Table, MultiLabel))
def multilabel(cfg: DatasetConfig) -> pd.DataFrame:
    """A table with a video column and several classes per video, plus the class list (long tails welcome)."""
    path = table_path(cfg)
    table = read_table(path)
    require_columns(table, [cfg.label_column], path)
    if not cfg.classes:
        raise ConfigError("dataset.classes: the multilabel adapter needs the class list file (one name per line)")
    classes_file = Path(cfg.root) / cfg.classes
    if not classes_file.is_file():
        raise ConfigError(f"dataset.classes: {classes_file} does not exist")
    classes = [c.strip() for c in read_text(classes_file).split("\n") if c.strip()]
    known, problems, labels = set(classes), [], []
    for i, raw in enumerate(table[cfg.label_column].fillna("").astype(str)):
        names = [n.strip() for n in raw.split(cfg.label_separator) if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            problems.append(f"{path} row {i + 2}: {unknown} not in {classes_file.name}")
        labels.append("|".join(names))
    rel = template_paths(table, cfg, path)
    df = pd.DataFrame(
        {"sample_id": rel.map(stem_id), "path": rel, "split": split_column(table, cfg, rel), "labels": labels}
    )
    df.attrs["problems"] = problems
    df.attrs["classes"] = classes
    return df


def class_segments(df: pd.DataFrame, classes: list[str], cutoffs: list[int]) -> dict:
    """Train-set count and head/middle/tail segment of every class (AnimalKingdom's >500 / 100-500 / <100)."""
    high, low = cutoffs
    counts = dict.fromkeys(classes, 0)
    for labels in df.loc[df.split == "train", "labels"]:
        for name in filter(None, str(labels).split("|")):
            counts[name] = counts.get(name, 0) + 1
    segment = {c: "head" if n > high else "middle" if n >= low else "tail" for c, n in counts.items()}
    return {"classes": classes, "train_counts": counts, "segment": segment, "cutoffs": cutoffs}


MELD_FILES = {"train": "train_sent_emo.csv", "val": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}


@register_adapter("meld", settings=(Annotations, Meld))
def meld(cfg: DatasetConfig) -> pd.DataFrame:
    """MELD: `{train,dev,test}_sent_emo.csv` and clips `dia{Dialogue_ID}_utt{Utterance_ID}.mp4` in one folder per split."""
    ann = annotations_dir(cfg, ".")
    dirs = dict(
        zip(cfg.splits, cfg.video_dirs or ["train_splits", "dev_splits_complete", "output_repeated_splits_test"])
    )
    rows = []
    for split, fname in MELD_FILES.items():
        path = ann / fname
        if split not in cfg.splits:
            continue
        if not path.is_file():
            raise ConfigError(f"dataset.annotations: {fname} not found in {ann}")
        table = read_table(path)
        require_columns(table, ["Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID"], path)
        for r in table.itertuples(index=False):
            name = f"dia{r.Dialogue_ID}_utt{r.Utterance_ID}"
            rows.append(
                {
                    "sample_id": f"{split}/{name}",
                    "path": f"{dirs[split]}/{name}.mp4",
                    "split": split,
                    "label": r.Emotion,
                    "sentiment": r.Sentiment,
                    "speaker": r.Speaker,
                    "text": r.Utterance,
                }
            )
    return pd.DataFrame(rows)
