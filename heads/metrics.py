"""Metrics named as DESIGN.md names them: acc, macro_f1, spearman/<trait>, pearson/<trait>, mae/<trait>; which a
run of given targets reports (`metric_names`), and which are better lower (`lower_is_better`)."""

from __future__ import annotations

import numpy as np

REGRESSION = ("spearman", "pearson", "mae", "ccc")


def metric_names(label: bool, multilabel: bool, traits: list[str]) -> set[str]:
    """The validation (and test) metrics a run reports for its targets: what `head.monitor` and `sweep.metric`
    may name. A class head reports top5 only above 5 classes."""
    names = {"acc", "macro_f1", "top5"} if label else set()
    if multilabel:
        names |= {"mAP", "mAP_head", "mAP_middle", "mAP_tail", "classes_without_positives"}
    names |= {f"{m}/{t}" for m in REGRESSION for t in ([*traits, "mean"] if traits else [])}
    return names


def lower_is_better(metric: str) -> bool:
    """Losses, errors (mae) and counts of classes without positives are better lower; every other metric higher."""
    return metric.endswith("loss") or metric.startswith(("mae", "loss")) or metric == "classes_without_positives"


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Mean F1 over classes that occur in y_true or y_pred (scikit-learn's convention)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for c in range(num_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks, ties sharing the mean of their positions (vectorised: it runs every epoch of every head)."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    start = np.r_[True, sorted_x[1:] != sorted_x[:-1]][: len(x)]  # where each run of equal values begins
    first = np.flatnonzero(start)
    last = np.r_[first[1:], len(x)] - 1
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = ((first + last) / 2.0)[np.cumsum(start) - 1]
    return ranks


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return pearson(_ranks(np.asarray(a)), _ranks(np.asarray(b)))


def top_k(y_true: np.ndarray, scores: np.ndarray, k: int = 5) -> float:
    """Share of samples whose class is among the k highest scores."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean([t in row for t, row in zip(np.asarray(y_true), top)]))


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, scores: np.ndarray | None = None
) -> dict[str, float]:
    out = {"acc": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred, num_classes)}
    if scores is not None and num_classes > 5:
        out["top5"] = top_k(y_true, scores, 5)
    return out


def ccc(a: np.ndarray, b: np.ndarray) -> float:
    """Lin's concordance correlation coefficient."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    cov = np.mean((a - a.mean()) * (b - b.mean()))
    return float(2 * cov / (a.var() + b.var() + (a.mean() - b.mean()) ** 2))


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, traits: list[str]) -> dict[str, float]:
    """Per-trait spearman/pearson/mae/ccc plus their means over traits; y arrays are (N, n_traits).

    A NaN in y_true (a missing trait value) leaves that sample out of that trait's figures only.
    """
    out: dict[str, float] = {}
    for j, t in enumerate(traits):
        ok = ~np.isnan(y_true[:, j])
        a, b = y_true[ok, j], y_pred[ok, j]
        out[f"spearman/{t}"] = spearman(a, b)
        out[f"pearson/{t}"] = pearson(a, b)
        out[f"mae/{t}"] = float(np.mean(np.abs(a - b)))
        out[f"ccc/{t}"] = ccc(a, b)
    for name in REGRESSION:
        out[f"{name}/mean"] = float(np.mean([out[f"{name}/{t}"] for t in traits]))
    return out


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall steps (scikit-learn's average_precision_score), one class."""
    order = np.argsort(-scores, kind="mergesort")
    y, s = np.asarray(y_true)[order], np.asarray(scores)[order]
    last_of_tie = np.r_[np.diff(s) != 0, True]  # tied scores count as one threshold
    tp = np.cumsum(y)[last_of_tie]
    seen = (np.arange(len(y)) + 1)[last_of_tie]
    precision, recall = tp / seen, tp / max(y.sum(), 1)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_class_ap(y_true: np.ndarray, scores: np.ndarray, classes: list[str]) -> dict[str, float]:
    """AP of each class that has positives in `y_true` (N, C) 0/1, from `scores` (N, C)."""
    return {c: average_precision(y_true[:, j], scores[:, j]) for j, c in enumerate(classes) if y_true[:, j].any()}


def multilabel_metrics(
    y_true: np.ndarray, scores: np.ndarray, classes: list[str], segment: dict[str, str] | None = None
) -> dict[str, float]:
    """mAP over the classes that have positives, and per head/middle/tail segment; says how many had none."""
    has_pos = y_true.sum(0) > 0
    ap = per_class_ap(y_true, scores, classes)
    out = {
        "mAP": float(np.mean(list(ap.values()))) if ap else 0.0,
        "classes_without_positives": float((~has_pos).sum()),
    }
    for name in ("head", "middle", "tail"):
        values = [v for c, v in ap.items() if (segment or {}).get(c) == name]
        if values:
            out[f"mAP_{name}"] = float(np.mean(values))
    return out


def f1_thresholds(y_true: np.ndarray, scores: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per class, the score threshold (predict positive at score >= it) with the best F1 on (N, C) 0/1 targets;
    `default` for a class without positives. Ties go to the higher threshold (fewer false positives)."""
    out = np.full(scores.shape[1], default, dtype=np.float64)
    for j in range(scores.shape[1]):
        y, s = y_true[:, j] > 0, scores[:, j]
        if not y.any():
            continue
        order = np.argsort(-s, kind="mergesort")
        ys, ss = y[order], s[order]
        last_of_tie = np.r_[np.diff(ss) != 0, True]
        tp = np.cumsum(ys)[last_of_tie]
        predicted = (np.arange(len(ys)) + 1)[last_of_tie]
        f1 = 2 * tp / (predicted + y.sum())
        out[j] = ss[last_of_tie][int(np.argmax(f1))]  # first maximum: the highest threshold reaching it
    return out
