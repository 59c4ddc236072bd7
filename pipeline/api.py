"""vidprobe from Python: the stages as functions, cached features as arrays and tables, trained runs.

Each stage function runs the stage the `vidprobe` command runs (cached and resumable alike) and returns its
result. It takes a config (a `Config`, a built-in config's name such as `"folder"`, a YAML path, or None for
the defaults), `"key=value"` strings as on the command line, and keyword arguments per config section
(`head={"lr": 3e-4}`); `root=` and `cache=` stand for `dataset.root` and `paths.cache`:

```python
import vidprobe

cfg = vidprobe.load_config("folder", root="videos", cache="out")
manifest = vidprobe.index(cfg)                     # DataFrame, one row per video (failures kept)
fs = vidprobe.embed(cfg)                           # FeatureSet
run = vidprobe.train(cfg, head={"name": "mlp"})    # Run: .metrics, .predict(table)
test = vidprobe.evaluate(cfg, head={"name": "mlp"})  # the run's metrics on the test split
pred = vidprobe.predict(cfg, ["new/clip.mp4"])     # DataFrame, one row per new video
x = vidprobe.load_features(cfg, "video/pooled", split="test")  # (N, D) numpy, rows in manifest order
```
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

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
from vidprobe.stages import demo_data as demo_stage
from vidprobe.stages import embed as embed_stage
from vidprobe.stages import evaluate as evaluate_stage
from vidprobe.stages import export as export_stage
from vidprobe.stages import index as index_stage
from vidprobe.stages import predict as predict_stage
from vidprobe.stages import sweep as sweep_stage
from vidprobe.stages import train as train_stage
from vidprobe.yamlconfig import build, builtin_configs, deep_merge, describe_file, parse_overrides

__all__ = ["Config", "ConfigError", "FeatureSet", "Run", "chunks", "demo_data", "embed", "evaluate", "export",
           "feature_set", "index", "list_configs", "load_config", "load_features", "load_run", "predict",
           "read_parquet", "samples", "sweep", "table", "train"]

ConfigLike = Config | str | Path | None


def load_config(config: ConfigLike = None, *overrides: str, root: str | Path | None = None,
                cache: str | Path | None = None, **sections: dict[str, Any]) -> Config:
    """A config as the CLI builds it: `config` (a Config, a built-in config's name, a YAML path, or None for the
    defaults), then `"key=value"` overrides, then sections as keyword arguments (`head={"lr": 3e-4}`), then
    `root` (dataset.root) and `cache` (paths.cache). Validated: an unknown key or a wrong type is a ConfigError."""
    for name, value in sections.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{name}={value!r}: a config section is a mapping of its keys, e.g. "
                              f"{name}={{'key': value}}; a single key can also go as a string '{name}.key=value'")
    values = deep_merge(parse_overrides(list(overrides)), sections)
    if root is not None:
        values = deep_merge(values, {"dataset": {"root": str(root)}})
    if cache is not None:
        values = deep_merge(values, {"paths": {"cache": str(cache)}})
    if isinstance(config, Config):
        return configs.checked(build(Config, deep_merge(config.to_dict(), values), {}, "invalid config"))
    return configs.load_config(config, values=values)


def list_configs() -> dict[str, str]:
    """The built-in configs (`-c NAME`, `include: NAME`), each with the first line of its comment."""
    return {name: describe_file(path) for name, path in sorted(builtin_configs().items()) if "/" in name}


def demo_data(out_dir: str | Path = "data/demo", config: ConfigLike = None, *overrides: str,
              **sections: dict[str, Any]) -> Path:
    """`vidprobe demo-data`: write the built-in demo dataset (four motion classes, two traits) into `out_dir`."""
    return demo_stage.run(load_config(config, *overrides, **sections), out_dir)


def index(config: ConfigLike = None, *overrides: str, root: str | Path | None = None,
          cache: str | Path | None = None, **sections: dict[str, Any]) -> pd.DataFrame:
    """`vidprobe index`: list and probe every sample; the manifest (unreadable videos keep their row, with
    `status` and `error`)."""
    return index_stage.run(load_config(config, *overrides, root=root, cache=cache, **sections))


def embed(config: ConfigLike = None, *overrides: str, root: str | Path | None = None,
          cache: str | Path | None = None, **sections: dict[str, Any]) -> FeatureSet:
    """`vidprobe embed`: decode each indexed sample once, embed it with the frozen backbone; the feature set.
    Samples already stored are skipped, so a second call after adding videos embeds only the new ones."""
    result = embed_stage.run(load_config(config, *overrides, root=root, cache=cache, **sections))
    return FeatureSet(result["dir"])


def train(config: ConfigLike = None, *overrides: str, root: str | Path | None = None,
          cache: str | Path | None = None, **sections: dict[str, Any]) -> Run:
    """`vidprobe train`: heads on the cached features; the trained run (`.metrics`: its validation metrics)."""
    cfg = load_config(config, *overrides, root=root, cache=cache, **sections)
    train_stage.run(cfg)
    return load_run(cfg, cfg.run.name)


def sweep(config: ConfigLike = None, *overrides: str, root: str | Path | None = None,
          cache: str | Path | None = None, **sections: dict[str, Any]) -> pd.DataFrame:
    """`vidprobe sweep`: a head per point of `sweep.grid` and seed, in parallel; the leaderboard (mean and std
    over seeds, best first by `sweep.metric`)."""
    return sweep_stage.run(load_config(config, *overrides, root=root, cache=cache, **sections))


def evaluate(config: ConfigLike = None, *overrides: str, root: str | Path | None = None,
             cache: str | Path | None = None, **sections: dict[str, Any]) -> dict[str, float]:
    """`vidprobe evaluate`: the run `run.name`'s metrics on `evaluate.split` (default test)."""
    return evaluate_stage.run(load_config(config, *overrides, root=root, cache=cache, **sections))


def predict(config: ConfigLike, videos: list[str | Path] | str | Path, *overrides: str,
            cache: str | Path | None = None, **sections: dict[str, Any]) -> pd.DataFrame:
    """`vidprobe predict`: the run `run.name` on new videos (a list of paths, a folder, a glob, or a table of
    paths), embedded as its training videos were; one row per video (per window in windows mode)."""
    if isinstance(videos, (list, tuple)):
        listing = Path(tempfile.mkdtemp(prefix="vidprobe-predict-")) / "videos.txt"
        listing.write_text("".join(f"{Path(v).resolve()}\n" for v in videos))
        videos = listing
    cfg = load_config(config, *overrides, cache=cache, **sections)
    return predict_stage.run(with_overrides(cfg, {"predict.input": str(videos)}))


def export(config: ConfigLike = None, *overrides: str, cache: str | Path | None = None,
           **sections: dict[str, Any]) -> Path:
    """`vidprobe export`: a feature set as .npy files, one Parquet table or a Hugging Face dataset
    (`export={"format": "parquet"}`); the path written."""
    return export_stage.run(load_config(config, *overrides, cache=cache, **sections))


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


def load_features(cfg: Config, key: str = "video/pooled", split: str | None = None, ids: list[str] | None = None,
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

    def predict_videos(self, videos: list[str | Path] | str | Path, *overrides: str) -> pd.DataFrame:
        """`vidprobe predict` on videos: a list of paths, a folder, a glob, or a table of paths; `overrides`
        as on the command line (`embed.num_workers=4`)."""
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
        values[key] = (np.stack(column) if spec["shape"] else column).astype(spec["dtype"]).reshape(len(frame),
                                                                                                     *spec["shape"])
    return frame, values
