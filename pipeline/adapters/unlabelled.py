"""New videos without labels, as `vidprobe predict` reads them (split `predict`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from vidprobe.adapters.base import read_table, read_text, register_adapter, require_columns, stem_id
from vidprobe.adapters.tables import Table, seconds, table_path
from vidprobe.yamlconfig import ConfigError

if TYPE_CHECKING:
    from vidprobe.config import DatasetConfig

SPLIT = "predict"


@register_adapter("unlabelled", settings=(Table,))
def unlabelled(cfg: DatasetConfig) -> pd.DataFrame:
    """Every video under dataset.root (searched recursively), or the videos dataset.table lists: a .txt with one
    path per line, or a CSV / JSONL with a `path` column and optional `start` / `end` (seconds or hh:mm:ss,ms).
    Paths are relative to dataset.root (absolute ones inside it are taken as they are)."""
    root = Path(cfg.root)
    exts = {e.lower() for e in cfg.extensions}
    if not cfg.table:
        rel = [
            p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in exts
        ]
        if not rel:
            raise ConfigError(f"dataset.root: no videos ({', '.join(sorted(exts))}) under {root}")
        return pd.DataFrame({"sample_id": [stem_id(r) for r in rel], "path": rel, "split": SPLIT})
    path = table_path(cfg)
    if path.suffix.lower() == ".txt":
        lines = [line.strip() for line in read_text(path).splitlines()]
        table = pd.DataFrame({"path": [line for line in lines if line and not line.startswith("#")]})
    else:
        table = read_table(path)
        require_columns(table, ["path"], path)
    rel = [relative(str(p), root) for p in table.path]
    df = pd.DataFrame({"sample_id": [stem_id(r) for r in rel], "path": rel, "split": SPLIT})
    if {"start", "end"} <= set(table.columns):
        df["start"] = [seconds(v, f"{path} row {i + 2}: ") for i, v in enumerate(table.start)]
        df["end"] = [seconds(v, f"{path} row {i + 2}: ") for i, v in enumerate(table.end)]
        cut = df.start.notna() | df.end.notna()
        df.loc[cut, "sample_id"] = [
            f"{sid}@{s or 0:.3f}-{e:.3f}"
            for sid, s, e in zip(df.sample_id[cut], df.start[cut], df.end[cut].fillna(float("inf")))
        ]
    return df


def relative(path: str, root: Path) -> str:
    p = Path(path)
    if p.is_absolute():
        try:
            return p.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return path  # refused by validation: outside dataset.root
    return p.as_posix()
