"""Dataset adapters: turn a layout on disk into manifest rows, validated before any video is opened.

Each adapter returns rows with `sample_id`, `path` (relative to `dataset.root`), `split` and its
targets; `validate` then reports every problem at once.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable

import pandas as pd

from pipeline.config import ConfigError, DatasetConfig

ADAPTERS: dict[str, Callable[[DatasetConfig], pd.DataFrame]] = {}
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validate": "val",
               "validation": "val", "dev": "val", "test": "test", "testing": "test"}


def register_adapter(name: str):
    def deco(fn):
        ADAPTERS[name] = fn
        return fn

    return deco


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
            problems.append(f"split {split!r} is empty (dataset.splits lists it)"
                            + ("; dataset.val_fraction=0.1 holds out part of train" if split == "val" else ""))
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
        print(f"warning: {len(missing)} listed videos are not on disk (recorded as status 'missing'), e.g. {missing[:3]}")


def stable_draw(key) -> float:
    """A number in [0, 1] fixed by `key` alone: the same split on every machine and every run."""
    return int(hashlib.sha1(str(key).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


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
    raise ConfigError(f"dataset.annotations: {name!r} not found in {root} or {root.parent}; "
                      f"pass dataset.annotations=PATH to the official {default}")


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


# --- adapters ------------------------------------------------------------------------------------

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
                    rows.append({"sample_id": stem_id(rel), "path": rel, "split": split, "label": class_dir.name})
    if not rows:
        raise ConfigError(
            f"dataset.root: no videos found under {root} (expected {root}/{{{','.join(cfg.splits)}}}/<class>/<video> "
            f"with one of {', '.join(sorted(exts))})"
        )
    return pd.DataFrame(rows)


@register_adapter("ucf101")
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
                problems.append(f"{fname}:{n}: label {label_id[0]} is {classes.get(int(label_id[0]))!r} in "
                                f"classInd.txt, but the file is under {label!r}")
            group = re.search(r"_g(\d+)_", rel)
            rows.append({"sample_id": stem_id(rel), "path": rel, "split": split, "label": label,
                         "group": f"{label}/g{group.group(1)}" if group else rel})
    df = pd.DataFrame(rows)
    df.attrs["problems"] = problems
    return df


@register_adapter("hmdb51")
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
                rows.append({"sample_id": stem_id(rel), "path": rel, "split": "train" if code == "1" else "test",
                             "label": label})
    df = pd.DataFrame(rows)
    df.attrs["problems"] = problems
    return df


@register_adapter("kinetics400")
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
            rows.append({"sample_id": name[:-4], "path": on_disk.get(name, guess), "split": split,
                         "label": label or None})
    if not rows:
        raise ConfigError(f"dataset.annotations: no rows in the CSVs of {ann} (expected train.csv, validate.csv, test.csv)")
    df = pd.DataFrame(rows)
    df.attrs["problems"] = problems
    return df


def table_path(cfg: DatasetConfig) -> Path:
    if not cfg.table:
        raise ConfigError(f"dataset.table: the {cfg.adapter} adapter needs the table listing the samples")
    path = Path(cfg.table)
    return path if path.is_absolute() else Path(cfg.root) / path


def split_column(table: pd.DataFrame, cfg: DatasetConfig, key: pd.Series) -> pd.Series:
    """The table's `split` column (train/val/test in any usual spelling), else a stable hash of `key`."""
    if "split" in table.columns:
        return table.split.astype(str).str.lower().map(SPLIT_NAMES)
    edges = pd.Series(cfg.split_fractions).cumsum() / sum(cfg.split_fractions)
    draw = key.map(stable_draw)
    return draw.map(lambda d: ["train", "val", "test"][min(int((edges <= d).sum()), 2)])


def template_paths(table: pd.DataFrame, cfg: DatasetConfig, path: Path) -> pd.Series:
    try:
        return pd.Series([cfg.path_template.format(**row) for row in table.to_dict("records")], index=table.index)
    except KeyError as err:
        raise ConfigError(f"dataset.path_template: {cfg.path_template!r} names column {err} that {path} lacks; "
                          f"it has {list(table.columns)}") from None


