"""The head bundle: everything a trained run needs to predict, saved as `heads.pt`.

The feature standardisation fitted on the training rows, the fused inputs' widths and config hashes,
and up to three heads (class, multi-label, traits) as state dicts with what they predict. On disk it is
a plain dict of tensors and lists (`torch.load(..., weights_only=True)` reads it); the architecture is
rebuilt from the head config, so the bundle stays loadable without pickled classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from vidprobe.features.files import save_torch
from vidprobe.heads.config import HeadConfig
from vidprobe.heads.data import LabeledFeatures, multi_hot
from vidprobe.heads.errors import HeadConfigError
from vidprobe.heads.metrics import classification_metrics, multilabel_metrics, per_class_ap, regression_metrics
from vidprobe.heads.models import build_head
from vidprobe.heads.stream import forward_chunks
from vidprobe.heads.trainer import Standardizer

# Each head's entries, in the order they are saved; a head that was not trained has none of them.
HEAD_KEYS = {
    "label_head": ("classes", "label_head", "one_vs_rest"),
    "multilabel_head": ("ml_classes", "multilabel_head", "ml_segment_classes", "ml_segments", "ml_thresholds"),
    "traits_heads": ("traits", "trait_groups", "traits_heads", "trait_mean", "trait_std"),
}
COMMON_KEYS = ("feat_mean", "feat_std", "feat_l2", "dims", "inputs")


@dataclass
class HeadBundle:
    feat_mean: torch.Tensor  # standardisation of the features (train rows)
    feat_std: torch.Tensor
    feat_l2: bool = False  # rows scaled to unit length instead (class-prompt heads)
    dims: list[int] | None = None  # fused inputs: each modality's width
    inputs: dict[str, str] = field(default_factory=dict)  # other feature sets read -> their config hash
    tokens: int | None = None  # sequence inputs (token grids, time steps): how many per sample the heads saw
    classes: list[str] | None = None
    label_head: dict | None = None
    one_vs_rest: bool = False
    ml_classes: list[str] | None = None
    multilabel_head: dict | None = None
    ml_segment_classes: list[str] | None = None
    ml_segments: list[str] | None = None  # long-tail segment of each of ml_segment_classes
    ml_thresholds: list[float] | None = None  # per class: predicted present at score >= it (best F1 on validation)
    traits: list[str] | None = None
    trait_groups: list[list[int]] | None = None  # trait columns of each head
    traits_heads: list[dict] | None = None
    trait_mean: torch.Tensor | None = None  # traits are predicted standardised
    trait_std: torch.Tensor | None = None

    # --- building

    def set_label_head(self, classes: list[str], state: dict, one_vs_rest: bool) -> None:
        self.classes, self.label_head, self.one_vs_rest = classes, state, one_vs_rest

    def set_multilabel_head(
        self, classes: list[str], state: dict, segment: dict[str, str], thresholds: list[float]
    ) -> None:
        self.ml_classes, self.multilabel_head = classes, state
        self.ml_segment_classes, self.ml_segments = list(segment), list(segment.values())
        self.ml_thresholds = thresholds

    def set_trait_heads(
        self, traits: list[str], groups: list[list[int]], states: list[dict], scaler: Standardizer
    ) -> None:
        self.traits, self.trait_groups, self.traits_heads = traits, groups, states
        self.trait_mean, self.trait_std = scaler.mean, scaler.std

    # --- on disk

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in COMMON_KEYS}
        if self.tokens is not None:  # saved only when there are some: earlier bundles load as they were
            out["tokens"] = self.tokens
        for head, keys in HEAD_KEYS.items():
            if getattr(self, head) is not None:
                out.update({k: getattr(self, k) for k in keys})
        return out

    def save(self, path: str | Path) -> Path:
        """heads.pt, whole or not at all (a run killed while saving leaves the previous one, or none)."""
        return save_torch(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> HeadBundle:
        path = Path(path)
        if not path.is_file():
            raise HeadConfigError(f"no trained heads at {path}: run `vidprobe train` with the same config first")
        saved = torch.load(path, weights_only=True)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})

    # --- use

    def standardizer(self) -> Standardizer:
        return Standardizer(self.feat_mean, self.feat_std, self.feat_l2)

    def check_inputs(self, now: dict[str, str]) -> None:
        """The other feature sets read now are the ones the heads were trained on (same config hash)."""
        for spec, trained in self.inputs.items():
            if now.get(spec) != trained:
                raise HeadConfigError(
                    f"{spec!r} now has config hash {now.get(spec)}, the heads were trained on "
                    f"{trained}; re-run `vidprobe train`"
                )

    def predict(
        self, data: LabeledFeatures, head: HeadConfig, coop_clip: tuple | None = None, top_k: int = 0
    ) -> tuple[pd.DataFrame, dict, dict[str, pd.DataFrame]]:
        """(predictions per sample, metrics, per-class AP tables by head) on one split. The heads are rebuilt
        from `head` (a CoOp head through the CLIP of `coop_clip`). Every class gets a column (`prob/<class>`,
        multi-label `score/<class>`); `top_k` adds the k most probable classes. Data without targets (new
        videos) gets predictions only."""
        if self.tokens is not None and len(data.x.shape) == 3 and data.x.shape[1] != self.tokens:
            raise HeadConfigError(
                f"head.features: these features have {data.x.shape[1]} tokens per sample, the heads were trained "
                f"on {self.tokens}: embed the videos with the run's backbone.token_grid and sampling (its "
                "config.yaml), or train a head on this grid"
            )
        x = self.standardizer()(data.x)
        parts = [pd.DataFrame({"sample_id": data.ids})]
        metrics: dict = {}
        tables: dict[str, pd.DataFrame] = {}
        with torch.no_grad():
            if self.label_head is not None:
                net = self._head(
                    head, self.label_head, x.shape[-1], len(self.classes), self.one_vs_rest, self.classes, coop_clip
                )
                probs = forward_chunks(net, x).softmax(1).numpy()
                parts.append(self._classes(probs, data.labels, top_k, metrics, tables))
            if self.multilabel_head is not None:
                net = self._head(head, self.multilabel_head, x.shape[-1], len(self.ml_classes))
                scores = forward_chunks(net, x).sigmoid().numpy()
                parts.append(self._multilabel(scores, data.multi, metrics, tables))
            if self.traits_heads is not None:
                out = torch.zeros(len(x), len(self.traits))
                for columns, state in zip(self.trait_groups, self.traits_heads):
                    out[:, columns] = forward_chunks(self._head(head, state, x.shape[-1], len(columns)), x)
                y_hat = (out * self.trait_std + self.trait_mean).numpy()
                cols = {}
                for j, t in enumerate(self.traits):
                    if data.traits is not None:
                        cols[t] = data.traits[:, j]
                    cols[f"pred/{t}"] = y_hat[:, j]
                parts.append(pd.DataFrame(cols))
                if data.traits is not None:
                    metrics.update(regression_metrics(data.traits, y_hat, self.traits))
        return pd.concat(parts, axis=1), metrics, tables

    def _classes(
        self, probs: np.ndarray, labels: list[str] | None, top_k: int, metrics: dict, tables: dict
    ) -> pd.DataFrame:
        classes = self.classes
        y_pred = probs.argmax(1)
        cols: dict = {}
        if labels is not None:
            unknown = sorted(set(labels) - set(classes))
            if unknown:
                print(f"warning: classes {unknown} were not seen in training; their samples count as wrong")
            cols["label"] = labels
        cols["pred"], cols["confidence"] = [classes[i] for i in y_pred], probs.max(1)
        if top_k:
            best = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
            cols[f"top{top_k}"] = ["|".join(classes[j] for j in row) for row in best]
        cols.update({f"prob/{c}": probs[:, j] for j, c in enumerate(classes)})
        if labels is not None:
            y_true = np.array([classes.index(c) if c in classes else -1 for c in labels])
            metrics.update(classification_metrics(y_true, y_pred, len(classes), probs))
            tables["label"] = ap_table(classes, (y_true[:, None] == np.arange(len(classes))).astype(float), probs)
        return pd.DataFrame(cols)

    def _multilabel(
        self, scores: np.ndarray, multi: list[list[str]] | None, metrics: dict, tables: dict
    ) -> pd.DataFrame:
        classes = self.ml_classes
        thresholds = np.asarray(self.ml_thresholds if self.ml_thresholds is not None else [0.5] * len(classes))
        cols: dict = {}
        if multi is not None:
            cols["labels"] = ["|".join(m) for m in multi]
        cols["top"] = [classes[j] for j in scores.argmax(1)]
        cols["pred_labels"] = ["|".join(c for c, on in zip(classes, row) if on) for row in scores >= thresholds]
        cols.update({f"score/{c}": scores[:, j] for j, c in enumerate(classes)})
        if multi is not None:
            segment = dict(zip(self.ml_segment_classes, self.ml_segments))
            y_true = multi_hot(multi, classes).numpy()
            metrics.update(multilabel_metrics(y_true, scores, classes, segment))
            tables["multilabel"] = ap_table(classes, y_true, scores, segment)
        return pd.DataFrame(cols)

    def _head(
        self,
        head: HeadConfig,
        state: dict,
        in_dim: int,
        out_dim: int,
        one_vs_rest: bool = False,
        classes: list[str] | None = None,
        coop_clip: tuple | None = None,
    ) -> torch.nn.Module:
        if head.name == "coop":
            from vidprobe.heads.coop import build_coop

            net = build_coop(coop_clip, classes, head)
        else:
            net = build_head(head, in_dim, out_dim, self.dims, one_vs_rest)
        net.load_state_dict(state)
        return net.eval()

    def linear_class_head(self, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The class head as one linear layer on raw features, its standardisation folded in:
        W' = W / std, b' = b - W' @ mean (float64), so that on the same features the logits are the head's."""
        state = self.label_head
        if state is None:
            raise HeadConfigError(f"{what} has no class head (it was trained without task.label)")
        fused = len(self.dims or []) > 1
        if self.one_vs_rest or self.feat_l2 or fused or set(state) != {"weight", "bias"}:
            raise HeadConfigError(
                f"{what} is not a plain linear class head on standardised features (one-vs-rest, "
                "L2-normalised, fused or not linear); fine-tuning starts from head.name=linear, "
                "task.mode=joint, no head.fuse"
            )
        folded = state["weight"].double() / self.feat_std.double()
        return folded, state["bias"].double() - folded @ self.feat_mean.double()


def ap_table(classes: list[str], y_true: np.ndarray, scores: np.ndarray, segment: dict | None = None) -> pd.DataFrame:
    """One row per class: positives in this split, AP (empty when it has none), long-tail segment."""
    ap = per_class_ap(y_true, scores, classes)
    return pd.DataFrame(
        {
            "class": classes,
            "positives": y_true.sum(0).astype(int),
            "ap": [ap.get(c, np.nan) for c in classes],
            "segment": [(segment or {}).get(c, "") for c in classes],
        }
    )
