"""`vidprobe report` and the report `vidprobe probe` writes: one self-contained HTML file of a sweep (or a probe)
or a run. What it shows is read from what the stages wrote (vidprobe.report.gather); the figures are matplotlib's
(figures), the map and the gallery plain SVG and thumbnails (sections, thumbs), the page inline (page)."""

from __future__ import annotations

import datetime
from pathlib import Path

from vidprobe import __version__, layout
from vidprobe.features.files import write_text
from vidprobe.report import page, pictures, sections
from vidprobe.report.gather import best_of, features, projections, resolve, sample_rows, source
from vidprobe.report.thumbs import thumbnails

__all__ = ["best_of", "resolve", "write_report"]

MAP_POINTS = 2000  # samples drawn on the map, each with its thumbnail on hover (3-5 KiB each); more: a random draw


def write_report(target: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of `target` (a sweep, probe or run folder) to `out` (default `<target>/report.html`)."""
    src = source(Path(target))
    rows, x = features(src.cfg)
    drawn = sample_rows(len(rows), MAP_POINTS)
    maps = projections(x[drawn])
    mistakes = pictures.pick_gallery(src, rows, x)
    wanted = list(dict.fromkeys(rows.index[drawn].tolist() + mistakes.ids()))
    thumbs = thumbnails(
        rows.loc[wanted].reset_index(), Path(src.cfg.dataset.root), layout.dataset_dir(src.cfg) / "thumbs"
    )
    title = f"vidprobe report: {src.cfg.dataset.name}"
    what = f"sweep {src.dir.name}" if src.board is not None else f"run {src.dir.name}"
    subtitle = f"{what} · {len(rows)} samples · {datetime.date.today().isoformat()}"
    html = page.render(
        title,
        subtitle,
        [
            sections.data(src),
            sections.leaderboard(src),
            sections.best_run(src),
            pictures.feature_map(src, rows.iloc[drawn], maps, thumbs, len(rows)),
            pictures.gallery(src, mistakes, rows, thumbs),
            sections.provenance(src, __version__),
        ],
    )
    path = Path(out) if out else src.dir / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, html)
    print(f"report: {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return path
