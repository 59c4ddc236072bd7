"""The report's sections as HTML fragments: the data, the leaderboard, the best run, the map of the features,
the gallery of mistakes and their neighbours, and the provenance."""

from __future__ import annotations

import json
from collections import Counter
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from vidprobe import layout
from vidprobe.heads.metrics import ccc, spearman
from vidprobe.report import figures
from vidprobe.report.gather import BASELINE, Source

SHOWN_METRICS = ("acc", "macro_f1", "top5", "mAP", "spearman/mean", "ccc/mean", "pearson/mean", "mae/mean")


def table(df: pd.DataFrame, cls: str = "", sortable: bool = False) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    rows = []
    for _, row in df.iterrows():
        cells = "".join(f"<td>{escape(str(v))}</td>" for v in row)
        rows.append(f"<tr>{cells}</tr>")
    attrs = f' class="{cls}{" sortable" if sortable else ""}"'
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def shown(path: Path) -> str:
    """A path as the reader knows it: relative to where the report was made when it lies below, else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


def data(src: Source) -> str:
    m, cfg = src.manifest, src.cfg
    parts = []
    if src.probe:
        parts.append(
            "<ul class='inferred'>" + "".join(f"<li>{escape(x)}</li>" for x in src.probe["inferred"]) + "</ul>"
        )
    else:
        parts.append(
            f"<p>Dataset <b>{escape(cfg.dataset.name)}</b> ({escape(cfg.dataset.adapter)} layout) at "
            f"<code>{escape(str(cfg.dataset.root))}</code>.</p>"
        )
    ok = m[m.status == "ok"]
    counts = ok.groupby("split").size().reindex(cfg.dataset.splits).fillna(0).astype(int)
    parts.append(table(pd.DataFrame({"split": counts.index, "samples": counts.values}), "compact"))
    label = cfg.task.label
    if label and label in ok:
        per = (
            ok.groupby([label, "split"]).size().unstack(fill_value=0).reindex(columns=cfg.dataset.splits, fill_value=0)
        )
        parts.append(
            "<h3>Samples per class and split</h3>"
            + figures.counts_bar(per.sort_values(list(per.columns), ascending=False))
        )
    traits = [t for t in cfg.task.traits if t in ok]
    if traits:
        parts.append("<h3>Traits</h3>" + figures.histograms(ok[traits]))
    parts.append("<h3>Failures</h3>" + failures(src))
    return section("data", "Data", "".join(parts))


def failures(src: Source) -> str:
    m = src.manifest
    rows = [(r.status, r.path, r.error) for r in m[m.status != "ok"].itertuples()]
    fs_dir = layout.feature_set(src.cfg)
    by_id = m.set_index("sample_id").path.to_dict()
    for record in sorted(fs_dir.glob("failures-*.json")):
        for f in json.loads(record.read_text()):
            rows.append(
                (f"embed: {f.get('kind', 'failed')}", by_id.get(f["sample_id"], f["sample_id"]), f.get("error", ""))
            )
    if not rows:
        return "<p class='good'>None: every video was read and embedded.</p>"
    kinds = Counter(k for k, _, _ in rows)
    summary = ", ".join(f"{n} {k}" for k, n in kinds.most_common())
    listing = pd.DataFrame(rows, columns=["kind", "file", "error"])
    return f"<p class='bad'>{escape(summary)}</p><details><summary>the files</summary>{table(listing, 'compact')}</details>"


def leaderboard(src: Source) -> str:
    if src.board is None:
        shown = {k: v for k, v in src.val_metrics.items() if k in SHOWN_METRICS or "/" not in k}
        body = "<p>One run (no sweep): its validation metrics.</p>" + table(
            pd.DataFrame({"metric": list(shown), "val": [f"{v:.4f}" for v in shown.values()]}), "compact"
        )
        return section("leaderboard", "Leaderboard", body)
    b = src.board
    metrics = [src.metric] + [m for m in SHOWN_METRICS if m != src.metric and f"{m} mean" in b]
    head = ["#", "config"] + (["backbone"] if "backbone" in b else []) + metrics + ["seeds", "diverged"]
    rows = []
    for rank, row in enumerate(b.itertuples(index=False), 1):
        r = dict(zip(b.columns, row))
        baseline = str(r["config"]).startswith(BASELINE)
        diverged = int(r.get("diverged", 0) or 0)
        cells = [
            f"<td data-v='{rank}'>{rank}</td>",
            f"<td>{escape(str(r['config']))}"
            + (" <span class='tag'>baseline</span>" if baseline else "")
            + (f" <span class='tag warn'>{diverged} diverged</span>" if diverged else "")
            + "</td>",
        ]
        if "backbone" in b:
            cells.append(f"<td>{escape(str(r['backbone']))}</td>")
        for m in metrics:
            mean, std = r.get(f"{m} mean"), r.get(f"{m} std")
            text = "—" if pd.isna(mean) else f"{mean:.4f} ± {0 if pd.isna(std) else std:.4f}"
            cells.append(f"<td data-v='{'' if pd.isna(mean) else mean}'>{text}</td>")
        cells += [
            f"<td data-v='{r.get('seeds', '')}'>{r.get('seeds', '')}</td>",
            f"<td data-v='{diverged}'>{diverged}</td>",
        ]
        rows.append(
            f"<tr class='{'baseline' if baseline else ''}{' diverged' if diverged else ''}'>{''.join(cells)}</tr>"
        )
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = (
        f"<p>Mean ± std over seeds on the validation split, best first by <b>{escape(src.metric)}</b>; "
        "click a column to sort. Baselines are scikit-learn's logistic regression / ridge on the same features.</p>"
        f"<div class='scroll'><table class='sortable' id='board'><thead><tr>{header}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    return section("leaderboard", "Leaderboard", body)


def best_run(src: Source) -> str:
    cfg, p = src.cfg, src.predictions
    parts = [
        f"<p>Run <code>{escape(shown(src.run))}</code>: head <b>{escape(cfg.head.name)}</b>, "
        f"features <code>{escape(cfg.head.features)}</code>, shown on the <b>{src.split}</b> split.</p>"
    ]
    keys = [k for k in src.metrics if k in SHOWN_METRICS or k.startswith(("spearman/", "ccc/", "mAP/"))]
    parts.append(
        table(
            pd.DataFrame(
                {
                    "metric": keys,
                    src.split: [f"{src.metrics[k]:.4f}" for k in keys],
                    "val": [f"{src.val_metrics.get(k, float('nan')):.4f}" for k in keys],
                }
            ),
            "compact",
        )
    )
    history = {f.stem: pd.read_csv(f, sep="\t") for f in sorted((src.run / "history").glob("*.tsv"))}
    if history:
        parts.append("<h3>Learning curves</h3>" + figures.learning_curves(history))
    if cfg.task.label and "pred" in p:
        classes = [c[len("prob/") :] for c in p.columns if c.startswith("prob/")]
        parts.append(
            "<div class='row'><div><h3>Confusion matrix</h3>"
            + figures.confusion(p["label"], p["pred"], classes)
            + "</div>"
        )
        fig, ece = figures.reliability(p["confidence"].to_numpy(float), (p["label"] == p["pred"]).to_numpy(float))
        parts.append(
            f"<div><h3>Calibration</h3>{fig}<p>Expected calibration error {ece:.3f} (10 bins).</p></div></div>"
        )
    for name, ap in sorted(src.per_class_ap.items()):
        multi = "multilabel" in name
        ap, note = long_tail(ap, None if multi else train_counts(src))
        parts.append(
            f"<h3>Average precision per class ({'multi-label' if multi else 'classes'}, {src.split})</h3>"
            f"<p>{escape(note)}</p>" + figures.per_class_ap(ap)
        )
    scatters = []
    for trait in cfg.task.traits:
        if trait in p and f"pred/{trait}" in p:
            t, q = p[trait].to_numpy(float), p[f"pred/{trait}"].to_numpy(float)
            keep = ~(np.isnan(t) | np.isnan(q))
            scatters.append(
                figures.trait_scatter(t[keep], q[keep], trait, spearman(t[keep], q[keep]), ccc(t[keep], q[keep]))
            )
    if scatters:
        parts.append(
            "<h3>Traits: predicted against true</h3><div class='row'>"
            + "".join(f"<div>{s}</div>" for s in scatters)
            + "</div>"
        )
    return section("best", "Best run", "".join(parts))


def provenance(src: Source, version: str) -> str:
    text = yaml.safe_dump(src.cfg.to_dict(), sort_keys=False)
    body = (
        f"<p>vidprobe {escape(version)}; the best run's resolved config (what made it, as "
        f"<code>{escape(shown(src.run / 'config.yaml'))}</code> holds it).</p>"
        f"<details><summary>config</summary><pre>{escape(text)}</pre></details>"
    )
    return section("provenance", "Provenance", body)


def train_counts(src: Source) -> pd.Series:
    """Training samples per class (of the readable videos)."""
    m, label = src.manifest, src.cfg.task.label
    return m[(m.status == "ok") & (m.split == "train")][label].astype(str).value_counts()


def long_tail(ap: pd.DataFrame, counts: pd.Series | None) -> tuple[pd.DataFrame, str]:
    """The AP table with each class's long-tail segment, and a line saying where the segments come from: the
    dataset's own (a multi-label class file), else thirds of the classes by training count (`counts`) where the
    most frequent class has at least twice the samples of the rarest."""
    ap = ap.assign(**{"class": ap["class"].astype(str), "segment": ap.get("segment", pd.Series(dtype=str))})
    ap["segment"] = ap.segment.astype(object).where(ap.segment.notna(), "").astype(str)
    if (ap.segment != "").any():
        return ap, "Segments: the dataset's head / middle / tail classes by training count."
    if counts is None or counts.empty:
        return ap, ""
    n = ap["class"].map(counts).fillna(0).astype(int)
    ap["class"] = ap["class"] + " (" + n.astype(str) + ")"
    if len(counts) < 3 or counts.max() < 2 * max(counts.min(), 1):
        return ap, f"Training samples per class in brackets: {counts.min()}–{counts.max()}, no long tail."
    rank = n.rank(method="first", ascending=False) / len(n)
    ap["segment"] = np.where(rank <= 1 / 3, "head", np.where(rank <= 2 / 3, "middle", "tail"))
    return ap, (
        "Training samples per class in brackets; segments are thirds of the classes by training count "
        "(head: the most frequent third). mAP head / middle / tail: "
        + " / ".join(f"{ap[ap.segment == s].ap.mean():.3f}" for s in ("head", "middle", "tail"))
        + "."
    )
