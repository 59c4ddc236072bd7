"""The report's static figures, drawn with matplotlib (the most widely kept plotting library; it needs no
JavaScript and no network) as inline SVG: text stays text, so a figure is a few KiB and searchable."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd

SEGMENTS = {"head", "middle", "tail"}
SCORES = {"acc", "macro_f1", "top5", "mAP", "spearman", "pearson", "ccc"}  # validation metrics drawn per epoch
PALETTE = ["#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5", "#9c6b4e", "#9498a0"]


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    pyplot.rcParams.update(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "vidprobe",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    return pyplot


def svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt().close(fig)
    text = re.sub(r"^.*?(<svg)", r"\1", buffer.getvalue(), count=1, flags=re.S)  # no XML prolog inside HTML
    return re.sub(r"<metadata>.*?</metadata>", "", text, count=1, flags=re.S)  # matplotlib's RDF credits


def learning_curves(history: dict[str, pd.DataFrame]) -> str:
    """Loss (train and val) and the validation metrics per epoch, one panel each per head."""
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 2 * len(history), figsize=(4.2 * len(history) * 2, 2.8), squeeze=False)
    for n, (name, h) in enumerate(history.items()):
        loss, metrics = axes[0][2 * n], axes[0][2 * n + 1]
        for column, colour in (("train_loss", PALETTE[0]), ("val_loss", PALETTE[2])):
            if column in h:
                loss.plot(h.epoch, h[column], color=colour, label=column.replace("_", " "))
        loss.set(
            title=f"{name}: loss", xlabel="epoch", yscale="log" if (h.filter(like="loss") > 0).all().all() else "linear"
        )
        loss.legend(frameon=False)
        scores = [c for c in h.columns if c.split("/")[0] in SCORES]  # on one 0-1 scale (no MAE)
        shown = ([c for c in scores if c.endswith("/mean")] or scores)[:4]  # several traits: their means
        for i, column in enumerate(shown):
            metrics.plot(h.epoch, h[column], color=PALETTE[(i + 3) % len(PALETTE)], label=column)
        metrics.set(title=f"{name}: validation", xlabel="epoch")
        if shown:
            metrics.legend(frameon=False)
    return svg(fig)


def confusion(actual: pd.Series, predicted: pd.Series, classes: list[str]) -> str:
    """Counts, rows the true class; each row's share shades the cell."""
    from sklearn.metrics import confusion_matrix

    pyplot = plt()
    counts = confusion_matrix(actual.astype(str), predicted.astype(str), labels=classes)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(9, 1.6 + 0.45 * len(classes))
    fig, ax = pyplot.subplots(figsize=(size, size))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=60, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set(xlabel="predicted", ylabel="true")
    if len(classes) <= 30:
        for i in ticks:
            for j in ticks:
                if counts[i, j]:
                    ax.text(
                        j, i, counts[i, j], ha="center", va="center", color="white" if share[i, j] > 0.5 else "black"
                    )
    return svg(fig)


def per_class_ap(table: pd.DataFrame) -> str:
    """AP per class, worst first (the 20 worst and the 20 best of more), coloured by long-tail segment where the
    table has one."""
    pyplot = plt()
    t = table.dropna(subset=["ap"]).sort_values("ap").assign(segment=table.get("segment", ""))
    order = [s for s in ("head", "middle", "tail") if s in set(t.segment)] + sorted(set(t.segment) - SEGMENTS)
    colours = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(order)}
    t = ends(t)
    fig, ax = pyplot.subplots(figsize=(5.5, min(12, 0.8 + 0.22 * len(t))))
    ax.barh(t["class"].astype(str), t["ap"], color=[colours.get(s, "#ccc") for s in t.segment])
    ax.set(xlabel="average precision", xlim=(0, 1))
    if len(colours) > 1:
        for s, c in colours.items():
            ax.barh([], [], color=c, label=s or "no segment")
        ax.legend(frameon=False, title="segment")
    return svg(fig)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> tuple[str, float]:
    """Accuracy against confidence in equal-width bins (the diagonal is calibrated), and the expected
    calibration error (ECE: the bins' |accuracy - confidence| weighed by their share of samples)."""
    pyplot = plt()
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    acc, conf, count = (
        np.array([f(k) for k in range(bins)])
        for f in (
            lambda k: correct[which == k].mean() if (which == k).any() else np.nan,
            lambda k: confidence[which == k].mean() if (which == k).any() else np.nan,
            lambda k: (which == k).sum(),
        )
    )
    ece = float(np.nansum(np.abs(acc - conf) * count) / max(len(confidence), 1))
    fig, ax = pyplot.subplots(figsize=(3.6, 3.4))
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1)
    ax.bar(edges[:-1], np.nan_to_num(acc), width=1 / bins, align="edge", color=PALETTE[0], alpha=0.8, edgecolor="white")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=f"ECE {ece:.3f}")
    return svg(fig), ece


def trait_scatter(true: np.ndarray, pred: np.ndarray, trait: str, spearman: float, ccc: float) -> str:
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(3.4, 3.2))
    ax.scatter(true, pred, s=12, color=PALETTE[0], alpha=0.7)
    both = np.concatenate([true, pred])
    lo, hi = np.nanmin(both), np.nanmax(both)
    ax.plot([lo, hi], [lo, hi], color="#999", linestyle="--", linewidth=1)
    ax.set(xlabel=f"true {trait}", ylabel="predicted", title=f"{trait}: Spearman {spearman:.3f}, CCC {ccc:.3f}")
    return svg(fig)


def counts_bar(counts: pd.DataFrame) -> str:
    """Samples per class (rows) and split (columns), stacked (the 20 largest and the 20 smallest of more)."""
    pyplot = plt()
    counts = ends(counts)
    fig, ax = pyplot.subplots(figsize=(5.5, min(12, 0.9 + 0.24 * len(counts))))
    left = np.zeros(len(counts))
    for i, split in enumerate(counts.columns):
        ax.barh(counts.index.astype(str), counts[split], left=left, color=PALETTE[i % len(PALETTE)], label=split)
        left += counts[split].to_numpy()
    ax.set(xlabel="samples")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    return svg(fig)


def histograms(values: pd.DataFrame) -> str:
    """One histogram per trait column."""
    pyplot = plt()
    fig, axes = pyplot.subplots(1, len(values.columns), figsize=(3.2 * len(values.columns), 2.6), squeeze=False)
    for ax, column in zip(axes[0], values.columns):
        ax.hist(values[column].dropna(), bins=20, color=PALETTE[0], edgecolor="white")
        ax.set(title=column, ylabel="samples")
    return svg(fig)


def ends(rows: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """The first and last `n` rows of a sorted table, with a row of dots between them where some are left out
    (so that a bar chart of 400 classes stays readable)."""
    if len(rows) <= 2 * n:
        return rows
    gap = pd.DataFrame({c: [np.nan if pd.api.types.is_numeric_dtype(rows[c]) else ""] for c in rows.columns})
    gap.index = [f"... {len(rows) - 2 * n} more ..."]
    if "class" in gap:
        gap["class"] = gap.index
    return pd.concat([rows.head(n), gap, rows.tail(n)]).fillna({"segment": ""} if "segment" in rows else {})
