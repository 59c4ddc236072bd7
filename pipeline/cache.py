"""`vidprobe cache info|verify PATH`: what a feature set holds, and whether it is whole."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from features.store import COPY_ROWS, FeatureSet, StoreError, shard_paths


def info(path: Path) -> dict:
    fs = FeatureSet(path)
    prov = json.loads(fs.attrs.get("provenance", "{}"))
    print(f"{path}: {len(fs.ids)} rows in {len(fs.paths)} shard(s), config hash {fs.config_hash}")
    for key, shape in sorted(fs.keys.items()):
        print(f"  {key:<18} (N{''.join(f', {d}' for d in shape)})")
    for key in ("backbone", "weights", "pooling", "num_frames", "image_size", "dtype", "storage_dtype", "sampling"):
        if key in prov:
            print(f"  {key}: {prov[key]}")
    return {"rows": len(fs.ids), "keys": fs.keys, "provenance": prov}


def check_shard(shard: Path, keys: dict) -> list[str]:
    problems = []
    with h5py.File(shard, "r") as h5:
        n = h5["ids"].shape[0]
        for key in keys:
            ds = h5[key]
            if ds.shape[0] != n:
                problems.append(f"{shard.name}: {key} has {ds.shape[0]} rows for {n} ids")
            elif ds.dtype.kind == "f":
                for a in range(0, n, COPY_ROWS):  # chunk by chunk: memory stays flat
                    if not np.isfinite(ds[a : a + COPY_ROWS]).all():
                        problems.append(f"{shard.name}: {key} holds NaN or inf")
                        break
    return problems


def verify(path: Path) -> dict:
    """Every shard opens, ids unique across shards, no NaN/inf, counts match index.json, no unfinished parts."""
    problems = [f"{p.relative_to(path)}: committed rows of an unfinished run; re-run embed to finish it"
                for p in sorted(path.glob(".parts/*/part-*.h5"))]
    fs = FeatureSet(path)  # raises on duplicate ids or mixed configs
    for shard in shard_paths(path):
        problems += check_shard(shard, fs.keys)
    index_path = path / "index.json"
    if not index_path.is_file():
        problems.append("index.json is missing")
    else:
        index = json.loads(index_path.read_text())
        listed = {s["file"]: s["rows"] for s in index.get("shards", [])}
        actual = {p.name: sum(1 for r in fs.rows.values() if fs.paths[r[0]] == p) for p in fs.paths}
        if listed != actual:
            problems.append(f"index.json lists {listed}, the shards hold {actual}")
    if problems:
        raise StoreError(f"{path} is not whole:\n  " + "\n  ".join(problems))
    print(f"{path}: ok ({len(fs.ids)} rows, {len(fs.paths)} shard(s))")
    return {"rows": len(fs.ids)}


def run(action: str, path: str) -> dict:
    p = Path(path)
    if not p.is_dir():
        raise StoreError(f"{path} is not a feature set folder (e.g. cache/<dataset>/<feature_set>)")
    return info(p) if action == "info" else verify(p)
