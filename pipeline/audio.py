"""`vidprobe audio`: each sample's `[start, end]` as 16 kHz mono FLAC under `<cache>/<dataset>/audio/`.

A video without an audio stream is recorded with `has_audio = false` and flows on (its speech
features are masked downstream); a file ffmpeg cannot read is recorded with its error; neither
stops the run. `audio.csv` lists every sample. Re-runs skip the files already cut.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm import tqdm

from features.audio import SAMPLE_RATE, AudioError, load_audio, write_flac
from pipeline.config import Config, ConfigError, RunFailed
from pipeline.index import read_manifest

COLUMNS = ["sample_id", "file", "has_audio", "seconds", "peak", "status", "error"]


def audio_dir(cfg: Config) -> Path:
    return Path(cfg.paths.cache) / cfg.dataset.name / "audio"


def flac_path(cfg: Config, sample_id: str) -> Path:
    return audio_dir(cfg) / "clips" / f"{sample_id.lstrip('/').replace('..', '__')}.flac"


def _num(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def cut(cfg: Config, row: dict) -> dict:
    """One sample: its FLAC (cut once), length and peak level, or why it has none."""
    sid = row["sample_id"]
    if not row.get("has_audio", True) or str(row.get("has_audio")).lower() == "false":
        return {"sample_id": sid, "file": "", "has_audio": False, "seconds": 0.0, "peak": 0.0, "status": "ok",
                "error": "no audio stream"}
    out = flac_path(cfg, sid)
    try:
        if not out.is_file():
            write_flac(os.path.join(cfg.dataset.root, row["path"]), out, _num(row.get("start")), _num(row.get("end")))
        wave = load_audio(out)
    except AudioError as err:
        return {"sample_id": sid, "file": "", "has_audio": True, "seconds": 0.0, "peak": 0.0, "status": "error",
                "error": str(err)}
    return {"sample_id": sid, "file": str(out.relative_to(audio_dir(cfg))), "has_audio": True,
            "seconds": len(wave) / SAMPLE_RATE, "peak": float(np.abs(wave).max(initial=0.0)), "status": "ok", "error": ""}


def read_audio_index(cfg: Config) -> pd.DataFrame:
    path = audio_dir(cfg) / "audio.csv"
    if not path.is_file():
        raise ConfigError(f"no audio index at {path}: run `vidprobe audio` with the same config first")
    return pd.read_csv(path, keep_default_na=False, dtype={"sample_id": str, "file": str, "error": str})


def samples_with_audio(cfg: Config) -> pd.DataFrame:
    """audio.csv joined to the manifest's start (the clock offset of each sample's audio)."""
    audio = read_audio_index(cfg)
    manifest = read_manifest(cfg).set_index("sample_id")
    start = manifest["start"] if "start" in manifest else pd.Series(0.0, index=manifest.index)
    audio["start"] = audio.sample_id.map(start.fillna(0.0)).fillna(0.0).astype(float)
    return audio


def run(cfg: Config) -> pd.DataFrame:
    manifest = read_manifest(cfg)
    rows = manifest[manifest.status == "ok"].to_dict("records")
    results = Parallel(n_jobs=cfg.audio.num_workers, prefer="threads")(
        delayed(cut)(cfg, row) for row in tqdm(rows, desc="audio", unit="sample", dynamic_ncols=True))
    table = pd.DataFrame(results, columns=COLUMNS)
    out = audio_dir(cfg) / "audio.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_name("audio.csv.partial"), index=False)
    os.replace(out.with_name("audio.csv.partial"), out)
    bad = table[table.status != "ok"]
    for err in bad.error:
        print(f"warning: {err}")
    silent = int(((table.peak < 1e-4) & table.has_audio & (table.status == "ok")).sum())
    print(f"audio: {int(table.has_audio.sum() - len(bad))} samples cut ({table.seconds.sum():.1f} s), "
          f"{int((~table.has_audio).sum())} without an audio stream, {silent} silent, {len(bad)} unreadable -> {out}")
    limit = cfg.audio.max_failures
    if limit is not None and len(bad) > limit:
        raise RunFailed(f"{len(bad)} samples' audio could not be read (audio.max_failures={limit}); see {out}")
    return table
