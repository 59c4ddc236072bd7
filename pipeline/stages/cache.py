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
    for key, shape in sorted(fs.keys.items()):
        print(f"  {key:<18} (N{''.join(f', {d}' for d in shape)})")
    for key in ("backbone", "weights", "pooling", "num_frames", "image_size", "dtype", "storage_dtype", "sampling"):
        if key in prov:
            print(f"  {key}: {prov[key]}")
    return {"rows": len(fs.ids), "keys": fs.keys, "provenance": prov}


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
