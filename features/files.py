"""Writing files so that no reader ever sees half of one: each is written beside its final name
(`<name>.partial`) and renamed into place when whole. Every writer of the project goes through here.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from vidprobe.features.errors import DiskFull


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


def save_torch(obj: Any, path: str | Path) -> Path:
    """`torch.save(obj, path)`, whole or not at all. Written under the same file name in a temporary folder
    beside it, so the archive inside is named as `torch.save(path)` names it (same bytes)."""
    import torch

    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.", suffix=".partial") as tmp:
        torch.save(obj, Path(tmp) / path.name)
        os.replace(Path(tmp) / path.name, path)
    return path


def remove_partials(folder: str | Path) -> None:
    """What writers killed mid-write left in `folder` (never read: readers open only finished names)."""
    for stale in [*Path(folder).glob("*.partial"), *Path(folder).glob(".*.partial")]:
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()


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


def disk_error(err: BaseException) -> bool:
    """ENOSPC, however the library under h5py or torch reports it."""
    return getattr(err, "errno", None) == errno.ENOSPC or "No space left on device" in str(err)


def require_space(path: Path, needed: int, what: str) -> None:
    """Refuse, with the numbers, to start writing `needed` bytes where the filesystem has fewer free."""
    free = shutil.disk_usage(path).free
    if free < needed:
        raise DiskFull(
            f"{what} needs about {needed / 2**20:.1f} MiB at {path}, {free / 2**20:.1f} MiB are free; "
            "free space (or point paths.cache elsewhere) and re-run"
        )
