"""`vidprobe caption`: Florence-2 captions of each sample's frames, as JSONL beside the transcripts.

One record per row the video feature set has: per sample, or per window in `sampling.mode=windows`
(`<sample_id>#w<j>`, over the same windows `embed` cuts). `caption.frames` frames are spread uniformly over
the sample or window (1: the middle one) and each is captioned; a record holds `id`, `sample_id`, `captions`
(`time` on the video's clock, `text`) and `text` (the captions joined). A video that cannot be decoded is
recorded with its error (`error`, empty text) and the run goes on. `vidprobe text text.source=captions`
embeds them as it embeds transcripts, and heads fuse them with `head.fuse`.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
from tqdm import tqdm
from vidprobe import layout
from vidprobe.artifacts import check_failures, clip_items, failure_summary, writing
from vidprobe.config import Config, ConfigError
from vidprobe.features.captions import Captioner
from vidprobe.features.devices import resolve_device
from vidprobe.features.files import write_text
from vidprobe.features.sampling import ClipPlan, Item, plan
from vidprobe.features.video import VideoError, open_video


def run(cfg: Config) -> dict:
    c = cfg.caption
    if not c.model:
        raise ConfigError(
            "caption.model: needs a Florence-2 hub id or local path, e.g. florence-community/Florence-2-base"
        )
    if c.frames < 1:
        raise ConfigError(f"caption.frames: {c.frames}; caption at least 1 frame per sample")
    captioner = Captioner(
        c.model, c.task, c.max_new_tokens, c.num_beams, c.min_new_tokens, str(resolve_device(c.device))
    )
    items, _ = clip_items(cfg)
    out = layout.captions(cfg)
    with writing(cfg, out, f"captions {layout.caption_set_name(cfg)}"):
        records, failures = [], []
        for it in tqdm(items, desc=f"caption {layout.caption_set_name(cfg)}", unit="sample", dynamic_ncols=True):
            try:
                p, frames, inverse = sample_frames(cfg, it)
            except Exception as err:  # noqa: BLE001 - any decoder failure is this video's (as in embed); run on
                video = isinstance(err, VideoError)
                kind, error = (err.kind, str(err)) if video else ("decode error", f"{it.path}: {err}")
                failures.append((kind, error))
                records.append(
                    {"id": it.sample_id, "sample_id": it.sample_id, "captions": [], "text": "", "error": error}
                )
                continue
            texts = np.asarray(captioner.caption(list(frames), c.batch_size))[inverse].reshape(p.indices.shape)
            records += sample_records(it.sample_id, p, texts, cfg.sampling.mode == "windows")
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    described = sum(bool(r["text"]) for r in records)
    print(
        f"caption: {len(records)} rows of {len(items)} samples ({described} with a caption, "
        f"failed: {failure_summary([e for _, e in failures], Counter(k for k, _ in failures))}) by {captioner.weights} -> {out}"
    )
    check_failures(len(failures), c.max_failures, "samples failed to decode", "caption.max_failures", out)
    return {"captions": out, "records": len(records), "failed": len(failures)}


def sample_frames(cfg: Config, it: Item) -> tuple[ClipPlan, np.ndarray, np.ndarray]:
    """What to caption in one sample: the plan (one row, or one per window: embed's windows, whatever
    sampling.fps picks inside them), its distinct frames decoded once, and where each planned frame is among them."""
    s = cfg.sampling
    reader = open_video(it.path, it.rotation, s.decoder)
    p = plan(
        reader.timestamps(),
        cfg.caption.frames,
        mode="windows" if s.mode == "windows" else "uniform",
        window=s.window,
        stride=s.stride,
        start=it.start,
        end=it.end,
    )
    uniq, inverse = np.unique(p.indices, return_inverse=True)
    return p, reader.get(list(uniq)), inverse.reshape(-1)


def sample_records(sample_id: str, p: ClipPlan, texts: np.ndarray, windows: bool) -> list[dict]:
    """The caption records of one sample, `texts` laid out as `p.indices`: one record, or one per window
    (ids as the video rows have them), the repeated captions of a record joined once."""
    records = []
    for j in range(len(p.indices)):
        caps = [{"time": round(float(t), 3), "text": str(x)} for t, x in zip(p.times[j], texts[j])]
        records.append(
            {
                "id": f"{sample_id}#w{j:04d}" if windows else sample_id,
                "sample_id": sample_id,
                "captions": caps,
                "text": " ".join(dict.fromkeys(c["text"] for c in caps if c["text"])),
            }
        )
    return records
