"""Thumbnails for the report: one frame from the middle of each sample (of its segment, where it has one),
decoded once, small JPEGs cached under `<paths.cache>/<dataset>/thumbs/` by the video's path, size and mtime."""

from __future__ import annotations

import base64
import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm import tqdm

WIDTH = 112  # px; the height keeps the video's aspect


def thumb_file(cache: Path, video: Path, start: float | None, end: float | None) -> Path:
    stat = video.stat()
    key = f"{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{start}|{end}|{WIDTH}"
    return cache / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.jpg"


def middle_frame(video: Path, start: float | None, end: float | None) -> bytes:
    import decord
    from PIL import Image

    reader = decord.VideoReader(str(video), num_threads=1)
    n = len(reader)
    fps = reader.get_avg_fps() or 25.0
    if start is not None and end is not None and not (pd.isna(start) or pd.isna(end)):
        index = int((start + end) / 2 * fps)
    else:
        index = n // 2
    frame = reader[min(max(index, 0), n - 1)].asnumpy()
    image = Image.fromarray(frame)
    image = image.resize((WIDTH, max(1, round(WIDTH * image.height / image.width))))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def thumbnails(rows: pd.DataFrame, root: Path, cache: Path, workers: int = 4) -> dict[str, str]:
    """sample_id -> a data: URI of its thumbnail, for the rows (sample_id, path and optional start/end) whose
    video decodes; a video that does not is left out (the report shows its id alone)."""
    cache.mkdir(parents=True, exist_ok=True)

    def one(row) -> tuple[str, bytes | None]:
        start, end = row.get("start"), row.get("end")
        video = root / row["path"]
        try:
            path = thumb_file(cache, video, start, end)
            if not path.is_file():
                data = middle_frame(video, start, end)
                part = path.with_suffix(".part")
                part.write_bytes(data)
                part.replace(path)
            return row["sample_id"], path.read_bytes()
        except Exception:  # noqa: BLE001  an unreadable video gets no picture, never a failed report
            return row["sample_id"], None

    records = rows.to_dict("records")
    with ThreadPoolExecutor(workers) as pool:
        done = list(tqdm(pool.map(one, records), total=len(records), desc="thumbnails", disable=len(records) < 200))
    return {i: "data:image/jpeg;base64," + base64.b64encode(d).decode() for i, d in done if d is not None}
