"""vidprobe: decode each video once, embed it with frozen foundation models, cache the embeddings in HDF5
shards, then train light heads on the cached features in seconds.

Where to start, from Python (the same stages the `vidprobe` command runs):

    import vidprobe

    cfg = vidprobe.load_config("folder", root="videos", cache="out")  # a built-in config, a YAML path, or None
    manifest = vidprobe.index(cfg)        # DataFrame: one row per video; unreadable ones kept with status, error
    fs = vidprobe.embed(cfg)              # FeatureSet: fs.get("video/pooled", ids) -> (N, D) numpy
    run = vidprobe.train(cfg)             # Run: run.metrics (validation), run.predict(table)
    test = vidprobe.evaluate(cfg)         # dict: the run's metrics on the test split
    board = vidprobe.sweep(cfg, sweep={"grid": {"head.lr": [0.1, 0.01]}})  # DataFrame: the leaderboard
    pred = vidprobe.predict(cfg, ["new.mp4"])  # DataFrame: one row per new video

Every stage function takes a config (a `Config`, a built-in config's name, a YAML path, or None for the
defaults), `"key=value"` strings as on the command line, and keyword arguments per config section
(`head={"lr": 3e-4}`); `root=` and `cache=` stand for `dataset.root` and `paths.cache`.

Cached features: `load_features`, `table`, `chunks`, `samples`, `feature_set`; trained runs: `load_run`;
exported tables: `read_parquet`. The libraries: `vidprobe.features` (decoding, frame sampling, backbones, the
feature store) and `vidprobe.heads` (head models, losses, metrics, the trainer). The built-in configs:
`vidprobe.list_configs()` (or `vidprobe configs` in a shell). Every command: `vidprobe --help`.
"""

from __future__ import annotations

import importlib
import importlib.metadata

try:
    __version__ = importlib.metadata.version("vidprobe")
except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"

# The public names, loaded on first use from vidprobe.api: `import vidprobe` stays instant (no torch), and
# importing the libraries (vidprobe.features, vidprobe.heads) loads nothing of the pipeline.
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


def __getattr__(name: str):
    if name in __all__:
        value = getattr(importlib.import_module("vidprobe.api"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vidprobe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
