"""`vidprobe audio`: each sample's `[start, end]` as 16 kHz mono FLAC under `<cache>/<dataset>/audio/`.

A video without an audio stream is recorded with `has_audio = false` and flows on (its speech
features are masked downstream); a file ffmpeg cannot read is recorded with its error; neither
stops the run. `audio.csv` lists every sample. Re-runs skip the files already cut.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm import tqdm
from vidprobe import layout
from vidprobe.artifacts import check_failures, failure_summary, read_manifest, writing
from vidprobe.config import Config
from vidprobe.features.audio import SAMPLE_RATE, AudioError, load_audio, write_flac
from vidprobe.features.files import require_space, write_table

COLUMNS = ["sample_id", "file", "has_audio", "seconds", "peak", "status", "error"]


def _num(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def cut(cfg: Config, row: dict) -> dict:
    """One sample: its FLAC (cut once), length and peak level, or why it has none."""
    sid = row["sample_id"]
    if not row.get("has_audio", True) or str(row.get("has_audio")).lower() == "false":
        return {
            "sample_id": sid,
            "file": "",
            "has_audio": False,
            "seconds": 0.0,
            "peak": 0.0,
            "status": "ok",
            "error": "no audio stream",
        }
    out = layout.flac(cfg, sid)
    try:
        if not out.is_file():
            write_flac(os.path.join(cfg.dataset.root, row["path"]), out, _num(row.get("start")), _num(row.get("end")))
        wave = load_audio(out)
    except AudioError as err:
        return {
            "sample_id": sid,
            "file": "",
            "has_audio": True,
            "seconds": 0.0,
            "peak": 0.0,
            "status": "error",
            "error": str(err),
        }
    return {
        "sample_id": sid,
        "file": str(out.relative_to(layout.audio_dir(cfg))),
        "has_audio": True,
        "seconds": len(wave) / SAMPLE_RATE,
        "peak": float(np.abs(wave).max(initial=0.0)),
        "status": "ok",
        "error": "",
    }


def run(cfg: Config) -> pd.DataFrame:
    manifest = read_manifest(cfg)
    rows = manifest[manifest.status == "ok"].to_dict("records")
    out = layout.audio_index(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    with writing(cfg, layout.audio_dir(cfg), f"audio of {cfg.dataset.name}"):
        todo = [r for r in rows if not layout.flac(cfg, r["sample_id"]).is_file()]
        seconds = sum(float(r.get("duration") or 0.0) for r in todo)  # segments are shorter: an upper bound
        require_space(
            out.parent,
            int(seconds * SAMPLE_RATE * 2) + (1 << 20),
            f"audio: {len(todo)} samples, {seconds:.0f} s as 16-bit FLAC (compression aside)",
        )
        results = Parallel(n_jobs=cfg.audio.num_workers, prefer="threads")(
            delayed(cut)(cfg, row) for row in tqdm(rows, desc="audio", unit="sample", dynamic_ncols=True)
        )
        table = pd.DataFrame(results, columns=COLUMNS)
        write_table(out, table)
    bad = table[table.status != "ok"]
    failure_summary(list(bad.error))
    silent = int(((table.peak < 1e-4) & table.has_audio & (table.status == "ok")).sum())
    print(
        f"audio: {int(table.has_audio.sum() - len(bad))} samples cut ({table.seconds.sum():.1f} s), "
        f"{int((~table.has_audio).sum())} without an audio stream, {silent} silent, {len(bad)} unreadable -> {out}"
    )
    check_failures(len(bad), cfg.audio.max_failures, "samples' audio could not be read", "audio.max_failures", out)
    return table
