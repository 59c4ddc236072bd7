"""Where every output lives under `paths.cache`. No other module joins a path of the cache.

```
<cache>/<dataset>/manifest.csv, classes.json, describe.json     index
<cache>/<dataset>/<feature set>/                                  embed (video), transcribe (Whisper), audio-embed, text
<cache>/<dataset>/audio/audio.csv, clips/<sample_id>.flac         audio
<cache>/<dataset>/transcripts/<whisper set>.jsonl (and /<whisper set>/<sample_id>.srt|vtt)
<cache>/<dataset>/captions/<caption set>.jsonl                    caption
<cache>/models/whisper/                                           converted Whisper checkpoints
<cache>/runs/<run>/ (inside: heads/runs.py, heads/finetune/loop.py) train, evaluate, finetune
<cache>/runs/<sweep>/ (leaderboard, one run folder per trial)     sweep
```
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from vidprobe.config import Config


def dataset_dir(cfg: Config) -> Path:
    return Path(cfg.paths.cache) / cfg.dataset.name


def manifest(cfg: Config) -> Path:
    return dataset_dir(cfg) / "manifest.csv"


def classes_file(cfg: Config) -> Path:
    """The class list and long-tail segments of a dataset with a class file (multilabel)."""
    return dataset_dir(cfg) / "classes.json"


def describe_file(cfg: Config) -> Path:
    return dataset_dir(cfg) / "describe.json"


# --- feature sets: named by config, one folder each


def video_set_name(cfg: Config) -> str:
    return cfg.embed.feature_set or cfg.backbone.name


def whisper_model_tag(cfg: Config) -> str:
    return "tiny.en" if not cfg.transcribe.model else Path(str(cfg.transcribe.model).rstrip("/")).name


def whisper_set_name(cfg: Config) -> str:
    """Whisper encoder features; also names the transcripts file."""
    return cfg.transcribe.feature_set or f"whisper-{whisper_model_tag(cfg)}"


def audio_set_name(cfg: Config) -> str:
    """Audio encoder features (`vidprobe audio-embed`)."""
    tag = Path(str(cfg.audio_embed.model or "none").rstrip("/")).name
    return cfg.audio_embed.feature_set or f"{cfg.audio_embed.encoder}-{tag}"


def caption_set_name(cfg: Config) -> str:
    """Captions (`vidprobe caption`): names the captions file and the text sets made of it."""
    tag = Path(str(cfg.caption.model or "none").rstrip("/")).name
    return cfg.caption.feature_set or f"florence2-{tag}"


def captions(cfg: Config) -> Path:
    return dataset_dir(cfg) / "captions" / f"{caption_set_name(cfg)}.jsonl"


def text_encoder(cfg: Config) -> str:
    """text.encoder, else CLIP's text tower for class prompts and MiniLM for transcripts."""
    return cfg.text.encoder or ("clip" if cfg.text.source == "prompts" else "minilm")


def text_set_name(cfg: Config) -> str:
    if cfg.text.source == "transcripts":
        return cfg.text.feature_set or f"{whisper_set_name(cfg)}-{text_encoder(cfg)}"
    if cfg.text.source == "captions":
        return cfg.text.feature_set or f"{caption_set_name(cfg)}-{text_encoder(cfg)}"
    return cfg.text.feature_set or f"{video_set_name(cfg)}-prompts"


def feature_set(cfg: Config, name: str | None = None) -> Path:
    """The feature set `name` of this dataset (default: this config's video features)."""
    return dataset_dir(cfg) / (name or video_set_name(cfg))


# --- audio and speech


def audio_dir(cfg: Config) -> Path:
    return dataset_dir(cfg) / "audio"


def audio_index(cfg: Config) -> Path:
    return audio_dir(cfg) / "audio.csv"


def flac(cfg: Config, sample_id: str) -> Path:
    return audio_dir(cfg) / "clips" / f"{sample_id.lstrip('/').replace('..', '__')}.flac"


def transcripts(cfg: Config) -> Path:
    return dataset_dir(cfg) / "transcripts" / f"{whisper_set_name(cfg)}.jsonl"


def subtitles(cfg: Config, sample_id: str, fmt: str) -> Path:
    return transcripts(cfg).parent / whisper_set_name(cfg) / f"{sample_id}.{fmt}"


def model_cache(cfg: Config) -> Path:
    """Where a CTranslate2 Whisper folder converted for openai-whisper is kept (by content hash)."""
    return Path(cfg.paths.cache) / "models" / "whisper"


# --- runs


def runs_dir(cfg: Config) -> Path:
    return Path(cfg.paths.cache) / "runs"


def run_dir(cfg: Config) -> Path:
    """The head run of `run.name` (train, evaluate)."""
    return runs_dir(cfg) / cfg.run.name


def eval_dir(cfg: Config, split: str) -> Path:
    return run_dir(cfg) / "eval" / split


def finetune_dir(cfg: Config) -> Path:
    return runs_dir(cfg) / cfg.finetune.name


def head_run(cfg: Config, ref: str) -> Path:
    """A train run named by `ref`: its heads.pt, its folder, or its name under the runs folder."""
    path = Path(ref)
    if path.is_file():
        return path.parent
    return path if path.is_dir() else runs_dir(cfg) / ref


def sweep_dir(cfg: Config) -> Path:
    return runs_dir(cfg) / cfg.sweep.name


def predict_dir(cfg: Config, dataset: str) -> Path:
    """What `vidprobe predict` writes for the new videos of `dataset` with the run `run.name`."""
    return run_dir(cfg) / "predict" / dataset


def export_dir(cfg: Config, feature_set: str) -> Path:
    return (
        Path(cfg.export.out) if cfg.export.out else dataset_dir(cfg) / "exports" / f"{feature_set}-{cfg.export.format}"
    )


def predict_dataset(cfg: Config) -> str:
    """The cache name of `predict.input`'s videos: predict.name, else the input's name and a hash of its path
    (two folders called `clips` never share cached features)."""
    if cfg.predict.name:
        return cfg.predict.name
    spec = str(cfg.predict.input)
    fixed = Path(spec.split("*")[0].split("?")[0] or ".")
    named = (fixed if fixed.is_dir() or fixed.suffix else fixed.parent).resolve()  # a glob: the folder it searches
    stem = (named.stem if named.suffix else named.name) or "input"
    return f"predict-{stem}-{hashlib.sha1(str(Path(spec).resolve()).encode()).hexdigest()[:8]}"
