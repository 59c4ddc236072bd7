"""`vidprobe cache info|verify PATH`: what a feature set holds, and whether it is whole.

`verify` exits 1 when the set is broken (listing every broken shard), 2 when PATH is not a feature set.
`verify --repair` first drops duplicate rows (the first kept), removes parts already merged, moves broken
shards aside (the next `embed` embeds their rows again) and rewrites index.json, saying what it did.
"""

from __future__ import annotations

import json
from pathlib import Path

from vidprobe.features.errors import StoreError
from vidprobe.features.store import FeatureSet, verify
from vidprobe.features.store import repair as repair_set


def info(path: Path) -> dict:
    fs = FeatureSet(path)
    prov = json.loads(fs.attrs.get("provenance", "{}"))
    print(f"{path}: {len(fs.ids)} rows in {len(fs.paths)} shard(s), config hash {fs.config_hash}")
    sizes, dtypes = fs.row_bytes(), fs.dtypes()
    for key, shape in sorted(fs.keys.items()):
        size = f"  {sizes[key] / 1024:9.1f} KiB per row" if key in sizes else ""
        print(f"  {key:<18} (N{''.join(f', {d}' for d in shape)}) {dtypes[key]}{size}")
    per_row = sum(sizes.values())
    print(
        f"  per row: {per_row / 1024:.1f} KiB; all {len(fs.ids)} rows: {per_row * len(fs.ids) / 2**20:.1f} MiB "
        f"(uncompressed); per 240,000 clips (Kinetics-400): {per_row * 240_000 / 2**30:.1f} GiB"
    )
    for key in (
        "backbone",
        "weights",
        "pooling",
        "num_frames",
        "image_size",
        "dtype",
        "storage_dtype",
        "sampling",
        "token_grid",
        "token_pooling",
    ):
        if key in prov:
            print(f"  {key}: {prov[key]}")
    return {"rows": len(fs.ids), "keys": fs.keys, "provenance": prov, "row_bytes": sizes}


def run(action: str, path: str, repair: bool = False, lock_timeout: float = 600.0) -> dict:
    p = Path(path)
    if not p.is_dir():
        raise StoreError(f"{path} is not a feature set folder (e.g. cache/<dataset>/<feature_set>)")
    if action == "info":
        return info(p)
    if repair:
        for done in repair_set(p, lock_timeout):
            print(f"repair: {done}")
    fs = verify(p)
    print(f"{p}: ok ({len(fs.ids)} rows, {len(fs.paths)} shard(s))")
    return {"rows": len(fs.ids)}
