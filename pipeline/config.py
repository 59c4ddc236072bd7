"""Configuration: YAML files plus `key=value` overrides, deep-merged, validated against dataclasses.

A config file may list other files under `include:` (paths relative to itself); they are merged
first, in order, and the file's own keys win. Unknown keys and wrong types are all reported at
once, each with the file it came from and the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """A usage or configuration problem: the CLI prints it and exits with status 2."""


class RunFailed(Exception):
    """The run went through but broke a limit (e.g. max_failures): the CLI exits with status 1."""


def choice(default: Any, *options: Any) -> Any:
    """A field that accepts only `options` (the first of which may be the default)."""
    return field(default=default, metadata={"choices": (default, *options)})


@dataclass
class DatasetConfig:
    name: str = "dataset"  # names the cache folder: <paths.cache>/<name>/
    adapter: str = "folder"
    root: str | None = None  # where the videos are
    splits: list[str] = field(default_factory=lambda: ["train", "val", "test"])
    extensions: list[str] = field(default_factory=lambda: [".mp4", ".avi", ".mkv", ".mov", ".webm"])
    metadata: str | None = None  # optional CSV/JSONL (relative to root) with a `path` column and traits
    traits: list[str] = field(default_factory=list)  # numeric metadata columns copied into the manifest
    columns: list[str] = field(default_factory=list)  # more metadata columns copied as they are (e.g. another label)
    annotations: str | None = None  # official split files / CSVs: relative to the root, or beside it
    split: int = 1  # which official split (UCF-101, HMDB-51)
    val_fraction: float = 0.0  # hold out this share of train as val when the release has no val split
    table: str | None = None  # traits / utterances adapters: the CSV or JSONL listing the samples
    path_template: str = "{path}"  # how a table row names its video, e.g. "videos/{id}.mp4"
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # tables with no split column
    missing_traits: str = choice("mask", "drop")  # rows lacking a trait: kept with NaN (skipped per head), or dropped
    video_dirs: list[str] = field(default_factory=list)  # MELD: the clip folder of each split, in dataset.splits order
    classes: str | None = None  # multilabel: the class list, one name per line
    label_column: str = "labels"  # multilabel: the column holding each video's classes
    label_separator: str = ","  # multilabel: how those classes are joined
    segment_cutoffs: list[int] = field(default_factory=lambda: [500, 100])  # head > 500 >= middle >= 100 > tail (train counts)


@dataclass
class PathsConfig:
    cache: str = "cache"  # every stage output goes under this folder


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@dataclass
class IndexConfig:
    num_workers: int = field(default_factory=default_workers)  # threads probing videos
    max_failures: int | None = None  # unreadable videos tolerated before exit 1 (None: any number)
    describe: bool = False  # print (and save as describe.json) counts per split, class and trait


@dataclass
class SamplingConfig:
    mode: str = choice("uniform", "fps", "windows")  # uniform: T frames over the segment | fps: T frames at `fps` | windows: sliding
    num_frames: int | None = None  # None: the backbone's own clip length
    size: int | None = None  # None: the backbone's own input size
    fps: float | None = None  # frame rate for mode fps (required) and windows (None: uniform in each window)
    views: int = 1  # K temporal views per sample, stored as an axis (N, K, ...)
    crops: int = choice(1, 3)  # 1: centre crop; 3: three crops along the longer side, stored as an axis
    window: float = 2.0  # seconds per window (mode windows)
    stride: float = 1.0  # seconds between window starts (mode windows)
    decoder: str = choice("auto", "decord", "ffmpeg")  # auto (decord; ffmpeg for rotated videos) | decord | ffmpeg


@dataclass
class BackboneConfig:
    name: str = "i3d-kinetics400"  # i3d-kinetics400 | videomae | clip | videomae-tiny-random | clip-tiny-random
    model: str | None = None  # hub id or local directory (videomae, clip); a weights file (i3d-kinetics400)
    seed: int = 0  # weight init of randomly initialised backbones
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = choice("float32", "bfloat16", "float16")  # float32 | bfloat16 | float16 (autocast on CUDA)
    compile: bool = False  # torch.compile the backbone (long first batch; pays off on large runs)


@dataclass
class EmbedConfig:
    feature_set: str | None = None  # None: the backbone's name
    batch_size: int = 8  # clips per process per micro-batch (a step: x accumulate x world size)  # clips per forward pass
    num_workers: int = field(default_factory=default_workers)  # DataLoader workers decoding videos
    prefetch: int = 2  # batches each worker decodes ahead (memory: workers x prefetch x batch)
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
    word_timestamps: bool = False
    beam_size: int = 1  # 1: greedy
    compute_type: str = "float32"  # faster-whisper's CTranslate2 compute type (int8: faster, slightly different)
    subtitles: list[str] = field(default_factory=list)  # srt | vtt files per sample, beside the JSONL
    embed: bool = True  # Whisper encoder features (audio/pooled, audio/temporal) into the feature store
    feature_set: str | None = None  # None: whisper-<model name>; also names the transcripts file


@dataclass
class TextConfig:
    source: str = choice("prompts", "transcripts")  # prompts: a row per class name | transcripts: a row per sample
    encoder: str | None = choice(None, "clip", "minilm")  # None: clip for prompts, minilm for transcripts
    model: str | None = None  # hub id or path; None: the CLIP backbone's own (prompts), bundled MiniLM (transcripts)
    templates: list[str] = field(default_factory=lambda: ["a video of {label}."])  # averaged per class, as CLIP does
    feature_set: str | None = None  # None: <embed.feature_set>-prompts
    similarity_threshold: float = 0.9  # prompts: report class pairs whose prompt embeddings are this alike


@dataclass
class TaskConfig:
    label: str | None = "label"  # manifest column with the class name; null for none
    multilabel: str | None = None  # manifest column with '|'-joined class names (multilabel adapter: labels)
    traits: list[str] = field(default_factory=list)  # numeric manifest columns to regress
    mode: str = choice("joint", "per_target")  # one multi-output head, or an independent head per trait / per class (one-vs-rest)
    n_jobs: int = -1  # per_target: heads trained at once (threads)


@dataclass
class HeadConfig:
    name: str = "linear"  # linear | mlp | attention (over (N, T, D)) | zero-shot (head.prompts) | coop (prompt learning)
    features: str = "video/pooled"
    fuse: list[str] = field(default_factory=list)  # more inputs, "<feature_set>:<key>" (e.g. whisper:audio/pooled)
    fusion: str = choice("concat", "late", "gated")  # how head.features and head.fuse combine; missing ones are masked
    prompts: str | None = None  # "<feature_set>[:<key>]" of class-prompt embeddings, one row per class name
    init: str = choice("random", "prompts")  # prompts: linear head initialised from the class-prompt embeddings
    normalize: str = choice("standardize", "l2")  # features: train mean/std per column, or unit length per row
    logit_scale: float = 100.0  # zero-shot / prompt-initialised heads: cosine similarity times this
    coop_init: str = "a video of a"  # coop: the words the learnable context starts as (their count = context length)
    coop_pooling: str = choice("mean", "attention")  # coop: over the frames of (N, T, D) features
    lr: float = 1e-2
    weight_decay: float = 1e-4
    epochs: int = 200
    batch_size: int = 256
    schedule: str = choice("cosine", "constant")  # learning rate per epoch, after warmup_epochs of linear warm-up
    warmup_epochs: int = 0
    monitor: str = "val_loss"  # early stopping and the kept weights: val_loss or a validation metric (acc, mAP, ...)
    patience: int = 30  # epochs without improvement on `monitor` before stopping
    seed: int = 0
    hidden: int = 256  # mlp: hidden width
    dropout: float = 0.1  # mlp: dropout after the hidden layer
    loss: str = "ce"  # class label: ce | focal
    multilabel_loss: str = "bce"  # multi-label: bce | focal
    regression_loss: str = "mse"  # traits: mse | l1 | huber | ccc
    label_smoothing: float = 0.0  # ce
    class_weights: str = choice("none", "balanced", "effective")  # ce/focal: inverse frequency, or effective numbers
    cb_beta: float = 0.999  # effective-number class weights (Cui et al. 2019)
    focal_gamma: float = 2.0
    eql_tail_count: int = 100  # eql: classes with fewer train positives get no loss from their negatives
    ldam_max_margin: float = 0.5  # ldam: margin of the rarest class (margins fall as n^-1/4)
    ldam_scale: float = 30.0
    drw_epoch: int | None = None  # ldam (deferred re-weighting): effective-number class weights from this epoch
    max_norm: float | None = None  # weight balancing: cap each class's classifier weight norm after every step
    stage2_epochs: int = 0  # weight balancing's second stage: the classifier layer alone, class-balanced, this long
    sampler: str = choice("shuffle", "balanced")  # balanced: each class drawn equally often (with replacement)
    k_train: int | None = None  # few-shot: at most k training samples per class (drawn with head.seed)
    k_val: int | None = None  # at most k validation samples per class


@dataclass
class FinetuneConfig:
    name: str = "finetune"  # the run folder: <paths.cache>/runs/<name>/
    init_head: str | None = None  # a train run (name or path) whose class head starts the classifier; None: random
    unfreeze_blocks: int = 2  # last N transformer blocks (VideoMAE, CLIP) / of I3D's 9 Mixed blocks; -1: all
    layer_decay: float = 1.0  # < 1: layer-wise learning-rate decay from the top block down
    lr: float = 1e-4
    head_lr: float | None = None  # None: lr
    weight_decay: float = 0.05  # on weights, not biases or norms
    epochs: int = 10
    warmup_epochs: int = 1
    freeze_epochs: int = 0  # gradual schedule: the classifier alone for this many epochs, then the unfrozen blocks too
    batch_size: int = 8  # clips per process per micro-batch (a step: x accumulate x world size)
    accumulate: int = 1  # gradient accumulation steps per optimiser step
    amp: str = choice("none", "bf16", "fp16")  # autocast on CUDA (fp16 with a GradScaler); CPU: float32
    grad_checkpointing: bool = False
    monitor: str = "acc"  # early stopping on a validation metric (or val_loss)
    patience: int = 5
    seed: int = 0
    num_workers: int = 2
    augment_crop_scale: list[float] = field(default_factory=lambda: [0.6, 1.0])  # crop's area share, aspect 3/4-4/3; [1, 1]: off
    augment_flip: bool = True
    videomix: str = choice("none", "spatial", "temporal")  # VideoMix: a box through all frames, or a run of frames
    videomix_alpha: float = 1.0  # the share kept ~ Beta(alpha, alpha); the labels weighed by it
    augment_jitter: float = 0.1  # each end of the segment moves by up to this share of its length (< 0.5)
    eval_views: int = 1  # temporal views averaged at evaluation
    eval_crops: int = choice(1, 3)  # spatial crops averaged at evaluation
    bench_steps: int = 0  # > 0: time this many training steps, write bench.json, and stop
    resume: bool = False  # continue from <run>/checkpoints/last.pt exactly where it stopped (none yet: starts afresh)
    export: bool = True  # write the fine-tuned backbone as a model directory `vidprobe embed` can load


@dataclass
class RunConfig:
    name: str = "linear"  # the run folder: <paths.cache>/runs/<name>/


@dataclass
class EvaluateConfig:
    split: str = "test"


@dataclass
class SweepConfig:
    name: str = "sweep"  # runs go to <paths.cache>/runs/<name>/, the leaderboard beside them
    grid: dict[str, list] = field(default_factory=dict)  # dotted config key -> values, e.g. {head.lr: [0.1, 0.01]}
    samples: int = 0  # > 0: that many configs drawn at random from the grid, instead of all of it
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # head.seed values each config runs with
    metric: str = "acc"  # the leaderboard's order (mae*/loss*: lower is better)
    n_jobs: int = -1  # parallel runs (joblib); -1: one per core
    baselines: bool = True  # scikit-learn logistic regression / ridge on the same features and splits
    batch: bool = True  # linear class heads that differ only in lr / weight decay train as one batch
    lr_scaling: str = choice("none", "linear", "sqrt")  # head.lr x (head.batch_size / base_batch_size) [^0.5]
    base_batch_size: int = 256  # the batch size head.lr is given for, when lr_scaling is on


@dataclass
class DemoConfig:
    seed: int = 0
    train: int = 8  # clips per class
    val: int = 3
    test: int = 3
    seconds: float = 3.0
    fps: int = 15
    width: int = 128
    height: int = 96
    audio: bool = True  # a spoken sentence per clip (needs espeak-ng)


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    transcribe: TranscribeConfig = field(default_factory=TranscribeConfig)
    text: TextConfig = field(default_factory=TextConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    run: RunConfig = field(default_factory=RunConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def feature_dir(self) -> Path:
        name = self.embed.feature_set or self.backbone.name
        return Path(self.paths.cache) / self.dataset.name / name

    def manifest_path(self) -> Path:
        return Path(self.paths.cache) / self.dataset.name / "manifest.csv"

    def run_dir(self) -> Path:
        return Path(self.paths.cache) / "runs" / self.run.name


def deep_merge(base: dict, override: dict) -> dict:
    """Merge `override` into a copy of `base`, recursing into nested dicts."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a YAML config, resolving its `include:` list first."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: include cycle through {' -> '.join(map(str, _seen))}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top, got {type(data).__name__}")
    includes = data.pop("include", []) or []
    if isinstance(includes, str):
        includes = [includes]
    merged: dict = {}
    for inc in includes:
        merged = deep_merge(merged, load_yaml(path.parent / inc, _seen + (path.resolve(),)))
    return deep_merge(merged, data)


