"""`vidprobe index`: list the dataset's samples, probe every video, write the manifest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from joblib import Parallel, delayed
from tqdm import tqdm

from features.video import VideoError, probe
from pipeline.adapters import list_samples
from pipeline.config import Config, ConfigError, RunFailed

PROBE_COLUMNS = ["duration", "fps", "num_frames", "width", "height", "rotation", "has_audio", "status", "error"]


def probe_sample(path: Path) -> dict:
    """Probe one video; an unusable file gives status=<kind> and a readable error, never an exception."""
    try:
        info = probe(str(path))
    except VideoError as err:
        return {"status": err.kind, "error": str(err)}
    except Exception as err:  # noqa: BLE001 - whatever the decoder raised is recorded against the file
        return {"status": "error", "error": f"{path}: {type(err).__name__}: {err}; re-encode or remove it"}
    return dict(duration=round(info.duration, 4), fps=round(info.fps, 4), num_frames=info.num_frames,
                width=info.width, height=info.height, rotation=info.rotation, has_audio=info.has_audio,
                status="ok", error="")


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
    kinds = ", ".join(f"{n} {k}" for k, n in bad.status.value_counts().items()) or "none"
    print(f"manifest: {len(df)} samples, usable by split {counts}; unusable: {kinds} -> {out}")
    limit = cfg.index.max_failures
    if limit is not None and len(bad) > limit:
        raise RunFailed(f"{len(bad)} videos are unusable (index.max_failures={limit}); see the error column of {out}")
    return df


def read_manifest(cfg: Config) -> pd.DataFrame:
    path = cfg.manifest_path()
    if not path.is_file():
        raise ConfigError(f"no manifest at {path}: run `vidprobe index` with the same config first")
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"sample_id": str, "path": str, "label": str})
