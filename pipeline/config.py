"""The config: every section, composed. `vidprobe <stage> -c FILE key=value ...` loads it.

The sections of the libraries live beside them and are documented there: `sampling` and `backbone`
in features/config.py; `task`, `head` and `finetune` in heads/config.py. The sections below are the
stages' own. Loading (YAML includes, overrides, validation) is pipeline/yamlconfig.py.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidprobe.adapters import adapter_settings  # config schema
from vidprobe.errors import ConfigError, RunFailed
from vidprobe.features.config import BackboneConfig, SamplingConfig, choice, compose
from vidprobe.features.files import write_yaml
from vidprobe.heads.config import FinetuneConfig, HeadConfig, TaskConfig
from vidprobe.yamlconfig import (
    COMMAND_LINE,
    build,
    deep_merge,
    dotted_keys,
    nest,
    parse_overrides,
    read_yaml,
)

__all__ = [
    "Config",
    "ConfigError",
    "RunFailed",
    "deep_merge",
    "dump_config",
    "load_config",
    "parse_overrides",
    "with_overrides",
]


@dataclass
class DatasetCore:
    """The `dataset` section: what every layout reads. Each adapter's own settings (`dataset.table`,
    `dataset.classes`, `dataset.annotations`, ...) are declared beside it (pipeline/adapters/) and join this section
    in `DatasetConfig`, still as `dataset.<key>`."""

    name: str = "dataset"  # names the cache folder: <paths.cache>/<name>/
    adapter: str = "folder"  # the layout: folder, traits, multilabel, utterances, ucf101, hmdb51, kinetics400, meld
    root: str | None = None  # where the videos are
    splits: list[str] = field(default_factory=lambda: ["train", "val", "test"])  # the split names, in order
    extensions: list[str] = field(default_factory=lambda: [".mp4", ".avi", ".mkv", ".mov", ".webm"])  # videos
    metadata: str | None = None  # optional CSV/JSONL (relative to root) with a `path` column and traits
    traits: list[str] = field(default_factory=list)  # numeric metadata columns copied into the manifest
    columns: list[str] = field(default_factory=list)  # more metadata columns copied as they are (e.g. another label)
    val_fraction: float = 0.0  # hold out this share of train as val when the release has no val split
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # no split given: train/val/test


DatasetConfig = compose("DatasetConfig", DatasetCore, adapter_settings(), __name__)


@dataclass
class PathsConfig:
    cache: str = "cache"  # every stage output goes under this folder
    lock_timeout: float = 600.0  # seconds without a heartbeat before another host's write lock counts as abandoned


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@dataclass
class IndexConfig:
    num_workers: int = field(default_factory=default_workers)  # threads probing videos
    max_failures: int | None = None  # unreadable videos tolerated before exit 1 (None: any number)
    describe: bool = False  # print (and save as describe.json) counts per split, class and trait


@dataclass
class EmbedConfig:
    feature_set: str | None = None  # None: the backbone's name
    batch_size: int = 8  # clips per forward pass (each view and crop of a sample counts as a clip)
    num_workers: int = field(default_factory=default_workers)  # DataLoader workers decoding videos
    prefetch: int = 2  # batches each worker decodes ahead (memory: workers x prefetch x batch)
    in_workers: bool | None = None  # workers embed what they decode; None: on a CPU device (not with backbone.compile)
    storage_dtype: str = choice("float32", "float16")  # float32 | float16
    compression: str | None = choice(None, "gzip", "lzf")  # None | gzip | lzf
    commit_every: int = 256  # rows per committed part: what a crash can lose
    max_failures: int | None = None  # undecodable videos tolerated before exit 1 (None: any number)
    num_shards: int | None = None  # None: from torchrun (WORLD_SIZE) or a SLURM array, else 1
    shard_index: int | None = None  # None: from RANK or SLURM_ARRAY_TASK_ID, else 0
    force: bool = False  # rebuild a feature set made with another config


@dataclass
class AudioConfig:
    num_workers: int = 2  # ffmpeg processes at once
    max_failures: int | None = None  # unreadable audio tolerated before exit 1 (None: any number)


@dataclass
class TranscribeConfig:
    backend: str = choice("faster-whisper", "openai-whisper")  # the same deterministic decoding on both
    model: str | None = None  # CTranslate2 folder, openai-whisper .pt, or a cached model name; None: bundled tiny.en
    language: str | None = None  # None: detected (English-only models: en)
    word_timestamps: bool = False  # a start and end time for every word (segments[].words)
    beam_size: int = 1  # 1: greedy
    compute_type: str = "float32"  # faster-whisper's CTranslate2 compute type (int8: faster, slightly different)
    batch_size: int = 16  # faster-whisper: clips under 30 s decoded together (same words); 1: one at a time
    pack: bool = False  # faster-whisper: clips of at most 10 s share 30 s windows (faster; words may differ)
    pack_gap: float = 1.0  # seconds of silence between packed clips
    pack_across: bool = False  # packing: clips of different source videos (or groups) and splits may share a window
    subtitles: list[str] = field(default_factory=list)  # srt | vtt files per sample, beside the JSONL
    embed: bool = True  # Whisper encoder features (audio/pooled, audio/temporal) into the feature store
    feature_set: str | None = None  # None: whisper-<model name>; also names the transcripts file

    def problems(self) -> list[str]:
        subtitles = sorted(set(self.subtitles) - {"srt", "vtt"})
        checks = [
            (not subtitles, f"subtitles: {subtitles} unknown; choose from srt, vtt"),
            (self.beam_size >= 1, f"beam_size: must be >= 1 (1: greedy), got {self.beam_size}"),
            (self.batch_size >= 1, f"batch_size: must be >= 1 (1: one clip at a time), got {self.batch_size}"),
            (self.pack_gap >= 0, f"pack_gap: must be >= 0 seconds, got {self.pack_gap}"),
        ]
        return [f"transcribe.{text}" for ok, text in checks if not ok]


@dataclass
class AudioEmbedConfig:
    encoder: str = choice("wav2vec2", "hubert", "wavlm", "ast", "clap")  # features/audio_encoders.py
    model: str | None = None  # hub id or local folder (required), e.g. facebook/wav2vec2-base
    feature_set: str | None = None  # None: <encoder>-<last part of model>
    chunk_seconds: float = 30.0  # wav2vec2/HuBERT/WavLM: audio encoded per forward pass (memory bound)


@dataclass
class CaptionConfig:
    model: str | None = None  # Florence-2 hub id or local folder (required), e.g. florence-community/Florence-2-base
    task: str = choice("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")  # the processor's task prompt
    frames: int = 1  # frames captioned per sample (per window in windows mode), spread uniformly; 1: the middle one
    max_new_tokens: int = 40  # the longest caption, in tokens
    min_new_tokens: int = 0  # the shortest caption, in tokens
    num_beams: int = 1  # 1: greedy
    batch_size: int = 8  # frames per generate call
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    feature_set: str | None = None  # None: florence2-<last part of model>; names the captions file
    max_failures: int | None = None  # undecodable videos tolerated before exit 1 (None: any number)


@dataclass
class TextConfig:
    source: str = choice("prompts", "transcripts", "captions")  # a row per class name | per video row
    encoder: str | None = None  # minilm | clap | a backbone family with a text tower (clip, xclip, siglip, ...)
    model: str | None = None  # hub id or path; None: the CLIP backbone's own (prompts), bundled MiniLM (transcripts)
    templates: list[str] = field(default_factory=lambda: ["a video of {label}."])  # averaged per class, as CLIP does
    feature_set: str | None = None  # None: <embed.feature_set>-prompts
    similarity_threshold: float = 0.9  # prompts: report class pairs whose prompt embeddings are this alike


@dataclass
class RunConfig:
    name: str = "linear"  # the run folder: <paths.cache>/runs/<name>/


@dataclass
class EvaluateConfig:
    split: str = "test"  # the split a run is evaluated on


@dataclass
class PredictConfig:
    input: str | None = None  # new videos: a folder, a glob, a .txt of paths, or a CSV/JSONL with a path column
    name: str | None = None  # their cache folder <paths.cache>/<name>/ (None: named from the input)
    top_k: int = 5  # the k most probable classes, in one column


@dataclass
class ExportConfig:
    format: str = choice("npy", "parquet", "hf")  # a file per row and key | one table | a datasets.Dataset
    feature_set: str | None = None  # None: this config's video features
    keys: list[str] = field(default_factory=list)  # feature keys to export (empty: every key stored per row)
    split: str | None = None  # only this split's rows (None: all)
    out: str | None = None  # None: <paths.cache>/<dataset>/exports/<feature set>-<format>


@dataclass
class SweepConfig:
    name: str = "sweep"  # runs go to <paths.cache>/runs/<name>/, the leaderboard beside them
    grid: dict[str, list] = field(default_factory=dict)  # dotted config key -> values, e.g. {head.lr: [0.1, 0.01]}
    samples: int = 0  # > 0: that many configs drawn at random from the grid, instead of all of it
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # head.seed values each config runs with
    metric: str = "acc"  # the leaderboard's order (mae*/loss*: lower is better)
    n_jobs: int = -1  # parallel runs (joblib); -1: one per core (dask, ray: a local cluster's processes)
    backend: str = choice("loky", "dask", "ray")  # where trials run: this machine's processes, or a cluster
    address: str | None = None  # dask / ray: the cluster's scheduler (tcp://host:8786, ray://host:10001); None: local
    baselines: bool = True  # scikit-learn logistic regression / ridge on the same features and splits
    batch: bool = True  # trials that can share one pass over the data (heads.tasks.batch_key) train as one batch
    lr_scaling: str = choice("none", "linear", "sqrt")  # head.lr x (head.batch_size / base_batch_size) [^0.5]
    base_batch_size: int = 256  # the batch size head.lr is given for, when lr_scaling is on


@dataclass
class DemoConfig:
    seed: int = 0  # what the clips show (colours, speeds, textures)
    train: int = 8  # clips per class
    val: int = 3  # clips per class
    test: int = 3  # clips per class
    seconds: float = 3.0  # clip length
    fps: int = 15  # frames per second
    width: int = 128  # frame width in px
    height: int = 96  # frame height in px
    audio: bool = True  # a spoken sentence per clip (needs espeak-ng)


@dataclass
class Config:
    """The whole config, one section per part: what `vidprobe <stage> -c CONFIG key=value ...` and
    `vidprobe.load_config` build, and what every run, shard and checkpoint records (resolved)."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    transcribe: TranscribeConfig = field(default_factory=TranscribeConfig)
    audio_embed: AudioEmbedConfig = field(default_factory=AudioEmbedConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    run: RunConfig = field(default_factory=RunConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple = (), values: dict | None = None
) -> Config:
    """Defaults <- a YAML file or built-in config (with includes) <- `key=value` overrides <- `values` (nested
    sections, from Python), validated: keys and types, then everything `problems` checks, every problem at once."""
    data, origins = read_yaml(path) if path else ({}, {})
    extra = parse_overrides(list(overrides))
    origins.update(dict.fromkeys(dotted_keys(extra), COMMAND_LINE))
    origins.update(dict.fromkeys(dotted_keys(values or {}), "Python"))
    where = f" in {path}" if path else ""
    cfg = build(Config, deep_merge(deep_merge(data, extra), values or {}), origins, f"invalid config{where}")
    from vidprobe.checks import checked  # it reads the registries: loaded when a config is

    return checked(cfg, origins, where)


def with_overrides(cfg: Config, values: dict[str, Any]) -> Config:
    """A copy of `cfg` with dotted keys set (`{"head.lr": 0.1}`), validated like a config file."""
    return build(Config, deep_merge(cfg.to_dict(), nest(values)), {}, "invalid overrides")


def dump_config(cfg: Config, path: str | Path) -> None:
    """The resolved config as YAML, in section order: what every run and checkpoint carries."""
    write_yaml(path, cfg.to_dict())
