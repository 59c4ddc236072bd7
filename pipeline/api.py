"""vidprobe from Python: cached features as arrays and tables, trained runs as functions.

```python
from pipeline import api

cfg = api.config("params.yaml")                        # the config the cache was made with
x = api.features(cfg, "video/pooled", split="test")     # (N, D) numpy, rows in manifest order
table = api.table(cfg, "video/pooled", split="test")   # the manifest's columns and the features, per sample
run = api.load_run(cfg, "demo-linear")                  # a trained run: its config and heads
run.predict(table)                                      # probabilities, traits: a DataFrame per sample
run.predict_videos(["new/clip.mp4"])                    # embeds new videos as `vidprobe predict` does
for part in api.chunks(cfg, "video/pooled", rows=1024):  # bigger than memory: a table at a time
    ...
```
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from features.identity import flatten
from features.store import FeatureSet
from heads.bundle import HeadBundle
from heads.data import LabeledFeatures
from heads.runs import load_run as load_bundle
from pipeline import layout, predict
from pipeline.artifacts import open_set, read_manifest
from pipeline.config import Config, ConfigError, load_config, parse_overrides, with_overrides


def config(path: str | Path | None = None, *overrides: str) -> Config:
    """A config as the CLI builds it: a YAML file (or defaults) and `key=value` overrides."""
    return load_config(path, list(overrides))


def feature_set(cfg: Config, name: str | None = None) -> FeatureSet:
    """A feature set of the config's dataset (default: its video features)."""
    return open_set(cfg, name or layout.video_set_name(cfg), "feature set")


def samples(cfg: Config, split: str | None = None, ids: list[str] | None = None,
            name: str | None = None) -> pd.DataFrame:
    """The manifest rows that have features in the set, of `split` or `ids` (in that order), indexed by id."""
    fs = feature_set(cfg, name)
    manifest = read_manifest(cfg).set_index("sample_id")
    if ids is not None:
        unknown = [i for i in ids if i not in fs.rows]
        if unknown:
            raise ConfigError(f"{len(unknown)} ids have no features in {fs.dir}, e.g. {unknown[:3]}")
        return manifest.reindex(ids)
    have = manifest[manifest.index.isin(set(fs.ids))]
    return have if split is None else have[have.split == split]


def features(cfg: Config, key: str = "video/pooled", split: str | None = None, ids: list[str] | None = None,
             name: str | None = None) -> np.ndarray:
    """The values of `key` for the manifest's samples (of `split`, or `ids`), in manifest order."""
    return feature_set(cfg, name).get(key, samples(cfg, split, ids, name).index)


def table(cfg: Config, key: str = "video/pooled", split: str | None = None, ids: list[str] | None = None,
          name: str | None = None) -> pd.DataFrame:
    """The manifest's columns with a column `key` holding each sample's array."""
    out = samples(cfg, split, ids, name).reset_index()
    out[key] = list(feature_set(cfg, name).get(key, out.sample_id))
    return out


def chunks(cfg: Config, key: str = "video/pooled", rows: int = 4096, split: str | None = None,
           name: str | None = None) -> Iterator[pd.DataFrame]:
    """`table` `rows` samples at a time: only one chunk is in memory."""
    ids = list(samples(cfg, split, None, name).index)
    fs = feature_set(cfg, name)
    manifest = read_manifest(cfg).set_index("sample_id")
    for part, values in fs.chunks(key, ids, rows):
        out = manifest.loc[part].reset_index()
        out[key] = list(values)
        yield out


@dataclass
class Run:
    """A trained run: the config it was trained with and its heads."""

    config: Config
    bundle: HeadBundle
    dir: Path

    def predict(self, data: pd.DataFrame | np.ndarray, top_k: int = 0) -> pd.DataFrame:
        """Predictions for features: a `table` (its `head.features` column), or an (N, ...) array."""
        key = self.config.head.features.rpartition(":")[2]
        if self.config.head.fuse:
            raise ConfigError(f"{self.dir} fuses several feature sets; predict it on videos (predict_videos) or "
                              "through `vidprobe predict`")
        if isinstance(data, pd.DataFrame):
            ids, x = list(data.get("sample_id", data.index)), np.stack(list(data[key]))
        else:
            ids, x = [str(i) for i in range(len(data))], np.asarray(data)
        x = torch.from_numpy(x).float()
        if x.ndim > 2 and key.endswith("pooled"):
            x = x.flatten(1, -2).mean(1)  # views and crops: averaged, as training does
        pred, _, _ = self.bundle.predict(LabeledFeatures(ids, x, None, None, None), self.config.head,
                                         (self.config.text.model, self.config.backbone), top_k)
        return pred

    def predict_videos(self, videos: list[str] | str, *overrides: str) -> pd.DataFrame:
        """`vidprobe predict` on videos: a list of paths, a folder, a glob, or a table of paths; `overrides`
        as on the command line (`embed.num_workers=4`)."""
        if isinstance(videos, (list, tuple)):
            listing = Path(tempfile.mkdtemp()) / "videos.txt"
            listing.write_text("".join(f"{Path(v).resolve()}\n" for v in videos))
            videos = str(listing)
        cfg = with_overrides(self.config, {"predict.input": str(videos), **flatten(parse_overrides(list(overrides)))})
        return predict.run(cfg)


def load_run(cfg: Config, name: str) -> Run:
    """The run `name` under the config's cache (`paths.cache`)."""
    run_dir = layout.run_dir(with_overrides(cfg, {"run.name": name}))
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"no trained run at {run_dir}: run `vidprobe train run.name={name}` first")
    trained = with_overrides(load_config(run_dir / "config.yaml"), {"paths.cache": cfg.paths.cache})
    return Run(trained, load_bundle(run_dir), run_dir)


def read_parquet(path: str | Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """A `vidprobe export export.format=parquet` table back: (its other columns, {key: (N, ...) array})."""
    import json

    import pyarrow.parquet as pq

    table = pq.read_table(path)
    shapes = json.loads(table.schema.metadata[b"vidprobe.shapes"])
    frame = table.drop_columns(list(shapes)).to_pandas()
    values = {}
    for key, spec in shapes.items():
        column = table.column(key).to_numpy(zero_copy_only=False)
        values[key] = (np.stack(column) if spec["shape"] else column).astype(spec["dtype"]).reshape(len(frame),
                                                                                                     *spec["shape"])
    return frame, values
