"""`vidprobe export`: a feature set out of the store, in the layouts other tools read.

- `npy`: one file per row and key, `<out>/<sample_id>_<key>.npy` (the key's `/` as `_`), as video_features
  writes them: `train/left/clip_000_video_pooled.npy`.
- `parquet`: one table `<out>/<feature set>.parquet`: `sample_id`, the manifest's columns, and per key its
  values flattened into a list; each key's shape and dtype are in the file's metadata (`vidprobe.shapes`).
- `hf`: a Hugging Face `datasets.Dataset` (`save_to_disk`), manifest columns and one array column per key
  (needs the `datasets` package: `pip install '.[hf]'`).

Rows are read `4096` at a time, so a set bigger than memory exports as well.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from vidprobe import layout
from vidprobe.artifacts import open_set, read_manifest, writing
from vidprobe.config import Config, ConfigError
from vidprobe.features.rows import stored_rows
from vidprobe.features.store import FeatureSet

ROWS = 4096


def run(cfg: Config) -> Path:
    name = cfg.export.feature_set or layout.video_set_name(cfg)
    fs = open_set(cfg, name, "export.feature_set")
    numeric = [k for k, _ in sorted(fs.keys.items()) if k != "source_id"]
    keys = cfg.export.keys or numeric
    unknown = [k for k in keys if k not in numeric]
    if unknown:
        raise ConfigError(f"export.keys: {unknown} are not numeric keys of {fs.dir}; it has {numeric}")
    rows = rows_of(cfg, fs)
    out = layout.export_dir(cfg, name)
    with writing(cfg, out, f"export of {fs.dir}"):
        target = write_export(cfg, fs, keys, rows, out, name)
    print(f"export: {len(rows)} rows x {len(keys)} keys of {fs.dir} as {cfg.export.format} -> {target}")
    return target


def write_export(cfg: Config, fs: FeatureSet, keys: list[str], rows: pd.DataFrame, out: Path, name: str) -> Path:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if cfg.export.format == "parquet":
        return to_parquet(fs, keys, rows, out / f"{name}.parquet")
    if cfg.export.format == "hf":
        return to_hf(fs, keys, rows, out)
    for key in keys:
        for ids, values in fs.chunks(key, rows.index, ROWS):
            for sid, value in zip(ids, values):
                path = out / f"{sid}_{key.replace('/', '_')}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, value)
    return out


def rows_of(cfg: Config, fs: FeatureSet) -> pd.DataFrame:
    """The set's rows (of export.split) indexed by row id, with their sample's manifest columns."""
    stored = stored_rows(fs)
    manifest = read_manifest(cfg).set_index("sample_id")
    rows = manifest.reindex(stored.sources)
    rows.insert(0, "sample_id", stored.sources)
    rows.index = pd.Index(stored.ids, name="row")
    if cfg.export.split:
        rows = rows[rows.split == cfg.export.split]
        if rows.empty:
            raise ConfigError(f"export.split: no rows of split {cfg.export.split!r} in {fs.dir}")
    return rows


def batches(fs: FeatureSet, keys: list[str], rows: pd.DataFrame) -> Iterator[tuple[pd.DataFrame, dict]]:
    """(manifest rows, {key: values}) ROWS at a time."""
    for a in range(0, len(rows), ROWS):
        part = rows.iloc[a : a + ROWS]
        yield part, {key: fs.get(key, part.index) for key in keys}


def to_parquet(fs: FeatureSet, keys: list[str], rows: pd.DataFrame, path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = pa.Schema.from_pandas(rows.reset_index(), preserve_index=False)  # column types from every row
    shapes = {k: {"shape": list(fs.keys[k])} for k in keys}
    writer = None
    for part, values in batches(fs, keys, rows):
        table = pa.Table.from_pandas(part.reset_index(), schema=base, preserve_index=False)
        for key, v in values.items():
            shapes[key]["dtype"] = str(v.dtype)
            table = table.append_column(key, pa.array(list(v.reshape(len(v), -1))) if v.ndim > 1 else pa.array(v))
        if writer is None:
            meta = {**(table.schema.metadata or {}), b"vidprobe.shapes": json.dumps(shapes).encode()}
            writer = pq.ParquetWriter(path, table.schema.with_metadata(meta))
        writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
    writer.close()
    return path


def to_hf(fs: FeatureSet, keys: list[str], rows: pd.DataFrame, out: Path) -> Path:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            "export.format=hf needs the `datasets` package: pip install 'vidprobe[hf]' (or pip install datasets)"
        ) from None

    def generate():
        for part, values in batches(fs, keys, rows):
            for i, record in enumerate(part.reset_index().to_dict("records")):
                yield {**record, **{k: v[i] for k, v in values.items()}}

    import pyarrow as pa

    features = datasets.Features.from_arrow_schema(pa.Schema.from_pandas(rows.reset_index(), preserve_index=False))
    for key, v in next(batches(fs, keys, rows.iloc[:1]))[1].items():
        features[key] = hf_array(datasets, v.shape[1:], str(v.dtype))
    with tempfile.TemporaryDirectory() as cache:  # the generator's cache, not the user's ~/.cache
        ds = datasets.Dataset.from_generator(generate, features=features, cache_dir=cache)
        ds.save_to_disk(str(out))
    return out


def hf_array(datasets, shape: tuple, dtype: str):
    """The datasets feature type of an array of `shape` per row."""
    if not shape:
        return datasets.Value(dtype)
    if len(shape) == 1:
        return datasets.Sequence(datasets.Value(dtype), length=shape[0])
    kinds = {2: datasets.Array2D, 3: datasets.Array3D, 4: datasets.Array4D, 5: datasets.Array5D}
    return kinds[len(shape)](shape=tuple(shape), dtype=dtype)
