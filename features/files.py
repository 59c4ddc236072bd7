"""Writing files so that no reader ever sees half of one: each is written beside its final name
(`<name>.partial`) and renamed into place when whole. Every writer of the project goes through here.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import yaml


@contextlib.contextmanager
def atomic_path(path: str | Path, unique: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` when the block ends without error,
    remove it otherwise. `unique` adds this process's id to the temporary name, for files that several
    processes may write at once (the last rename wins, whole)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial" if unique else f"{path.name}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str, unique: bool = False) -> Path:
    path = Path(path)
    with atomic_path(path, unique) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json(path: str | Path, data: Any, unique: bool = False) -> Path:
    """JSON, indented by 2, ending with a newline: metrics.json, failure lists, reports."""
    return write_text(path, json.dumps(data, indent=2) + "\n", unique)


def write_yaml(path: str | Path, data: dict) -> Path:
    """YAML in the mapping's own order (a resolved config reads section by section)."""
    return write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_table(path: str | Path, table: pd.DataFrame, **to_csv: Any) -> Path:
    """A CSV (or TSV with sep="\\t"), without the index unless asked."""
    path = Path(path)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, **{"index": False, **to_csv})
    return path
