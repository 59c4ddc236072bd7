"""`vidprobe index`: list the dataset's samples, probe every video, write the manifest."""

from __future__ import annotations

from pathlib import Path

import ffmpeg
import pandas as pd
from joblib import Parallel, delayed
from tqdm import tqdm

from features.video import probe
from pipeline.adapters import list_samples
from pipeline.config import Config, ConfigError

PROBE_COLUMNS = ["duration", "fps", "num_frames", "has_audio", "status", "error"]


def probe_sample(path: Path) -> dict:
    """Probe one video; an unreadable file gives status='error' and the reason, never an exception."""
    try:
        info = probe(str(path))
        streams = ffmpeg.probe(str(path)).get("streams", [])
        has_audio = any(s.get("codec_type") == "audio" for s in streams)
        return dict(duration=round(info.duration, 4), fps=round(info.fps, 4), num_frames=info.num_frames,
                    has_audio=has_audio, status="ok", error="")
    except Exception as err:  # noqa: BLE001 - any decoder failure is recorded against the file
        msg = err.stderr.decode(errors="replace").strip().splitlines()[-1] if isinstance(err, ffmpeg.Error) else str(err)
        return dict(duration=None, fps=None, num_frames=None, has_audio=None, status="error",
                    error=f"cannot read {path}: {msg or type(err).__name__}; re-encode or remove the file")


def run(cfg: Config) -> pd.DataFrame:
    df = list_samples(cfg.dataset)
    root = Path(cfg.dataset.root)
    results = Parallel(n_jobs=cfg.index.num_workers, prefer="threads")(
        delayed(probe_sample)(root / p) for p in tqdm(df["path"], desc="probe", unit="video")
    )
    df = pd.concat([df.reset_index(drop=True), pd.DataFrame(results, columns=PROBE_COLUMNS)], axis=1)
    out = cfg.manifest_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    bad = df[df.status != "ok"]
    for err in bad.error:
        print(f"warning: {err}")
    counts = df[df.status == "ok"].groupby("split").size().to_dict()
    print(f"manifest: {len(df)} samples ({counts}), {len(bad)} unreadable -> {out}")
    return df


def read_manifest(cfg: Config) -> pd.DataFrame:
    path = cfg.manifest_path()
    if not path.is_file():
        raise ConfigError(f"no manifest at {path}: run `vidprobe index` with the same config first")
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"sample_id": str, "path": str, "label": str})
