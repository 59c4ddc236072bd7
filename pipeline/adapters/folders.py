"""Adapters for datasets laid out as folders: class folders, and the official UCF-101, HMDB-51 and Kinetics
releases (their split files)."""

from __future__ import annotations

import re
from dataclasses import dataclass
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
from vidprobe.yamlconfig import ConfigError

if TYPE_CHECKING:
    from vidprobe.config import DatasetConfig


@dataclass
class OfficialSplit:
    split: int = 1  # which official split (UCF-101, HMDB-51)


@register_adapter("folder")
def class_folders(cfg: DatasetConfig) -> pd.DataFrame:
    """`<root>/<split>/<class>/<video>`: the class is the folder name. With no split folders at all,
    `<root>/<class>/<video>`, split by a stable hash of each path (dataset.split_fractions); videos one folder
    deeper, `<root>/<class>/<group>/<video>` (a subject, a source video), share their group's split."""
    root = Path(cfg.root)
    exts = {e.lower() for e in cfg.extensions}
    splits = [s for s in cfg.splits if (root / s).is_dir()]
    rows = [
        {"sample_id": stem_id(rel), "path": rel, "split": split, "label": label}
        for split in splits
        for label, rel in class_videos(root, root / split, exts)
    ]
    if not splits:
        rows = [
            {"sample_id": stem_id(rel), "path": rel, "label": label} for label, rel in class_videos(root, root, exts)
        ]
        if rows:
            print(
                f"note: no split folders ({', '.join(cfg.splits)}) under {root}: class folders split by a stable "
                f"hash of each path (of <class>/<group>/ for videos in subfolders), "
                f"train/val/test = {'/'.join(map(str, cfg.split_fractions))} (dataset.split_fractions)"
            )
    if not rows:
        raise ConfigError(
            f"dataset.root: no videos found under {root} (expected {root}/{{{','.join(cfg.splits)}}}/<class>/<video> "
            f"or {root}/<class>/<video>, with one of {', '.join(sorted(exts))})"
        )
    df = pd.DataFrame(rows)
    if not splits:
        groups = df.path.map(lambda p: "/".join(p.split("/")[:2]) if p.count("/") >= 2 else p)
        df.insert(2, "split", hash_split(groups, cfg.split_fractions))
        if (groups != df.path).any():
            df["group"] = groups
    return df


def class_videos(root: Path, folder: Path, exts: set[str]) -> list[tuple[str, str]]:
    """(class, path relative to `root`) of every video in the class folders of `folder`."""
    return [
        (class_dir.name, video.relative_to(root).as_posix())
        for class_dir in sorted(p for p in folder.glob("*") if p.is_dir())
        for video in sorted(class_dir.rglob("*"))
        if video.is_file() and video.suffix.lower() in exts
    ]


@register_adapter("ucf101", settings=(Annotations, OfficialSplit))
def ucf101(cfg: DatasetConfig) -> pd.DataFrame:
    """UCF-101: `<root>/<Class>/v_<Class>_gNN_cNN.avi` and the official `ucfTrainTestlist/`."""
    lists = annotations_dir(cfg, "ucfTrainTestlist")
    classes = {}
    for line in read_text(lists / "classInd.txt").split("\n"):
        if line.strip():
            idx, name = line.split()
            classes[int(idx)] = name
    known = {name.lower(): name for name in classes.values()}
    rows, problems = [], []
    for split, fname in (("train", f"trainlist0{cfg.split}.txt"), ("test", f"testlist0{cfg.split}.txt")):
        path = lists / fname
        if not path.is_file():
            raise ConfigError(f"dataset.split: {path} not found (UCF-101 has splits 1-3)")
        for n, line in enumerate(read_text(path).split("\n"), 1):
            if not line.strip():
                continue
            rel, *label_id = line.split()
            label = rel.split("/", 1)[0]
            if label.lower() not in known:
                problems.append(f"{fname}:{n}: class {label!r} is not in classInd.txt")
            elif label_id and classes.get(int(label_id[0]), "").lower() != label.lower():
                problems.append(
                    f"{fname}:{n}: label {label_id[0]} is {classes.get(int(label_id[0]))!r} in "
                    f"classInd.txt, but the file is under {label!r}"
                )
            group = re.search(r"_g(\d+)_", rel)
            rows.append(
                {
                    "sample_id": stem_id(rel),
                    "path": rel,
                    "split": split,
                    "label": label,
                    "group": f"{label}/g{group.group(1)}" if group else rel,
                }
            )
    df = pd.DataFrame(rows)
    df.attrs["problems"] = problems
    return df


@register_adapter("hmdb51", settings=(Annotations, OfficialSplit))
def hmdb51(cfg: DatasetConfig) -> pd.DataFrame:
    """HMDB-51: `<root>/<class>/<video>.avi` and `testTrainMulti_7030_splits/<class>_test_splitN.txt` (1 train, 2 test)."""
    splits_dir = annotations_dir(cfg, "testTrainMulti_7030_splits")
    files = sorted(splits_dir.glob(f"*_test_split{cfg.split}.txt"))
    if not files:
        raise ConfigError(f"dataset.split: no *_test_split{cfg.split}.txt in {splits_dir} (HMDB-51 has splits 1-3)")
    rows, problems = [], []
    for f in files:
        label = f.name[: -len(f"_test_split{cfg.split}.txt")]
        for n, line in enumerate(read_text(f).split("\n"), 1):
            if not line.strip():
                continue
            name, code = line.split()[:2]
            if code not in ("0", "1", "2"):
                problems.append(f"{f.name}:{n}: split code {code!r} is not 0, 1 or 2")
            elif code != "0":
                rel = f"{label}/{name}"
                rows.append(
                    {
                        "sample_id": stem_id(rel),
                        "path": rel,
                        "split": "train" if code == "1" else "test",
                        "label": label,
                    }
                )
    df = pd.DataFrame(rows)
    df.attrs["problems"] = problems
    return df


@register_adapter("kinetics400", settings=(Annotations,))
def kinetics(cfg: DatasetConfig) -> pd.DataFrame:
    """Kinetics: `{train,validate,test}.csv` (label,youtube_id,time_start,time_end,split) and clips
    `{youtube_id}_{time_start:06d}_{time_end:06d}.mp4` under per-split folders, class sub-folders optional."""
    ann = annotations_dir(cfg, "annotations")
    root = Path(cfg.root)
    on_disk = {p.name: p.relative_to(root).as_posix() for p in root.rglob("*.mp4")}  # one walk, any layout
    rows, problems = [], []
    for csv in sorted(ann.glob("*.csv")):
        table = read_table(csv)
        require_columns(table, ["youtube_id", "time_start", "time_end", "split"], csv)
        for n, r in enumerate(table.itertuples(index=False), 2):
            split = SPLIT_NAMES.get(str(r.split).lower())
            if split is None:
                problems.append(f"{csv.name}:{n}: split {r.split!r} is not train, validate or test")
                continue
            name = f"{r.youtube_id}_{int(r.time_start):06d}_{int(r.time_end):06d}.mp4"
            label = "" if pd.isna(getattr(r, "label", None)) else str(r.label)
            guess = f"{split}/{label}/{name}" if label else f"{split}/{name}"  # where a missing clip would be
            rows.append(
                {"sample_id": name[:-4], "path": on_disk.get(name, guess), "split": split, "label": label or None}
            )
    if not rows:
        raise ConfigError(
            f"dataset.annotations: no rows in the CSVs of {ann} (expected train.csv, validate.csv, test.csv)"
        )
    df = pd.DataFrame(rows)
    df.attrs["problems"] = problems
    return df
