"""Cached features as arrays and tables, and trained runs, from Python (`vidprobe.load_features`, `table`,
`chunks`, `samples`, `feature_set`, `load_run`, `read_parquet`; `vidprobe.api` hands them on)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from vidprobe import config as configs
from vidprobe import layout
from vidprobe.artifacts import open_set, read_manifest
from vidprobe.config import Config, ConfigError, with_overrides
from vidprobe.features.store import FeatureSet
from vidprobe.heads.bundle import HeadBundle
from vidprobe.heads.data import LabeledFeatures
from vidprobe.heads.runs import load_run as load_bundle


def feature_set(cfg: Config, name: str | None = None) -> FeatureSet:
    """A feature set of the config's dataset (default: its video features)."""
    return open_set(cfg, name or layout.video_set_name(cfg), "feature set")


def samples(
    cfg: Config, split: str | None = None, ids: list[str] | None = None, name: str | None = None
) -> pd.DataFrame:
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


def load_features(
    cfg: Config,
    key: str = "video/pooled",
    split: str | None = None,
    ids: list[str] | None = None,
    name: str | None = None,
) -> np.ndarray:
    """The values of `key` for the manifest's samples (of `split`, or `ids`), in manifest order."""
    return feature_set(cfg, name).get(key, samples(cfg, split, ids, name).index)


def table(
    cfg: Config,
    key: str = "video/pooled",
    split: str | None = None,
    ids: list[str] | None = None,
    name: str | None = None,
) -> pd.DataFrame:
    """The manifest's columns with a column `key` holding each sample's array."""
    out = samples(cfg, split, ids, name).reset_index()
    out[key] = list(feature_set(cfg, name).get(key, out.sample_id))
    return out


def chunks(
    cfg: Config, key: str = "video/pooled", rows: int = 4096, split: str | None = None, name: str | None = None
) -> Iterator[pd.DataFrame]:
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
    """A trained run: the config it was trained with, its heads and its folder."""

    config: Config
    bundle: HeadBundle
    dir: Path

    @property
    def metrics(self) -> dict[str, float]:
        """Its validation metrics (metrics.json)."""
        return json.loads((self.dir / "metrics.json").read_text())

    def predict(self, data: pd.DataFrame | np.ndarray, top_k: int = 0) -> pd.DataFrame:
        """Predictions for features: a `table` (its `head.features` column), or an (N, ...) array."""
        key = self.config.head.features.rpartition(":")[2]
        if self.config.head.fuse:
            raise ConfigError(
                f"{self.dir} fuses several feature sets; predict it on videos (predict_videos) or "
                "through `vidprobe predict`"
            )
        if isinstance(data, pd.DataFrame):
            ids, x = list(data.get("sample_id", data.index)), np.stack(list(data[key]))
        else:
            ids, x = [str(i) for i in range(len(data))], np.asarray(data)
        x = torch.from_numpy(x).float()
        if x.ndim > 2 and key.endswith("pooled"):
            x = x.flatten(1, -2).mean(1)  # views and crops: averaged, as training does
        pred, _, _ = self.bundle.predict(
            LabeledFeatures(ids, x, None, None, None),
            self.config.head,
            (self.config.text.model, self.config.backbone),
            top_k,
        )
        return pred

    def predict_videos(self, videos: list[str | Path] | str | Path, *overrides: str) -> pd.DataFrame:
        """`vidprobe predict` on videos: a list of paths, a folder, a glob, or a table of paths; `overrides`
        as on the command line (`embed.num_workers=4`)."""
        from vidprobe.api import predict

        return predict(self.config, videos, *overrides)


def load_run(cfg: Config, name: str) -> Run:
    """The run `name` under the config's cache (`paths.cache`)."""
    run_dir = layout.run_dir(with_overrides(cfg, {"run.name": name}))
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"no trained run at {run_dir}: run `vidprobe train run.name={name}` first")
    trained = with_overrides(configs.load_config(run_dir / "config.yaml"), {"paths.cache": cfg.paths.cache})
    return Run(trained, load_bundle(run_dir), run_dir)


def read_parquet(path: str | Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """A `vidprobe export export.format=parquet` table back: (its other columns, {key: (N, ...) array})."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    shapes = json.loads(table.schema.metadata[b"vidprobe.shapes"])
    frame = table.drop_columns(list(shapes)).to_pandas()
    values = {}
    for key, spec in shapes.items():
        column = table.column(key).to_numpy(zero_copy_only=False)
        values[key] = (
            (np.stack(column) if spec["shape"] else column).astype(spec["dtype"]).reshape(len(frame), *spec["shape"])
        )
    return frame, values
