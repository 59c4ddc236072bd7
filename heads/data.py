"""What a head trains on: one split's features (from one feature set, or several fused) and its targets.

Features are read from the feature store by sample id; targets come from the manifest's rows (a class
name, '|'-joined class names, numeric traits). Fused inputs are packed per row as
[x_1 | ... | x_M | presence masks]: a sample missing from a set, or flagged by the set's
`<modality>/present` (no audio track), is NaN before standardisation and so left out of the
training statistics; heads see it as 0 with mask 0.

A split whose features would take more than `head.memory_mb` as float32 is not loaded: its `x` is a
`heads.stream.DiskRows` over a float16 copy made once beside the feature set, read a minibatch at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from vidprobe.features.store import FeatureSet
from vidprobe.heads.config import HeadConfig, TaskConfig
from vidprobe.heads.errors import HeadConfigError
from vidprobe.heads.models import SEQUENCE_HEADS
from vidprobe.heads.stream import DiskRows, chunk_rows, copy_rows, nbytes


@dataclass
class LabeledFeatures:
    """One split: features and targets, row i of each for sample `ids[i]`."""

    ids: list[str]
    x: torch.Tensor | DiskRows  # (N, D) features, (N, T, D) for sequence heads, or packed fused rows
    labels: list[str] | None  # class names, when task.label is set
    multi: list[list[str]] | None  # class names per sample, when task.multilabel is set
    traits: np.ndarray | None  # (N, n_traits), NaN where a value is missing
    dims: list[int] | None = None  # fused inputs: each modality's width; x is [x_1 | ... | x_M | masks]


def pooled(x: np.ndarray, key: str) -> torch.Tensor:
    x = torch.from_numpy(x).float()
    if x.ndim > 2 and key.endswith("pooled"):
        x = x.flatten(1, -2).mean(1)  # temporal views and crops: averaged, as multi-view testing does
    elif x.ndim > 3 and key.split("@")[0].endswith("tokens"):
        x = x.flatten(1, -3).mean(1)  # token grids of several views and crops: averaged cell by cell
    return x


def check_finite(x: torch.Tensor, ids: list[str], split: str, key: str) -> None:
    bad = torch.from_numpy(~np.isfinite(x.flatten(1).numpy()).all(1))  # no float temporaries (torch.isfinite has two)
    if bad.any():
        raise HeadConfigError(
            f"{int(bad.sum())} samples of {split} have NaN or inf in {key}, e.g. "
            f"{[ids[i] for i in torch.nonzero(bad).flatten()[:3].tolist()]}; re-embed them "
            f"(`vidprobe cache verify` lists the shards)"
        )


def modality(fs: FeatureSet, key: str, ids: list[str], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(values with NaN rows where missing, presence mask) of one input.

    A sample is missing when its id is not in the set, or when the set says so in `<modality>/present`
    (e.g. `audio/present` is false for a video without an audio track).
    """
    have = [i for i in ids if i in fs.rows]
    rows = {sid: r for r, sid in enumerate(have)}
    x = pooled(fs.get(key, have), key)
    present = torch.ones(len(have), dtype=torch.bool)
    flag = f"{key.split('/')[0]}/present"
    if flag in fs.keys:
        present = torch.from_numpy(fs.get(flag, have).astype(bool))
    check_finite(x[present], [s for s, p in zip(have, present) if p], split, f"{fs.dir.name}:{key}")
    out = torch.full((len(ids), *x.shape[1:]), float("nan"))
    mask = torch.zeros(len(ids))
    for i, sid in enumerate(ids):
        r = rows.get(sid)
        if r is not None and present[r]:
            out[i], mask[i] = x[r], 1.0
    return out, mask


def load_split(
    head: HeadConfig,
    task: TaskConfig,
    manifest: pd.DataFrame,
    fs: FeatureSet,
    split: str,
    fused: list[tuple[str, FeatureSet, str]] = (),
) -> LabeledFeatures:
    """The manifest rows of `split` (those with features): `head.features` from `fs`, packed with each fused
    (spec, feature set, key) input, and the targets `task` names."""
    rows = manifest[manifest.split == split]
    if rows.empty:
        raise HeadConfigError(
            f"no samples with features in split {split!r}; splits present: {sorted(manifest.split.unique())}"
        )
    ids = list(rows.sample_id)
    x, dims = features_of(head, fs, ids, split, fused)
    labels = list(rows[task.label].astype(str)) if task.label else None
    traits = rows[task.traits].to_numpy(dtype=np.float64, copy=True) if task.traits else None
    multi = None
    if task.multilabel:
        multi = [list(filter(None, str(v).split("|"))) if isinstance(v, str) else [] for v in rows[task.multilabel]]
    return LabeledFeatures(ids, x, labels, multi, traits, dims)


