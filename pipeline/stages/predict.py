"""`vidprobe predict`: a trained run on new videos.

The new videos (`predict.input`) become a dataset of their own (adapter `unlabelled`, split `predict`,
cached under `<paths.cache>/<predict name>/`), made exactly as the run's was: its saved config drives
`index`, `embed` and, for runs that read them, `audio`, `transcribe` and `text`, each run as its own
`vidprobe` command (as `dvc repro` runs them), so rows already cached are reused. The run's heads then
score every row: a video, or a window of it in `sampling.mode=windows`. A file that cannot be read is a
row with its status, never a stop. Writes `predictions.csv` and `.parquet`; the last line printed is the
CSV's path.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from vidprobe import layout
from vidprobe.adapters.base import read_table, read_text, require_columns
from vidprobe.artifacts import open_set, read_embed_failures, read_manifest, writing
from vidprobe.config import Config, ConfigError, RunFailed, dump_config, load_config, with_overrides
from vidprobe.features.files import write_table
from vidprobe.features.identity import feature_config, feature_hash, flatten
from vidprobe.features.rows import stored_rows
from vidprobe.heads.data import LabeledFeatures, features_of, missing_inputs
from vidprobe.heads.runs import load_run

TIMELINE = {"sampling.mode", "sampling.window", "sampling.stride"}  # windows over a video: allowed to differ
TABLES = (".txt", ".csv", ".jsonl", ".json")


def run(cfg: Config) -> pd.DataFrame:
    if not cfg.predict.input:
        raise ConfigError(
            "predict.input: name the new videos: a folder, a glob ('clips/*.mp4'), a .txt of paths, "
            "or a CSV with a path column"
        )
    run_dir = layout.run_dir(cfg)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"run.name: no trained run at {run_dir}: run `vidprobe train` first, or name another run")
    trained = load_config(run_dir / "config.yaml")
    bundle = load_run(run_dir)
    check_features(cfg, trained, run_dir)
    name = layout.predict_dataset(cfg)
    out = layout.predict_dir(cfg, name)
    out.mkdir(parents=True, exist_ok=True)
    with writing(cfg, out, f"predictions of {cfg.run.name} on {name}"):
        return predict_into(out, cfg, trained, bundle, name)


def predict_into(out: Path, cfg: Config, trained: Config, bundle, name: str) -> pd.DataFrame:
    new = videos_config(cfg, trained, name, out)
    dump_config(new, out / "config.yaml")
    for stage in stages_for(new):
        command = [sys.executable, "-m", "vidprobe", stage, "-c", str(out / "config.yaml")]
        if subprocess.run(command).returncode != 0:
            raise RunFailed(f"predict: `vidprobe {stage} -c {out / 'config.yaml'}` failed (see above)")
    table = score(new, bundle)
    write_table(out / "predictions.csv", table)
    table.to_parquet(out / "predictions.parquet", index=False)
    ok = table.status == "ok"
    kinds = ", ".join(f"{n} {k}" for k, n in table.status[~ok].value_counts().items()) or "none"
    print(
        f"predict {cfg.run.name}: {table.sample_id.nunique()} videos, {int(ok.sum())} rows predicted; "
        f"not read: {kinds}\n{out / 'predictions.csv'}"
    )
    return table


def check_features(cfg: Config, trained: Config, run_dir: Path) -> None:
    """The features this config computes are the ones the run was trained on (windows over a video aside)."""
    mine, theirs = (flatten(feature_config(c.sampling, c.backbone, c.embed.storage_dtype)) for c in (cfg, trained))
    allowed = TIMELINE if cfg.sampling.mode == "windows" else set()
    differ = [
        f"{k}: {theirs.get(k)!r} there, {mine.get(k)!r} here"
        for k in sorted(mine.keys() | theirs.keys())
        if mine.get(k) != theirs.get(k) and k not in allowed
    ]
    if differ:
        raise ConfigError(
            f"predict: {run_dir} was trained on other features than this config computes:\n  "
            + "\n  ".join(differ)
            + f"\nPredict with the run's own config: -c {run_dir / 'config.yaml'}"
        )


def videos_config(cfg: Config, trained: Config, name: str, out: Path) -> Config:
    """The run's config, over the new videos: where they are, where their cache goes, how to run here."""
    root, table = inputs(cfg.predict.input, out)
    here = {
        k: v
        for k, v in flatten(cfg.to_dict()).items()
        if k.split(".")[0] in ("index", "audio")
        or k in ("paths.cache", "backbone.device", "backbone.compile")
        or k.startswith("embed.")
        and k not in ("embed.feature_set", "embed.storage_dtype")
    }
    if cfg.sampling.mode == "windows":
        here.update({k: v for k, v in flatten(cfg.to_dict()).items() if k in TIMELINE})
    return with_overrides(
        trained,
        {
            **here,
            "dataset.adapter": "unlabelled",
            "dataset.root": str(root),
            "dataset.table": table,
            "dataset.name": name,
            "dataset.splits": ["predict"],
            "dataset.metadata": None,
            "dataset.traits": [],
            "dataset.columns": [],
            "dataset.val_fraction": 0.0,
            "index.max_failures": None,
            "embed.max_failures": None,
            "audio.max_failures": None,
            "embed.num_shards": None,
            "embed.shard_index": None,
            "embed.force": False,
            "index.describe": False,
        },
    )


