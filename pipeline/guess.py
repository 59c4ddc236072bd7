"""What `vidprobe probe` infers from a folder of videos and an optional labels table: the dataset layout, the
task and the metric, as config overrides (which the user's own `key=value` overrides replace), with a line per
decision to print first. Anything it cannot make sense of is a ConfigError naming the file and the fix, raised
before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from vidprobe.adapters.base import SPLIT_NAMES, read_table
from vidprobe.errors import ConfigError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")
PATH_COLUMNS = ("path", "file", "filename", "filepath", "video", "video_path", "clip", "clip_path")
ID_COLUMNS = ("sample_id", "id", "video_id", "clip_id", "name", "stem")
LABEL_COLUMNS = ("label", "class", "class_name", "category", "action", "emotion", "target")
GROUP_COLUMNS = ("group", "subject", "speaker", "participant", "person", "source", "source_video")
NOT_TRAITS = {"split", "start", "end", "text", "fps", "duration", "width", "height", "index", "unnamed: 0"}
SPLITS = ("train", "val", "test")


@dataclass
class Inferred:
    overrides: dict  # dotted key -> value, applied under the user's own
    lines: list[str] = field(default_factory=list)  # what was inferred, one decision per line
    metric: str = "acc"
    loss_key: str = "head.loss"  # the loss the default sweep varies
    losses: tuple[str, ...] = ("ce", "focal")


def infer(videos: Path, labels: Path | None) -> Inferred:
    """The layout of `videos` (class folders, with or without split folders) or of the `labels` table."""
    videos = Path(videos)
    if not videos.is_dir():
        raise ConfigError(f"{videos}: not a folder; pass the folder that holds your videos")
    found = sorted(
        p.relative_to(videos).as_posix()
        for p in videos.rglob("*")
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")
    )
    if not found:
        raise ConfigError(
            f"{videos}: no videos in it or below (looked for {', '.join(VIDEO_EXTENSIONS)}); "
            "pass the folder that holds them"
        )
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", videos.resolve().name).strip("-.") or "videos"
    base = {"dataset.root": str(videos.resolve()), "dataset.name": name, "dataset.extensions": list(VIDEO_EXTENSIONS)}
    out = from_table(videos, Path(labels), found) if labels else from_folders(videos, found)
    out.overrides = {**base, **out.overrides, "sweep.metric": out.metric}
    out.lines.insert(0, f"videos: {len(found)} files under {videos}")
    return out


def from_folders(videos: Path, found: list[str]) -> Inferred:
    split_dirs = [s for s in SPLITS if (videos / s).is_dir()]
    if split_dirs:
        outside = [p for p in found if p.split("/")[0] not in split_dirs]
        loose = [p for p in found if p.split("/")[0] in split_dirs and p.count("/") < 2]
        classes = sorted({p.split("/")[1] for p in found if p.split("/")[0] in split_dirs and p.count("/") >= 2})
    else:
        outside, loose = [], [p for p in found if "/" not in p]
        classes = sorted({p.split("/")[0] for p in found if "/" in p})
    if loose:
        where = "in a split folder" if split_dirs else f"directly in {videos}"
        raise ConfigError(
            f"{len(loose)} videos sit {where}, outside any class folder (e.g. {loose[:3]}): put each in a folder "
            f"named by its class ({videos}/[train/]<class>/<video>), or pass --labels TABLE (a CSV or JSONL with a "
            "path or id column and a label column or numeric trait columns)"
        )
    if outside:
        print(f"note: {len(outside)} videos outside the split folders {split_dirs} are left out, e.g. {outside[:3]}")
    if len(classes) < 2:
        raise ConfigError(
            f"{videos}: one class folder ({classes}): a probe needs two or more classes; add class folders, or pass "
            "--labels TABLE with numeric traits"
        )
    shown = ", ".join(classes[:8]) + (f", ... ({len(classes)} in all)" if len(classes) > 8 else "")
    out = Inferred({"dataset.adapter": "folder", "task.label": "label", "task.traits": []})
    out.lines.append(f"layout: class folders, {len(classes)} classes ({shown})")
    out.lines += split_lines(split_dirs, out, "class folders split by a stable hash of each path")
    return out


def split_lines(present: list[str], out: Inferred, hashed: str) -> list[str]:
    """How the samples are split, adding val (held out of train) when the data has train but no val."""
    if not present:
        return [f"splits: none given; {hashed} (train/val/test 0.8/0.1/0.1, dataset.split_fractions)"]
    lines = [f"splits: {', '.join(present)} as given"]
    if "train" in present and "val" not in present:
        out.overrides["dataset.val_fraction"] = 0.1
        lines.append("splits: no val; 10% of train held out as val, whole groups at a time (dataset.val_fraction)")
    if "test" not in present:
        lines.append("splits: no test; the best head is scored on val only")
    return lines


def from_table(videos: Path, labels: Path, found: list[str]) -> Inferred:
    path = labels if labels.is_absolute() or labels.is_file() else videos / labels
    table = read_table(path)
    if table.empty:
        raise ConfigError(f"{path}: the labels table has no rows")
    lower = {c.lower(): c for c in table.columns}
    path_col = next((lower[c] for c in PATH_COLUMNS if c in lower), None)
    id_col = next((lower[c] for c in ID_COLUMNS if c in lower), None)
    if path_col is None and id_col is None:
        raise ConfigError(
            f"{path}: no column naming the videos; add one called path (relative to {videos}) or id (the file "
            f"name without extension); it has {list(table.columns)}"
        )
    template = video_paths(videos, path, table, path_col, id_col, found)
    out = Inferred(
        {"dataset.adapter": "traits", "dataset.table": str(path.resolve()), "dataset.path_template": template}
    )
    out.lines.append(f"layout: labels table {path} ({len(table)} rows), videos named by column {path_col or id_col!r}")
    used = {c for c in (path_col, id_col) if c}
    label_col = next((lower[c] for c in LABEL_COLUMNS if c in lower), None)
    group_col = next((lower[c] for c in GROUP_COLUMNS if c in lower), None)
    if label_col:
        classes = table[label_col].dropna().astype(str).unique()
        if len(classes) < 2:
            raise ConfigError(
                f"{path}: column {label_col!r} holds one class ({list(classes)}): a probe needs two or more; "
                "fix the labels, or drop the column to regress the numeric columns instead"
            )
        out.overrides["task.label"] = label_col
        if label_col != "label":
            out.overrides["dataset.columns"] = [label_col]
        out.lines.append(f"task: classes from column {label_col!r} ({len(classes)} classes)")
    else:
        out.overrides["task.label"] = None
    skip = used | {label_col, group_col} | {c for c in table.columns if c.lower() in NOT_TRAITS}
    traits = [
        c for c in table.columns if c not in skip and pd.api.types.is_numeric_dtype(table[c]) and table[c].notna().any()
    ]
    if not label_col and not traits:
        raise ConfigError(
            f"{path}: nothing to learn: no class column ({', '.join(LABEL_COLUMNS)}) and no numeric trait "
            f"columns; it has {list(table.columns)}"
        )
    out.overrides.update({"dataset.traits": traits, "task.traits": traits})
    if traits:
        out.lines.append(f"task: numeric traits {', '.join(traits)} (regression)")
    if not label_col:
        out.metric, out.loss_key, out.losses = "spearman/mean", "head.regression_loss", ("mse", "ccc")
    if group_col:
        out.overrides["dataset.group"] = group_col
    if "split" in table.columns:
        present = [s for s in SPLITS if (table.split.astype(str).str.lower().map(SPLIT_NAMES) == s).any()]
        out.lines += split_lines(present, out, "")
    else:
        by = f"column {group_col!r} (rows sharing it share a split)" if group_col else "each video's path"
        out.lines += split_lines([], out, f"split by a stable hash of {by}")
    return out


def video_paths(
    videos: Path, path: Path, table: pd.DataFrame, path_col: str | None, id_col: str | None, found: list[str]
) -> str:
    """dataset.path_template for the table's rows; every row's video must exist under `videos` (a clear error
    listing the ones that do not, before anything is written)."""
    on_disk = set(found)
    if path_col:
        rel = [Path(v).as_posix() for v in table[path_col].astype(str)]
        absolute = [v for v in rel if Path(v).is_absolute()]
        if absolute:
            raise ConfigError(
                f"{path}: column {path_col!r} holds absolute paths (e.g. {absolute[:2]}); write them relative to "
                f"{videos}"
            )
        template = "{" + path_col + "}"
    else:
        stems: dict[str, list[str]] = {}
        for f in found:
            stems.setdefault(Path(f).stem, []).append(f)
        rel = [stems.get(str(v), [f"{v}.<missing>"])[0] for v in table[id_col]]
        shapes = {(str(Path(r).parent), Path(r).suffix) for r, v in zip(rel, table[id_col]) if r in on_disk}
        if len(shapes) > 1:
            raise ConfigError(
                f"{path}: the ids in {id_col!r} match videos in several folders or with several extensions "
                f"({sorted(shapes)[:3]}); add a path column (relative to {videos})"
            )
        folder, suffix = next(iter(shapes)) if shapes else (".", ".mp4")
        template = ("" if folder == "." else folder + "/") + "{" + id_col + "}" + suffix
    missing = [r for r in rel if r not in on_disk]
    if missing:
        raise ConfigError(
            f"{path}: {len(missing)} of {len(rel)} rows name videos not found under {videos}, e.g. "
            f"{missing[:3]}; fix those rows (paths relative to {videos}) or drop them"
        )
    return template
