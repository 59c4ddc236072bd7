"""`vidprobe text`: text embeddings into the feature store.

`text.source=prompts`: each class name through the prompt templates and CLIP's text tower, one row
per class (the ids are the class names), for `head.name=zero-shot` and `head.init=prompts`.
`text.source=transcripts`: each sample's Whisper transcript (`vidprobe transcribe`) through a
sentence encoder (all-MiniLM-L6-v2 by default) as `text/pooled`, with the rows of the video feature
set when it exists (a window gets the segments that overlap it) and `text/present` false where
nothing was said or there is no audio, so heads mask those rows.
`text.source=captions`: each row's Florence-2 captions (`vidprobe caption`), embedded the same way.
Either source takes any encoder (`text.encoder=minilm|clip|xclip|siglip|siglip2|clap`; for prompts the default is
the video backbone's own text tower, else CLIP's); rows are L2-normalised.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from vidprobe import layout
from vidprobe.artifacts import read_captions, read_classes, read_manifest, read_transcripts, video_set
from vidprobe.config import Config, ConfigError
from vidprobe.features.files import write_table, write_text
from vidprobe.features.rows import row_texts, stored_rows
from vidprobe.features.store import stage_attrs, write_whole
from vidprobe.features.text import (
    encode_texts,
    heatmap_svg,
    pairs_markdown,
    prompt_embeddings,
    prompt_encoder,
    prompt_similarity,
    text_model,
)

VERSIONS = ("torch", "transformers", "h5py")


def encoder_of(cfg: Config) -> tuple[str, str, str]:
    """(encoder, model to load, what to record) for this config's text section."""
    prompts_by_backbone = cfg.text.source == "prompts" and not cfg.text.encoder
    encoder = prompt_encoder(cfg.backbone) if prompts_by_backbone else layout.text_encoder(cfg)
    return (encoder, *text_model(cfg.text.model, encoder, cfg.backbone))


def identity(cfg: Config) -> dict:
    """The text keys the stored values depend on (the report's threshold is not one)."""
    return {k: v for k, v in dataclasses.asdict(cfg.text).items() if k != "similarity_threshold"}


def run(cfg: Config) -> dict:
    return run_prompts(cfg) if cfg.text.source == "prompts" else run_rows(cfg)


def run_rows(cfg: Config) -> dict:
    """What was said (transcripts) or shown (captions) in each video row, embedded."""
    rows = stored_rows(video_set(cfg))
    if cfg.text.source == "transcripts":
        records = read_transcripts(cfg)
        ids, texts = (
            (rows.ids, row_texts(rows, records)) if rows else (list(records), [r["text"] for r in records.values()])
        )
    else:  # captions: one record per video row already (a window's own)
        records = read_captions(cfg)
        ids = rows.ids if rows else list(records)
        texts = [records.get(i, {}).get("text", "") for i in ids]
    present = np.array([bool(t) for t in texts])
    encoder, model, _ = encoder_of(cfg)
    values, weights = encode_texts(encoder, model, [t for t in texts if t], cfg.backbone.seed)
    values = torch.nn.functional.normalize(values.float(), dim=-1)
    pooled = np.zeros((len(ids), values.shape[1]), np.float32)
    pooled[present] = values.numpy()
    config = {
        "text": identity(cfg),
        "model": weights,
        "rows": ids,
        cfg.text.source: hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16],
    }
    attrs = stage_attrs(
        config,
        {
            "encoder": encoder,
            "weights": weights,
            "pooling": "L2-normalised: MiniLM mean over tokens (attention mask) / CLIP projected text",
            "versions": {p: version(p) for p in VERSIONS},
        },
    )
    out = layout.feature_set(cfg, layout.text_set_name(cfg))
    write_whole(out, attrs, ids, lambda: {"text/pooled": pooled, "text/present": present}, cfg.paths.lock_timeout)
    print(
        f"text: {int(present.sum())} of {len(ids)} rows with {cfg.text.source}, {pooled.shape[1]}-d ({weights}) -> {out}"
    )
    return {"dir": out, "rows": len(ids), "present": int(present.sum())}


def class_names(cfg: Config) -> list[str]:
    """The class list saved by `index` (multi-label datasets), else every class of task.label in the manifest."""
    saved = read_classes(cfg)
    if saved:
        return saved["classes"]
    manifest = read_manifest(cfg)
    if not cfg.task.label or cfg.task.label not in manifest:
        raise ConfigError(f"task.label: class prompts need a class column; the manifest has {list(manifest.columns)}")
    return sorted(manifest[cfg.task.label].dropna().astype(str).unique())


def run_prompts(cfg: Config) -> dict:
    classes = class_names(cfg)
    if not classes:
        raise ConfigError("no class names to embed: the manifest has no labels")
    encoder, model, recorded = encoder_of(cfg)
    attrs = stage_attrs(
        {"text": identity(cfg), "model": recorded, "classes": classes},
        {
            "encoder": encoder,
            "model": recorded,
            "templates": cfg.text.templates,
            "pooling": "mean over templates of L2-normalised projected text embeddings",
            "versions": {p: version(p) for p in VERSIONS},
        },
    )
    out = layout.feature_set(cfg, layout.text_set_name(cfg))
    encode = functools.partial(encode_texts, encoder, model, seed=cfg.backbone.seed)
    values, weights = prompt_embeddings(encode, classes, cfg.text.templates)  # a few class names: cheap to embed again
    if not write_whole(out, attrs, classes, lambda: {"text/pooled": values.astype(np.float32)}, cfg.paths.lock_timeout):
        print(f"text: {out} already holds these {len(classes)} class prompts")
    similarity_report(cfg, classes, values, out / "report")
    print(f"text: {len(classes)} class prompts x {len(cfg.text.templates)} templates ({weights}) -> {out}")
    return {"dir": out, "classes": classes}


def similarity_report(cfg: Config, classes: list[str], values: np.ndarray, out: Path) -> pd.DataFrame:
    """The class pairs whose prompt embeddings are most alike (cosine >= text.similarity_threshold), with
    their training counts: `similar_pairs.csv` / `.md`, the whole matrix as `similarity.csv` and a heatmap
    `similarity.svg`."""
    manifest = read_manifest(cfg)
    counts = (
        manifest[(manifest.split == "train") & (manifest.status == "ok")][cfg.task.label].astype(str).value_counts()
        if cfg.task.label in manifest
        else pd.Series(dtype=int)
    )
    sim, pairs = prompt_similarity(values, classes, counts, cfg.text.similarity_threshold)
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "similar_pairs.csv", pairs, float_format="%.4f")
    write_text(out / "similar_pairs.md", pairs_markdown(pairs))
    write_table(
        out / "similarity.csv", pd.DataFrame(sim, index=classes, columns=classes), index=True, float_format="%.4f"
    )
    write_text(out / "similarity.svg", heatmap_svg(sim, classes))
    print(f"text: {len(pairs)} class pairs with prompt cosine >= {cfg.text.similarity_threshold} -> {out}")
    return pairs
