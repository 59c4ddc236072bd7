"""The HDF5 feature store: `<feature set>/shard-<k>-of-<n>.h5` files plus `index.json`.

Each shard holds `ids` (sample_ids in row order) and one dataset per feature key
(`video/pooled` (N, D), `video/temporal` (N, T', D), ...), chunked along N. Its attributes carry
the provenance: `config_hash`, the resolved stage config (`config`, YAML) and a JSON `provenance`.
A shard is written under a `.partial` name and renamed only when complete, so a reader never
sees half-written rows.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

SHARD_RE = re.compile(r"shard-(\d+)-of-(\d+)\.h5$")
STR = h5py.string_dtype("utf-8")


class StoreError(Exception):
    """A feature set is missing, incomplete, or was made with another config."""


def shard_name(index: int, count: int) -> str:
    return f"shard-{index}-of-{count}.h5"


class ShardWriter:
    """Append rows batch by batch; `close()` makes the shard visible atomically."""

    def __init__(self, directory: str | Path, index: int, count: int, attrs: dict):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.final = self.dir / shard_name(index, count)
        self.partial = self.final.with_name(self.final.name + ".partial")
        self.h5 = h5py.File(self.partial, "w")
        for key, value in attrs.items():
            self.h5.attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
        self.h5.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=STR, chunks=(1024,))
        self.n = 0

    def append(self, ids: list[str], features: dict[str, np.ndarray]) -> None:
        for key, arr in features.items():
            if len(arr) != len(ids):
                raise ValueError(f"{key}: {len(arr)} rows for {len(ids)} ids")
            if key not in self.h5:
                chunk_rows = max(1, min(256, (1 << 20) // max(1, arr[0].nbytes)))
                self.h5.create_dataset(
                    key, shape=(0, *arr.shape[1:]), maxshape=(None, *arr.shape[1:]),
                    dtype=arr.dtype, chunks=(chunk_rows, *arr.shape[1:]),
                )
            ds = self.h5[key]
            ds.resize(self.n + len(arr), axis=0)
            ds[self.n :] = arr
        ids_ds = self.h5["ids"]
        ids_ds.resize(self.n + len(ids), axis=0)
        ids_ds[self.n :] = np.asarray(ids, dtype=object)
        self.n += len(ids)

    def close(self) -> Path:
        self.h5.attrs["num_rows"] = self.n
        self.h5.close()
        os.replace(self.partial, self.final)
        return self.final

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:  # leave nothing a reader could mistake for a finished shard
            self.h5.close()
            self.partial.unlink(missing_ok=True)


def feature_keys(h5: h5py.File) -> dict[str, tuple]:
    keys: dict[str, tuple] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and name != "ids":
            keys[name] = obj.shape[1:]

    h5.visititems(visit)
    return keys


def write_index(directory: str | Path) -> dict:
    """Summarise the finished shards of a feature set into `index.json`."""
    directory = Path(directory)
    shards, rows, keys, hashes = [], 0, {}, set()
    for path in shard_paths(directory):
        with h5py.File(path, "r") as h5:
            shards.append({"file": path.name, "rows": int(h5["ids"].shape[0])})
            rows += shards[-1]["rows"]
            keys.update({k: list(v) for k, v in feature_keys(h5).items()})
            hashes.add(str(h5.attrs.get("config_hash", "")))
    index = {"shards": shards, "num_rows": rows, "keys": keys, "config_hash": sorted(hashes)}
    (directory / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def shard_paths(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("shard-*-of-*.h5") if SHARD_RE.search(p.name))


class FeatureSet:
    """All shards of a feature set, read as one table keyed by sample_id."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.paths = shard_paths(self.dir)
        if not self.paths:
            raise StoreError(f"no feature shards in {self.dir}: run `vidprobe embed` with the same config first")
        self.rows: dict[str, tuple[int, int]] = {}
        self.attrs: dict = {}
        for s, path in enumerate(self.paths):
            with h5py.File(path, "r") as h5:
                attrs = dict(h5.attrs)
                if self.attrs and attrs.get("config_hash") != self.attrs.get("config_hash"):
                    raise StoreError(f"{path} was made with another config than {self.paths[0]}")
                self.attrs = attrs
                for r, sid in enumerate(h5["ids"].asstr()[()]):
                    if sid in self.rows:
                        raise StoreError(f"sample_id {sid!r} appears twice in {self.dir}")
                    self.rows[sid] = (s, r)
                self.keys = feature_keys(h5)

    @property
    def ids(self) -> list[str]:
        return list(self.rows)

    @property
    def config_hash(self) -> str:
        return str(self.attrs.get("config_hash", ""))

    def require_hash(self, expected: str) -> None:
        if self.config_hash != expected:
            raise StoreError(
                f"{self.dir} was made with config hash {self.config_hash}, but this config gives {expected}: "
                "the sampling or backbone settings differ from the ones that embedded it. "
                "Re-run `vidprobe embed` with this config, or point embed.feature_set at another name."
            )

    def get(self, key: str, ids: Iterable[str]) -> np.ndarray:
        """Rows of `key` for `ids`, in that order."""
        ids = list(ids)
        missing = [i for i in ids if i not in self.rows]
        if missing:
            raise StoreError(f"{len(missing)} ids not in {self.dir} (e.g. {missing[:3]})")
        if key not in self.keys:
            raise StoreError(f"no feature {key!r} in {self.dir}; it has {sorted(self.keys)}")
        out = np.empty((len(ids), *self.keys[key]), dtype=self._dtype(key))
        for s, path in enumerate(self.paths):
            pos = [(i, r) for i, sid in enumerate(ids) for (ss, r) in [self.rows[sid]] if ss == s]
            if not pos:
                continue
            with h5py.File(path, "r") as h5:
                data = h5[key][()]
            dest, src = zip(*pos)
            out[list(dest)] = data[list(src)]
        return out

    def _dtype(self, key: str):
        with h5py.File(self.paths[0], "r") as h5:
            return h5[key].dtype
