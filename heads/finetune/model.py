"""The fine-tuned network: `Backbone.embed(x)["video/pooled"]` (exactly the cached features) and a linear
classifier; which of its blocks train, and at which learning rates."""

from __future__ import annotations

import torch
from torch import nn
from vidprobe.features.backbones import Backbone, Blocks
from vidprobe.features.i3d import FrozenBatchNorm3d
from vidprobe.heads.bundle import HeadBundle
from vidprobe.heads.config import FinetuneConfig
from vidprobe.heads.errors import HeadConfigError


class FineTuneModel(nn.Module):
    """`Backbone.embed(x)["video/pooled"]`, then a linear classifier. Only `trainable` modules ever leave eval mode.

    The frozen part runs without grad: its parameters have requires_grad False and the input has none, so
    autograd records nothing (and keeps no activations) below the first trainable block.
    """

    def __init__(self, bb: Backbone, dim: int, num_classes: int):
        super().__init__()
        self.bb = bb  # not a module: embed() runs the modules registered below
        self.backbone = bb.model
        self.fc_norm = getattr(bb, "fc_norm", None)
        self.classifier = nn.Linear(dim, num_classes)
        self.trainable: list[nn.Module] = [self.classifier]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.bb.embed(pixels)["video/pooled"])

    def train(self, mode: bool = True) -> FineTuneModel:
        super().train(False)  # the frozen part always runs as at inference (dropout off, norms as loaded)
        for m in self.trainable:
            m.train(mode)
        self.training = mode
        return self


def unfreeze(model: FineTuneModel, blocks: Blocks, n: int) -> list[tuple[int, nn.Module]]:
    """Enable gradients on the last `n` blocks (-1: all, stem included) and what is above them; return
    (depth, module) pairs, depth 0 at the top (the final norms share the top block's)."""
    count = len(blocks.blocks)
    if n > count:
        raise HeadConfigError(
            f"finetune.unfreeze_blocks: {model.bb.name} has {count} blocks; use 0..{count}, or -1 for all"
        )
    k = count if n == -1 else n
    chosen = [(0, m) for m in blocks.top] if k else []
    chosen += [(i, blocks.blocks[count - 1 - i]) for i in range(k)]
    if n == -1:
        chosen += [(count, m) for m in blocks.stem]
    for _, m in chosen:
        m.requires_grad_(True)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm3d):  # I3D's batch norms stay frozen, statistics and offset
            m.requires_grad_(False)
    model.classifier.requires_grad_(True)
    model.trainable = [m for _, m in chosen] + [model.classifier]
    return chosen


def param_groups(model: FineTuneModel, chosen: list[tuple[int, nn.Module]], cfg: FinetuneConfig) -> list[dict]:
    """AdamW groups: block i from the top at lr * layer_decay^i, the classifier at head_lr (or lr); weight decay
    on weight matrices and kernels only, not on biases and norm parameters (as VideoMAE / BEiT fine-tuning do)."""
    groups: dict[tuple[bool, float, float], list[nn.Parameter]] = {}

    def add(params, lr: float, backbone: bool) -> None:
        for p in params:
            if p.requires_grad:
                groups.setdefault((backbone, lr, cfg.weight_decay if p.ndim > 1 else 0.0), []).append(p)

    for depth, m in chosen:
        add(m.parameters(), cfg.lr * cfg.layer_decay**depth, True)
    add(model.classifier.parameters(), cfg.lr if cfg.head_lr is None else cfg.head_lr, False)
    return [
        {"params": ps, "lr": lr, "weight_decay": wd, "backbone": backbone} for (backbone, lr, wd), ps in groups.items()
    ]


def check_head(bundle: HeadBundle, classes: list[str], what: str) -> None:
    """The head can start this fine-tune's classifier: a plain linear class head over the same classes."""
    bundle.linear_class_head(what)
    if list(bundle.classes) != classes:
        raise HeadConfigError(
            f"{what} was trained on classes {list(bundle.classes)}; this dataset's train split has {classes}"
        )


def classifier_from_head(model: FineTuneModel, bundle: HeadBundle, what: str) -> None:
    """Set the classifier to the bundle's linear class head with its standardisation folded in, so that on
    the same clips the logits are the head's."""
    weight, bias = bundle.linear_class_head(what)
    if weight.shape[1] != model.classifier.in_features:
        raise HeadConfigError(
            f"{what}: its head takes {weight.shape[1]}-d features, {model.bb.name} gives "
            f"{model.classifier.in_features}-d"
        )
    with torch.no_grad():
        model.classifier.weight.copy_(weight)
        model.classifier.bias.copy_(bias)