def parse_overrides(items: list[str]) -> dict:
    """Turn ["head.lr=3e-4", "dataset.root=DIR"] into a nested dict."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value (e.g. head.lr=3e-4)")
        value = yaml.safe_load(raw) if raw else None
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override of {part!r}")
        node[leaf] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Defaults <- YAML file (with includes) <- key=value overrides, validated."""
    data = load_yaml(path) if path else {}
    data = deep_merge(data, parse_overrides(list(overrides)))
    errors: list[str] = []
    cfg = _build(Config, data, "", errors)
    if errors:
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid config{where}:\n  " + "\n  ".join(errors))
    return cfg


def _build(cls: type, data: Any, prefix: str, errors: list[str]) -> Any:
    if not isinstance(data, dict):
        errors.append(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            errors.append(_unknown_key(prefix + str(key), list(fields), prefix))
            continue
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{prefix}{key}.", errors)
        else:
            kwargs[key] = _coerce(value, hint, prefix + key, errors)
            options = fields[key].metadata.get("choices")
            if options and kwargs[key] not in options:
                errors.append(f"{prefix}{key}: {value!r} is not one of {', '.join(map(str, options))}")
    return cls(**kwargs)


def _unknown_key(key: str, valid: list[str], prefix: str) -> str:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {prefix}{close[0]}?" if close else ""
    return f"unknown key {key!r}{hint} (valid: {', '.join(prefix + v for v in valid)})"


def _coerce(value: Any, hint: Any, key: str, errors: list[str]) -> Any:
    """Check `value` against a simple type hint, converting numeric strings like '3e-4'."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, errors)
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{key}: expected a mapping, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            errors.append(f"{key}: expected a list, got {value!r}")
            return value
        (item,) = typing.get_args(hint)
        return [_coerce(v, item, f"{key}[{i}]", errors) for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    errors.append(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
    return value


def with_overrides(cfg: Config, values: dict[str, Any]) -> Config:
    """A copy of `cfg` with dotted keys set (`{"head.lr": 0.1}`), validated like a config file."""
    nested: dict = {}
    for key, value in values.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    errors: list[str] = []
    out = _build(Config, deep_merge(cfg.to_dict(), nested), "", errors)
    if errors:
        raise ConfigError("invalid overrides:\n  " + "\n  ".join(errors))
    return out


def dump_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