def inputs(spec: str, out: Path) -> tuple[Path, str | None]:
    """(dataset.root, dataset.table) of `predict.input`: a folder as it is; a table of paths, a glob or one video
    as a table in `out` with paths relative to the folder that holds them all."""
    path = Path(spec)
    if path.is_dir():
        return path.resolve(), None
    if path.is_file() and path.suffix.lower() in TABLES:
        table = (
            pd.DataFrame({"path": [p for p in map(str.strip, read_text(path).splitlines()) if p and p[0] != "#"]})
            if path.suffix.lower() == ".txt"
            else read_table(path)
        )
        require_columns(table, ["path"], path)
        table["path"] = [(path.parent / p).resolve() for p in table.path.astype(str)]
    else:
        found = [Path(p).resolve() for p in sorted(glob.glob(spec, recursive=True)) if Path(p).is_file()]
        if not found:
            raise ConfigError(f"predict.input: {spec!r} is no folder, table or video, and matches no file")
        table = pd.DataFrame({"path": found})
    root = Path(os.path.commonpath([p.parent for p in table.path]))
    table["path"] = [p.relative_to(root).as_posix() for p in table.path]
    return root, str(write_table(out / "inputs.csv", table).resolve())


def stages_for(cfg: Config) -> list[str]:
    """The commands that make what the run's heads read: video features, and Whisper / transcript sets."""
    own = layout.video_set_name(cfg)
    sets = {cfg.head.feature_spec(own)[0]} | {name for _, name, _ in cfg.head.fused_specs(own)}
    speech, text = layout.whisper_set_name(cfg), layout.text_set_name(cfg)
    unknown = sorted(sets - {own, speech, text})
    if unknown:
        raise ConfigError(
            f"predict: the run reads feature sets {unknown}, which predict cannot make for new videos "
            f"(it makes {own}, {speech} and {text})"
        )
    return (
        ["index", "embed"]
        + (["audio", "transcribe"] if sets & {speech, text} else [])
        + (["text"] if text in sets else [])
    )


def score(cfg: Config, bundle) -> pd.DataFrame:
    """One row per stored row (video or window): where it is, the heads' predictions; a row per unreadable video."""
    manifest = read_manifest(cfg).set_index("sample_id")
    fs = open_set(cfg, layout.video_set_name(cfg), "embed.feature_set")
    fs.require_hash(*feature_hash(cfg.sampling, cfg.backbone, cfg.embed.storage_dtype))
    rows = stored_rows(fs)
    fused = [
        (spec, open_set(cfg, name, f"head.fuse: {spec!r}"), key)
        for spec, name, key in cfg.head.fused_specs(fs.dir.name)
    ]
    x, dims = features_of(cfg.head, fs, rows.ids, "predict", fused)
    data = LabeledFeatures(rows.ids, x, None, None, None, dims)
    pred, _, _ = bundle.predict(data, cfg.head, (cfg.text.model, cfg.backbone), top_k=cfg.predict.top_k)
    spans = (
        np.round(rows.spans.astype(np.float64), 3) if rows.spans is not None else np.full((len(rows.ids), 2), np.nan)
    )
    where = pd.DataFrame(
        {
            "sample_id": rows.sources,
            "row": rows.ids,
            "path": [os.path.join(cfg.dataset.root, manifest.path[s]) for s in rows.sources],
            "start": spans[:, 0],
            "end": spans[:, 1],
            "status": "ok",
            "error": "",
        }
    )
    if dims:
        where["missing"] = missing_inputs(cfg.head, data)
    table = pd.concat([where, pred.drop(columns="sample_id")], axis=1)
    failed = read_embed_failures(cfg)
    lost = [
        (sid, *(failed.get(sid) or (r.status, r.error)))
        for sid, r in manifest.iterrows()
        if r.status != "ok" or sid in failed
    ]
    if lost:
        bad = pd.DataFrame(lost, columns=["sample_id", "status", "error"])
        bad.insert(1, "path", [os.path.join(cfg.dataset.root, manifest.path[s]) for s in bad.sample_id])
        table = pd.concat([table, bad], ignore_index=True)
    return table
