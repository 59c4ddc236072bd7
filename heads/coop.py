"""Prompt learning on cached CLIP features (CoOp, Zhou et al. 2022): learnable context vectors take the
place of the words before each class name, go through CLIP's frozen text tower, and the class
embeddings that come out classify cached frame features by cosine similarity. Only the context (and,
with attention pooling, the pooling weights) trains; the video backbone never runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from vidprobe.features.backbones import clip_source, load_pretrained
from vidprobe.features.config import BackboneConfig, choice
from vidprobe.features.text import readable, text_model
from vidprobe.heads.errors import HeadConfigError
from vidprobe.heads.models import AttentionPool, PromptSettings, register_head

if TYPE_CHECKING:
    from vidprobe.heads.config import HeadConfig


@dataclass
class CoOpSettings:
    coop_init: str = "a video of a"  # coop: the words the learnable context starts as (their count = context length)
    coop_pooling: str = choice("mean", "attention")  # coop: over the frames of (N, T, D) features


@register_head("coop", sequence=True, settings=(CoOpSettings, PromptSettings))
def coop(in_dim: int, out_dim: int, cfg: HeadConfig) -> nn.Module:
    """Prompt learning needs the CLIP text tower and the class names, which `build_coop` brings; it cannot be
    built from sizes alone."""
    raise HeadConfigError("head.name=coop is built by heads.coop.build_coop (it needs CLIP and the class names)")


def build_coop(clip: tuple[str | None, BackboneConfig], classes: list[str], head: HeadConfig) -> CoOp:
    """CoOp over `classes` through a CLIP text tower, context and pooling as `head` says. `clip` is
    (text.model, the backbone config): text.model when set, else the CLIP backbone's own weights."""
    from transformers import AutoTokenizer, CLIPModel

    model, _ = text_model(clip[0], "clip", clip[1])
    with clip_source(model, clip[1].seed) as source:
        model, _ = load_pretrained(CLIPModel, source, "CLIP")
        tokenizer = AutoTokenizer.from_pretrained(source)
    return CoOp(model, tokenizer, [readable(c) for c in classes], head.coop_init, head.coop_pooling)


class CoOp(nn.Module):
    """`forward((N, T, D) frame features or (N, D) pooled)` -> (N, classes) logits.

    `init`: the words the context starts as (e.g. "a video of a"); their token embeddings are the initial
    context vectors, so before training the classifier is CLIP's zero-shot one for "<init> <class>.".
    `pooling`: mean over frames, or learned attention over them.
    """

    def __init__(self, clip, tokenizer, class_texts: list[str], init: str = "a video of a", pooling: str = "mean"):
        super().__init__()
        object.__setattr__(self, "clip", clip.eval().requires_grad_(False))  # frozen, and kept out of state_dict
        text = clip.text_model
        n_ctx = len(tokenizer(init, add_special_tokens=False).input_ids)
        batch = tokenizer([f"{init} {c}." for c in class_texts], padding=True, return_tensors="pt")
        ids = batch.input_ids
        with torch.no_grad():
            tokens = text.embeddings.token_embedding(ids)  # (C, L, d)
        self.ctx = nn.Parameter(tokens[0, 1 : 1 + n_ctx].clone())  # shared by all classes, after <start>
        self.register_buffer("prefix", tokens[:, :1].clone(), persistent=False)
        self.register_buffer("suffix", tokens[:, 1 + n_ctx :].clone(), persistent=False)
        self.register_buffer("attention_mask", batch.attention_mask, persistent=False)
        self.register_buffer("eos", (ids == text.config.eos_token_id).int().argmax(dim=1), persistent=False)
        dim = clip.config.projection_dim
        self.pool = AttentionPool(dim, dim) if pooling == "attention" else None
        self.logit_scale = float(clip.logit_scale.exp())

    def class_embeddings(self) -> torch.Tensor:
        """(classes, D) projected text embeddings of the prompts with the current context."""
        from transformers.masking_utils import create_causal_mask

        text = self.clip.text_model
        ctx = self.ctx.unsqueeze(0).expand(len(self.prefix), -1, -1)
        hidden = text.embeddings(inputs_embeds=torch.cat([self.prefix, ctx, self.suffix], dim=1))
        mask = create_causal_mask(
            config=text.config, inputs_embeds=hidden, attention_mask=self.attention_mask, past_key_values=None
        )
        out = text.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
        pooled = text.final_layer_norm(out)[torch.arange(len(out)), self.eos]
        return self.clip.text_projection(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = self.pool(x) if self.pool is not None else x.mean(dim=1)
        image = nn.functional.normalize(x, dim=-1)
        classes = nn.functional.normalize(self.class_embeddings(), dim=-1)
        return self.logit_scale * image @ classes.T