@register_adapter("traits")
def traits(cfg: DatasetConfig) -> pd.DataFrame:
    """A table with one row per video and one numeric column per trait (JSONL or CSV)."""
    path = table_path(cfg)
    table = read_table(path)
    if not cfg.traits:
        raise ConfigError("dataset.traits: name the numeric columns to use, e.g. dataset.traits=[openness, warmth]")
    require_columns(table, list(cfg.traits), path)
    problems = [f"{path}: column {t!r} is not numeric" for t in cfg.traits if not pd.api.types.is_numeric_dtype(table[t])]
    if cfg.missing_traits == "drop":
        table = table.dropna(subset=list(cfg.traits))
    rel = template_paths(table, cfg, path)
    df = pd.DataFrame({"sample_id": rel.map(stem_id), "path": rel, "split": split_column(table, cfg, rel)})
    for column in list(cfg.traits) + [c for c in ("label", "text") if c in table.columns]:
        df[column] = table[column].values
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
        raise ConfigError(f"{where}cannot read {value!r} as a time (seconds or hh:mm:ss,ms; quote times that hold a comma)") from None


@register_adapter("utterances")
def utterances(cfg: DatasetConfig) -> pd.DataFrame:
    """Segments of longer videos: a table with the video path, `start`, `end` (seconds or hh:mm:ss,ms),
    the label and optional `text`; the sampler cuts them, nothing is re-encoded."""
    path = table_path(cfg)
    table = read_table(path)
    require_columns(table, ["start", "end"], path)
    rel = template_paths(table, cfg, path)
    start = pd.Series([seconds(v, f"{path} row {i + 2}: ") for i, v in enumerate(table.start)])
    end = pd.Series([seconds(v, f"{path} row {i + 2}: ") for i, v in enumerate(table.end)])
    df = pd.DataFrame({"sample_id": [f"{stem_id(r)}@{s:.3f}-{e:.3f}" for r, s, e in zip(rel, start, end)],
                       "path": rel, "split": split_column(table, cfg, rel), "start": start, "end": end})
    for column in [c for c in ("label", "text", "speaker") if c in table.columns] + list(cfg.traits):
        df[column] = table[column].values
    return df


@register_adapter("multilabel")
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
    df = pd.DataFrame({"sample_id": rel.map(stem_id), "path": rel, "split": split_column(table, cfg, rel),
                       "labels": labels})
    df.attrs["problems"] = problems
    df.attrs["classes"] = classes
    return df


def class_segments(df: pd.DataFrame, classes: list[str], cutoffs: list[int]) -> dict:
    """Train-set count and head/middle/tail segment of every class (AnimalKingdom's >500 / 100-500 / <100)."""
    high, low = cutoffs
    counts = {c: 0 for c in classes}
    for labels in df.loc[df.split == "train", "labels"]:
        for name in filter(None, str(labels).split("|")):
            counts[name] = counts.get(name, 0) + 1
    segment = {c: "head" if n > high else "middle" if n >= low else "tail" for c, n in counts.items()}
    return {"classes": classes, "train_counts": counts, "segment": segment, "cutoffs": cutoffs}


MELD_FILES = {"train": "train_sent_emo.csv", "val": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}


@register_adapter("meld")
def meld(cfg: DatasetConfig) -> pd.DataFrame:
    """MELD: `{train,dev,test}_sent_emo.csv` and clips `dia{Dialogue_ID}_utt{Utterance_ID}.mp4` in one folder per split."""
    ann = annotations_dir(cfg, ".")
    dirs = dict(zip(cfg.splits, cfg.video_dirs or ["train_splits", "dev_splits_complete", "output_repeated_splits_test"]))
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
            rows.append({"sample_id": f"{split}/{name}", "path": f"{dirs[split]}/{name}.mp4", "split": split,
                         "label": r.Emotion, "sentiment": r.Sentiment, "speaker": r.Speaker, "text": r.Utterance})
    return pd.DataFrame(rows)


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
