"""The README's pictures of a report: `python scripts/report_screenshots.py cache/reports/demo-sweep.html docs`
opens the report in headless Chromium (offline, as tests/browser.py does) and writes three PNGs: the page's top
(data and leaderboard), the best run's figures, and the map with the gallery, each at most 1600 px tall.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from tests.browser import visit  # noqa: E402

WIDTH = 1300
PARTS = {  # from the top of one section (None: the page's) to the next's
    "report-top.png": (None, "best"),
    "report-best.png": ("best", "map"),
    "report-map.png": ("map", "provenance"),
}


HOVER = """(() => {  // a point of the map hovered, so that its clip shows
  const c = document.querySelectorAll('svg.map:not(.off) circle')[5], r = c.getBoundingClientRect();
  const at = {bubbles: true, clientX: r.x + r.width / 2, clientY: r.y + r.height / 2};
  c.dispatchEvent(new MouseEvent('mouseover', at)); c.dispatchEvent(new MouseEvent('mousemove', at));
  return !document.getElementById('tip').hidden;
})()"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    tops = "Object.fromEntries(Array.from(document.querySelectorAll('section')).map(s => [s.id, s.offsetTop]))"
    first = visit(args.report, {"height": "document.body.scrollHeight"}, width=WIDTH, height=800)
    seen = visit(args.report, {"tops": tops, "hover": HOVER}, width=WIDTH, height=first.answers["height"])
    page = Image.open(io.BytesIO(seen.screenshot))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (start, end) in PARTS.items():
        top, bottom = (seen.answers["tops"][start] - 10 if start else 0), seen.answers["tops"][end]
        part = page.crop((0, top, WIDTH, min(bottom, top + 1600)))
        part.convert("RGB").quantize(256).save(args.out / name, optimize=True)  # a palette: a third of the bytes
        print(f"{args.out / name}: {part.size[0]}x{part.size[1]}, {(args.out / name).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
