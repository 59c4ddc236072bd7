"""`vidprobe report` on a sweep and on a run, and the numbers the report computes itself (calibration, long-tail
segments, the map, neighbours), each against a direct computation."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from vidprobe.cli import main
from vidprobe.report import figures, gather
from vidprobe.report.sections import long_tail
from vidprobe.stages import embed, index, sweep, train

SECTIONS = ["data", "leaderboard", "best", "map", "gallery", "provenance"]


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_report_of_a_sweep_and_of_a_run(demo_cfg, tmp_path, capsys):
    cfg = demo_cfg(
        "sweep.grid={head.lr: [0.1, 0.001]}", "sweep.seeds=[0, 1]", "head.epochs=20", "run.name=one", "sweep.n_jobs=1"
    )
    index.run(cfg)
    embed.run(cfg)
    board = sweep.run(cfg)
    folder = Path(cfg.paths.cache) / "runs" / "sweep"
    before = files_under(folder)

    out = tmp_path / "reports" / "sweep.html"
    assert main(["report", "sweep", f"paths.cache={cfg.paths.cache}", "--out", str(out)]) == 0
    assert f"report: {out}" in capsys.readouterr().out
    assert files_under(folder) == before  # the report writes nothing into the sweep (a DVC stage's output)
    html = out.read_text()
    assert re.findall(r'<section id="([a-z]+)">', html) == SECTIONS
    assert not re.search(r"""(src|href)=["']?(https?:|//)|url\((?!#)|@import""", html)  # nothing to fetch: offline
    best = board[~board.config.str.startswith("baseline")].iloc[0].config
    assert f"/{best}/seed" in html  # the best configuration's best seed is the run shown
    assert html.count("<tr class='baseline") == 1
    assert html.count("data-i=") == 2 * 28  # PCA and t-SNE: a point per sample each
    assert "shown on the <b>test</b> split" in html

    # one run, by name under the cache's runs/, into its folder
    train.run(cfg)
    assert main(["report", "one", f"paths.cache={cfg.paths.cache}"]) == 0
    html = (Path(cfg.paths.cache) / "runs" / "one" / "report.html").read_text()
    assert "One run (no sweep)" in html and re.findall(r'<section id="([a-z]+)">', html) == SECTIONS

    assert main(["report", "nothing-here", f"paths.cache={cfg.paths.cache}"]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["report", str(Path(cfg.paths.cache) / cfg.dataset.name)]) == 2
    assert "neither a leaderboard.csv" in capsys.readouterr().err


def test_expected_calibration_error_as_defined():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.25, 1, 500)
    correct = (rng.uniform(0, 1, 500) < confidence**2).astype(float)
    _, ece = figures.reliability(confidence, correct, bins=10)
    expected = 0.0
    for lo in np.arange(10) / 10:
        inside = (confidence >= lo) & (confidence < lo + 0.1) if lo < 0.9 else confidence >= lo
        if inside.any():
            expected += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    assert ece == pytest.approx(expected)


def test_long_tail_segments_are_thirds_of_the_classes_by_training_count():
    counts = pd.Series({"a": 300, "b": 120, "c": 60, "d": 30, "e": 9, "f": 3})
    ap = pd.DataFrame({"class": list("fedcba"), "positives": 1, "ap": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]})
    table, note = long_tail(ap, counts)
    segment = dict(zip(table["class"], table.segment))
    assert segment == {
        "a (300)": "head",
        "b (120)": "head",
        "c (60)": "middle",
        "d (30)": "middle",
        "e (9)": "tail",
    } | {"f (3)": "tail"}
    assert "0.550 / 0.350 / 0.150" in note  # mAP head / middle / tail
    balanced, note = long_tail(ap, pd.Series(dict.fromkeys("abcdef", 8)))
    assert (balanced.segment == "").all() and "no long tail" in note
    own = ap.assign(segment=["tail"] * 3 + ["head"] * 3)  # a multi-label dataset's own segments win
    assert list(long_tail(own, None)[0].segment) == ["tail"] * 3 + ["head"] * 3


def test_maps_neighbours_and_the_random_draw():
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(0, 1, (40, 16)), rng.normal(6, 1, (40, 16))]).astype(np.float32)
    maps = gather.projections(x)
    assert set(maps) == {"PCA", "t-SNE"} and maps["PCA"].xy.shape == (80, 2)
    assert maps["PCA"].axes[0].startswith("PC 1 (")
    from sklearn.decomposition import PCA

    direct = PCA(2).fit_transform(x)
    assert np.allclose(np.abs(maps["PCA"].xy), np.abs(direct), atol=1e-3)  # the same up to each axis' sign
    assert set(gather.projections(x, tsne_max=50)) == {"PCA"}
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    pool = np.arange(2, 80)
    near = gather.neighbours(x, np.array([0, 79]), pool, k=3)
    for query, found in zip([0, 79], near):
        assert found == list(pool[np.argsort(-(unit[pool] @ unit[query]))[:3]])
    drawn = gather.sample_rows(10_000, 3000)
    assert len(drawn) == 3000 and len(set(drawn)) == 3000 and (np.diff(drawn) > 0).all()
    assert list(gather.sample_rows(5, 3000)) == [0, 1, 2, 3, 4]


def test_bar_charts_of_many_classes_keep_both_ends():
    counts = pd.DataFrame({"train": range(100, 0, -1)}, index=[f"c{i}" for i in range(100)])
    kept = figures.ends(counts, 20)
    assert list(kept.index[:20]) == [f"c{i}" for i in range(20)] and list(kept.index[-20:]) == [
        f"c{i}" for i in range(80, 100)
    ]
    assert kept.index[20] == "... 60 more ..." and len(kept) == 41
    assert figures.ends(counts.head(40), 20).equals(counts.head(40))
