"""`vidprobe index`: list the dataset's samples, probe every video, write the manifest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
from joblib import Parallel, delayed
from tqdm import tqdm
from vidprobe import layout
from vidprobe.adapters import class_segments, list_samples
from vidprobe.artifacts import check_failures, failure_summary
from vidprobe.config import Config
from vidprobe.features.files import write_json, write_table
from vidprobe.features.video import PROBE_COLUMNS, probe_record

# Videos are probed in threads (index.num_workers): 2 threads probe ~1.6x as fast as one (2 cores, tiny clips).
# The rest is not the GIL: worker processes probing 1,000 paths per task are no faster (1.39 vs 1.43 ms a clip at
# 10,000 videos; one video at a time per task: 1.3x the time per clip at 100,000 and 2.3x the memory), and 3 or 4
# threads are slower than 2.


def run(cfg: Config) -> pd.DataFrame:
    df = list_samples(cfg.dataset)
    classes = df.attrs.get("classes")
    root = Path(cfg.dataset.root)
    probing = Parallel(
        n_jobs=cfg.index.num_workers,
        backend="threading",
        return_as="generator",
    )(delayed(probe_record)(str(root / p)) for p in df["path"])
    columns = {c: [] for c in PROBE_COLUMNS}  # kept by column as they come: a dict per video would cost ~1 KB
    for record in tqdm(probing, total=len(df), desc="probe", unit="video"):
        for c in PROBE_COLUMNS:
            columns[c].append(record.get(c))
    df = pd.concat([df.reset_index(drop=True), pd.DataFrame(columns)], axis=1)
    if "end" in df.columns:  # a segment must lie inside its video
        beyond = (df.status == "ok") & df.end.notna() & (df.end > df.duration + 0.5)
        df.loc[beyond, "status"] = "segment out of range"
        df.loc[beyond, "error"] = [
            f"{p}: segment ends at {e:.2f}s but the video lasts {d:.2f}s; fix start/end"
            for p, e, d in zip(df.path[beyond], df.end[beyond], df.duration[beyond])
        ]
    out = layout.manifest(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_table(out, df)
    segments = None
    if classes:  # the class list and its long-tail segments travel with the manifest
        info = class_segments(df, classes, cfg.dataset.segment_cutoffs)
        write_json(layout.classes_file(cfg), info)
        segments = info["segment"]
    bad = df[df.status != "ok"]
    kinds = failure_summary(list(bad.error), Counter(dict(bad.status.value_counts())))
    counts = df[df.status == "ok"].groupby("split").size().to_dict()
    print(f"manifest: {len(df)} samples, usable by split {counts}; unusable: {kinds} -> {out}")
    if cfg.index.describe:
        report = describe(df, cfg, segments)
        write_json(layout.describe_file(cfg), report)
        print_description(report)
    check_failures(
        len(bad), cfg.index.max_failures, "videos are unusable", "index.max_failures", f"the error column of {out}"
    )
    return df


def describe(df: pd.DataFrame, cfg: Config, segments: dict | None = None) -> dict:
    """Per split: samples, usable samples, failures by kind, class counts and trait distributions."""
    report = {}
    order = {s: i for i, s in enumerate(cfg.dataset.splits)}
    for split, rows in sorted(df.groupby("split"), key=lambda kv: (order.get(kv[0], len(order)), kv[0])):
        ok = rows[rows.status == "ok"]
        entry = {
            "samples": len(rows),
            "usable": len(ok),
            "failures": {k: int(n) for k, n in rows[rows.status != "ok"].status.value_counts().items()},
        }
        if "label" in rows and rows.label.notna().any():
            entry["classes"] = {str(k): int(n) for k, n in rows.label.value_counts().sort_index().items()}
        if "labels" in rows:  # multi-label: counts per class, and per long-tail segment
            names = rows.labels.dropna().astype(str).str.split("|").explode()
            entry["classes"] = {str(k): int(n) for k, n in names[names != ""].value_counts().sort_index().items()}
            if segments:
                entry["segments"] = {
                    seg: sum(1 for c in entry["classes"] if segments.get(c) == seg)
                    for seg in ("head", "middle", "tail")
                }
        for trait in cfg.dataset.traits:
            values = rows[trait]
            entry.setdefault("traits", {})[trait] = {
                "mean": float(values.mean()),
                "std": float(values.std()),
                "min": float(values.min()),
                "max": float(values.max()),
                "missing": int(values.isna().sum()),
            }
        report[str(split)] = entry
    return report


def print_description(report: dict) -> None:
    for split, entry in report.items():
        failures = ", ".join(f"{n} {k}" for k, n in entry["failures"].items()) or "none"
        print(f"{split}: {entry['samples']} samples, {entry['usable']} usable; failures: {failures}")
        classes = entry.get("classes", {})
        if classes:
            counts = sorted(classes.values())
            print(
                f"  {len(classes)} classes, {counts[0]}-{counts[-1]} samples each: "
                + ", ".join(f"{k} {n}" for k, n in list(classes.items())[:8])
                + (" ..." if len(classes) > 8 else "")
            )
        if "segments" in entry:
            print("  classes by train-count segment: " + ", ".join(f"{k} {n}" for k, n in entry["segments"].items()))
        for trait, d in entry.get("traits", {}).items():
            print(
                f"  {trait}: mean {d['mean']:.3g}, std {d['std']:.3g}, range [{d['min']:.3g}, {d['max']:.3g}], "
                f"{d['missing']} missing"
            )