def features_of(
    head: HeadConfig, fs: FeatureSet, ids: list[str], split: str, fused: list[tuple[str, FeatureSet, str]] = ()
) -> tuple[torch.Tensor, list[int] | None]:
    """(x, dims): what the head reads for the rows `ids` of `fs` (a sample, or a window); fused inputs packed
    as [x_1 | ... | x_M | presence masks] with each modality's width in `dims`."""
    _, key = head.feature_spec(fs.dir.name)
    row = row_shape(fs, key)
    if nbytes(len(ids), row) > head.memory_mb * 2**20:
        return streamed(head, fs, key, ids, split, row), None
    if f"{key.split('/')[0]}/present" in fs.keys:  # e.g. audio alone: rows without audio are missing values
        x, _ = modality(fs, key, ids, split)
    else:
        x = pooled(fs.get(key, ids), key)
        check_finite(x, ids, split, head.features)
    check_shape(head, x)
    if not head.fuse:
        return x, None
    if head.name in SEQUENCE_HEADS or head.name in ("zero-shot", "coop") or head.init == "prompts":
        raise HeadConfigError(
            f"head.fuse: fusion combines pooled features with linear or mlp heads, not "
            f"{head.name!r} (head.init={head.init})"
        )
    parts = [modality(other, k, ids, split) for _, other, k in fused]
    flat = [spec for (spec, _, _), (values, _) in zip(fused, parts) if values.ndim != 2]
    if x.ndim != 2 or flat:
        raise HeadConfigError(f"head.fuse: fusion takes pooled (N, D) features; {flat or head.features} are not")
    dims = [x.shape[1]] + [p[0].shape[1] for p in parts]
    masks = torch.stack([torch.ones(len(ids))] + [p[1] for p in parts], dim=1)
    return torch.cat([x] + [p[0] for p in parts] + [masks], dim=1), dims


def row_shape(fs: FeatureSet, key: str) -> tuple:
    """The shape of one row of `key` as heads read it (views and crops of a pooled key averaged)."""
    shape = tuple(fs.keys.get(key, ()))
    return shape[-1:] if len(shape) > 1 and key.endswith("pooled") else shape


def streamed(head: HeadConfig, fs: FeatureSet, key: str, ids: list[str], split: str, row: tuple) -> DiskRows:
    """`key` for `ids` on disk (see heads.stream), for features bigger than `head.memory_mb`."""
    if head.fuse or f"{key.split('/')[0]}/present" in fs.keys:
        raise HeadConfigError(
            f"{split}: {len(ids)} rows of {key} take {nbytes(len(ids), row) / 2**20:.0f} MB, more "
            f"than head.memory_mb={head.memory_mb}; fused or partly missing inputs are read whole: "
            "raise head.memory_mb, or train on one input"
        )
    rows = max(chunk_rows(head.memory_mb, row), head.batch_size)  # a minibatch is read as one tensor

    def prepare(chunk_ids: list[str], values: np.ndarray) -> torch.Tensor:
        x = pooled(values, key)
        check_finite(x, chunk_ids, split, head.features)
        return x

    print(
        f"{split}: {len(ids)} rows of {key} ({nbytes(len(ids), row) / 2**30:.1f} GB as float32) are more than "
        f"head.memory_mb={head.memory_mb}: streamed from disk, {rows} rows at a time"
    )
    x = DiskRows(copy_rows(fs, key, ids, rows, prepare), rows)
    check_shape(head, x)
    return x


def missing_inputs(head: HeadConfig, data: LabeledFeatures) -> list[str]:
    """Per row of fused data, the inputs it lacks (masked), comma-joined; empty when it has them all."""
    if not data.dims:
        return [""] * len(data.ids)
    names = [head.features] + list(head.fuse)
    masks = data.x[:, -len(data.dims) :]
    return [",".join(n for n, m in zip(names, row) if m == 0) for row in masks.tolist()]


def check_shape(head: HeadConfig, x: torch.Tensor) -> None:
    """The head takes features of this shape: (N, D), or (N, T, D) for sequence heads (CoOp: either)."""
    if head.name == "coop":
        if x.ndim not in (2, 3):
            raise HeadConfigError(
                f"head.features: coop takes CLIP frames (N, T, D) or pooled (N, D) features; "
                f"{head.features!r} has shape {tuple(x.shape[1:])} per sample"
            )
    elif head.name == "attentive" and x.ndim != 3:
        raise HeadConfigError(
            f"head.features: the attentive head attends over token grids (N, T*H*W, D); {head.features!r} has "
            f"shape {tuple(x.shape[1:])} per sample. Embed with backbone.token_grid=[T, H, W] (e.g. [8, 4, 4]) and "
            "set head.features=video/tokens"
        )
    elif head.name in SEQUENCE_HEADS:
        if x.ndim != 3:
            raise HeadConfigError(
                f"head.features: the {head.name} head pools over time and needs (N, T, D) features "
                f"such as video/temporal; {head.features!r} has shape {tuple(x.shape[1:])} per sample"
            )
    elif x.ndim != 2:
        raise HeadConfigError(
            f"head.features: {head.features!r} has shape {tuple(x.shape[1:])} per sample; "
            f"the {head.name} head needs pooled (N, D) features such as video/pooled"
        )


def few_shot(data: LabeledFeatures, k: int | None, seed: int) -> LabeledFeatures:
    """At most `k` samples per class, drawn with `seed` (the same draw for every head of a run)."""
    if not k:
        return data
    if data.labels is None:
        raise HeadConfigError("head.k_train/k_val: few-shot sampling needs task.label (a class per sample)")
    rng = np.random.default_rng(seed)
    labels = np.array(data.labels)
    keep = np.sort(np.concatenate([rng.permutation(np.nonzero(labels == c)[0])[:k] for c in np.unique(labels)]))
    pick = torch.from_numpy(keep)
    return LabeledFeatures(
        [data.ids[i] for i in keep],
        data.x[pick],
        list(labels[keep]),
        None if data.multi is None else [data.multi[i] for i in keep],
        None if data.traits is None else data.traits[keep],
        data.dims,
    )


def multi_hot(multi: list[list[str]], classes: list[str]) -> torch.Tensor:
    index = {c: j for j, c in enumerate(classes)}
    y = torch.zeros(len(multi), len(classes))
    for i, names in enumerate(multi):
        y[i, [index[n] for n in names if n in index]] = 1.0
    return y
