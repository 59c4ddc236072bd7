"""`vidprobe cache info|verify PATH`: what a feature set holds, and whether it is whole."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from features.store import FeatureSet, StoreError, shard_paths


def info(path: Path) -> dict:
    fs = FeatureSet(path)
    prov = json.loads(fs.attrs.get("provenance", "{}"))
    print(f"{path}: {len(fs.ids)} samples in {len(fs.paths)} shard(s), config hash {fs.config_hash}")
    for key, shape in sorted(fs.keys.items()):
        print(f"  {key:<18} (N, {', '.join(map(str, shape))})")
    for key in ("backbone", "weights", "pooling", "num_frames", "image_size", "dtype"):
        if key in prov:
            print(f"  {key}: {prov[key]}")
    return {"rows": len(fs.ids), "keys": fs.keys, "provenance": prov}


def verify(path: Path) -> dict:
    """Every shard opens, every dataset has one row per id, no NaN or inf; partial shards are reported."""
    problems = [f"{p.name}: unfinished write (a crashed run); re-run embed" for p in path.glob("*.partial")]
    fs = FeatureSet(path)  # raises on duplicate ids or mixed configs
    for shard in shard_paths(path):
        with h5py.File(shard, "r") as h5:
            n = h5["ids"].shape[0]
            for key in fs.keys:
                ds = h5[key]
                if ds.shape[0] != n:
                    problems.append(f"{shard.name}: {key} has {ds.shape[0]} rows for {n} ids")
                elif ds.dtype.kind == "f" and not np.isfinite(ds[()]).all():
                    problems.append(f"{shard.name}: {key} holds NaN or inf")
    if problems:
        raise StoreError(f"{path} is not whole:\n  " + "\n  ".join(problems))
    print(f"{path}: ok ({len(fs.ids)} samples, {len(fs.paths)} shard(s))")
    return {"rows": len(fs.ids)}


def run(action: str, path: str) -> dict:
    p = Path(path)
    if not p.is_dir():
        raise StoreError(f"{path} is not a feature set folder (e.g. cache/<dataset>/<feature_set>)")
    return info(p) if action == "info" else verify(p)
