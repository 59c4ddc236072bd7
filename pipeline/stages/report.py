"""`vidprobe report RUN|SWEEP`: the self-contained HTML report of a sweep, a probe or a run (vidprobe.report)."""

from __future__ import annotations

from pathlib import Path

from vidprobe.report import resolve, write_report


def run(target: str, out: str | None = None, cache: str = "cache") -> Path:
    return write_report(resolve(target, cache), out)
