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

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from vidprobe import config as configs
from vidprobe.access import Run, chunks, feature_set, load_features, load_run, read_parquet, samples, table
from vidprobe.checks import checked
from vidprobe.config import Config, ConfigError, with_overrides
from vidprobe.features.store import FeatureSet
from vidprobe.stages import demo_data as demo_stage
from vidprobe.stages import embed as embed_stage
from vidprobe.stages import evaluate as evaluate_stage
from vidprobe.stages import export as export_stage
from vidprobe.stages import index as index_stage
from vidprobe.stages import predict as predict_stage
from vidprobe.stages import sweep as sweep_stage
from vidprobe.stages import train as train_stage
from vidprobe.yamlconfig import build, builtin_configs, deep_merge, describe_file, parse_overrides

__all__ = [
    "Config",
    "ConfigError",
    "FeatureSet",
    "Run",
    "chunks",
    "demo_data",
    "embed",
    "evaluate",
    "export",
    "feature_set",
    "index",
    "list_configs",
    "load_config",
    "load_features",
    "load_run",
    "predict",
    "read_parquet",
    "samples",
    "sweep",
    "table",
    "train",
]

ConfigLike = Config | str | Path | None


def load_config(
    config: ConfigLike = None,
    *overrides: str,
    root: str | Path | None = None,
    cache: str | Path | None = None,
    **sections: dict[str, Any],
) -> Config:
    """A config as the CLI builds it: `config` (a Config, a built-in config's name, a YAML path, or None for the
    defaults), then `"key=value"` overrides, then sections as keyword arguments (`head={"lr": 3e-4}`), then
    `root` (dataset.root) and `cache` (paths.cache). Validated: an unknown key or a wrong type is a ConfigError."""
    for name, value in sections.items():
        if not isinstance(value, dict):
            raise ConfigError(
                f"{name}={value!r}: a config section is a mapping of its keys, e.g. "
                f"{name}={{'key': value}}; a single key can also go as a string '{name}.key=value'"
            )
    values = deep_merge(parse_overrides(list(overrides)), sections)
    if root is not None:
        values = deep_merge(values, {"dataset": {"root": str(root)}})
    if cache is not None:
        values = deep_merge(values, {"paths": {"cache": str(cache)}})
    if isinstance(config, Config):
        return checked(build(Config, deep_merge(config.to_dict(), values), {}, "invalid config"))
    return configs.load_config(config, values=values)


def list_configs() -> dict[str, str]:
    """The built-in configs (`-c NAME`, `include: NAME`), each with the first line of its comment."""
    return {name: describe_file(path) for name, path in sorted(builtin_configs().items()) if "/" in name}


def demo_data(
    out_dir: str | Path = "data/demo", config: ConfigLike = None, *overrides: str, **sections: dict[str, Any]
) -> Path:
    """`vidprobe demo-data`: write the built-in demo dataset (four motion classes, two traits) into `out_dir`."""
    return demo_stage.run(load_config(config, *overrides, **sections), out_dir)


def index(
    config: ConfigLike = None,
    *overrides: str,
    root: str | Path | None = None,
    cache: str | Path | None = None,
    **sections: dict[str, Any],
) -> pd.DataFrame:
    """`vidprobe index`: list and probe every sample; the manifest (unreadable videos keep their row, with
    `status` and `error`)."""
    return index_stage.run(load_config(config, *overrides, root=root, cache=cache, **sections))


def embed(
    config: ConfigLike = None,
    *overrides: str,
    root: str | Path | None = None,
    cache: str | Path | None = None,
    **sections: dict[str, Any],
) -> FeatureSet:
    """`vidprobe embed`: decode each indexed sample once, embed it with the frozen backbone; the feature set.
    Samples already stored are skipped, so a second call after adding videos embeds only the new ones."""
    result = embed_stage.run(load_config(config, *overrides, root=root, cache=cache, **sections))
    return FeatureSet(result["dir"])


def train(
    config: ConfigLike = None,
    *overrides: str,
    root: str | Path | None = None,
    cache: str | Path | None = None,
    **sections: dict[str, Any],
) -> Run:
    """`vidprobe train`: heads on the cached features; the trained run (`.metrics`: its validation metrics)."""
    cfg = load_config(config, *overrides, root=root, cache=cache, **sections)
    train_stage.run(cfg)
    return load_run(cfg, cfg.run.name)


def sweep(
    config: ConfigLike = None,
    *overrides: str,
    root: str | Path | None = None,
    cache: str | Path | None = None,
    **sections: dict[str, Any],
) -> pd.DataFrame:
    """`vidprobe sweep`: a head per point of `sweep.grid` and seed, in parallel; the leaderboard (mean and std
    over seeds, best first by `sweep.metric`)."""
    return sweep_stage.run(load_config(config, *overrides, root=root, cache=cache, **sections))


def evaluate(
    config: ConfigLike = None,
    *overrides: str,
    root: str | Path | None = None,
    cache: str | Path | None = None,
    **sections: dict[str, Any],
) -> dict[str, float]:
    """`vidprobe evaluate`: the run `run.name`'s metrics on `evaluate.split` (default test)."""
    return evaluate_stage.run(load_config(config, *overrides, root=root, cache=cache, **sections))


def predict(
    config: ConfigLike,
    videos: list[str | Path] | str | Path,
    *overrides: str,
    cache: str | Path | None = None,
    **sections: dict[str, Any],
) -> pd.DataFrame:
    """`vidprobe predict`: the run `run.name` on new videos (a list of paths, a folder, a glob, or a table of
    paths), embedded as its training videos were; one row per video (per window in windows mode)."""
    if isinstance(videos, (list, tuple)):
        listing = Path(tempfile.mkdtemp(prefix="vidprobe-predict-")) / "videos.txt"
        listing.write_text("".join(f"{Path(v).resolve()}\n" for v in videos))
        videos = listing
    cfg = load_config(config, *overrides, cache=cache, **sections)
    return predict_stage.run(with_overrides(cfg, {"predict.input": str(videos)}))


def export(
    config: ConfigLike = None, *overrides: str, cache: str | Path | None = None, **sections: dict[str, Any]
) -> Path:
    """`vidprobe export`: a feature set as .npy files, one Parquet table or a Hugging Face dataset
    (`export={"format": "parquet"}`); the path written."""
    return export_stage.run(load_config(config, *overrides, cache=cache, **sections))
