"""`vidprobe probe` from a folder of videos (and a labels table) to a leaderboard and a report, and the report
itself opened in headless Chromium with the network off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import vidprobe
from vidprobe.cli import main

from tests.browser import find_chromium, visit

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"  # screenshots the browser test saves (git ignores it)
SECTIONS = ["data", "leaderboard", "best", "map", "gallery", "provenance"]
FAST = ["embed.num_workers=0", "index.num_workers=1"]


def probe(capsys, videos: Path, cache: Path, *args: str) -> tuple[int, str, str]:
    code = main(["probe", str(videos), "--backbone", "videomae-tiny-random", *args, f"paths.cache={cache}", *FAST])
    out = capsys.readouterr()
    return code, out.out, out.err


def flat_copy(demo_root: Path, target: Path, nested: bool = True) -> Path:
    """The demo's clips without split folders: <target>/<class>/<split>_<clip>.mp4 (or all in <target>)."""
    for video in sorted(demo_root.glob("*/*/*.mp4")):
        split, label = video.parts[-3], video.parts[-2]
        dest = target / label if nested else target
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(video, dest / f"{split}_{video.name}")
    return target


BACKBONES = "videomae-tiny-random,clip-tiny-random"


@pytest.fixture(scope="module")
def demo_probe(demo_root, tmp_path_factory):
    """`vidprobe probe` on the demo (split folders) with two backbones: its folder."""
    cache = tmp_path_factory.mktemp("probe") / "cache"
    assert main(["probe", str(demo_root), "--backbone", BACKBONES, f"paths.cache={cache}", *FAST]) == 0
    return cache / "runs" / "probe-data"


@pytest.mark.slow
def test_probe_compares_backbones_in_one_leaderboard(demo_probe):
    board = pd.read_csv(demo_probe / "leaderboard.csv")
    assert set(board.backbone) == set(BACKBONES.split(","))
    for name, rows in board.groupby("backbone"):
        assert len(rows) == 17 and rows.config.str.startswith("baseline").sum() == 1  # 16 heads and a baseline
        assert all(f"probe-data-{name}-" in r for r in rows.runs.dropna() if r)  # each in its own sweep
    assert board["acc mean"].is_monotonic_decreasing
    best = json.loads((demo_probe / "probe.json").read_text())["best"]
    heads = board[~board.config.str.startswith("baseline")]
    assert (best["backbone"], best["config"]) == (heads.iloc[0].backbone, heads.iloc[0].config)
    assert "| backbone | config |" in (demo_probe / "leaderboard.md").read_text()


@pytest.mark.slow
def test_probe_on_class_folders_without_splits(demo_root, tmp_path, capsys):
    videos = flat_copy(demo_root, tmp_path / "clips")
    code, out, err = probe(capsys, videos, tmp_path / "cache")
    assert code == 0, err
    assert out.splitlines()[0].startswith("videos: 28 files")  # what it inferred comes first
    assert "layout: class folders, 4 classes" in out and "split by a stable hash" in out
    folder = tmp_path / "cache" / "runs" / "probe-clips"
    board = pd.read_csv(folder / "leaderboard.csv")
    heads = board[~board.config.str.startswith("baseline")]
    assert len(heads) == 16 and (heads.seeds == 3).all()  # linear/mlp x 2 lr x 2 wd x 2 losses, 3 seeds
    assert board.config.str.startswith("baseline").sum() == 1
    assert board["acc mean"].is_monotonic_decreasing
    summary = json.loads((folder / "probe.json").read_text())
    best = summary["best"]
    assert best["config"] == heads.iloc[0].config
    # the best run's test metrics are what `vidprobe evaluate` gives on it
    again = vidprobe.evaluate(str(Path(best["run"]) / "config.yaml"))
    assert again == pytest.approx(best["test"])
    manifest = pd.read_csv(tmp_path / "cache" / "clips" / "manifest.csv")
    assert set(manifest.split) == {"train", "val", "test"}
    html = (folder / "report.html").read_text()
    assert all(f'<section id="{s}">' in html for s in SECTIONS)
    assert "split by a stable hash" in html  # the report states how it split

    shutil.copy(next(videos.glob("left/*.mp4")), videos / "left" / "added.mp4")
    code, out, err = probe(capsys, videos, tmp_path / "cache")
    assert code == 0, err
    assert "embedded 1 new samples" in out  # a second probe embeds only the new video


@pytest.mark.slow
def test_probe_on_a_trait_table(demo_root, tmp_path, capsys):
    videos = flat_copy(demo_root, tmp_path / "clips", nested=False)
    meta = pd.read_csv(demo_root / "metadata.csv")
    table = pd.DataFrame(
        {
            "id": [f"{p.split('/')[0]}_{Path(p).stem}" for p in meta.path],
            "speed": meta.speed,
            "brightness": meta.brightness,
        }
    )
    table.to_csv(tmp_path / "traits.csv", index=False)
    code, out, err = probe(capsys, videos, tmp_path / "cache", "--labels", str(tmp_path / "traits.csv"))
    assert code == 0, err
    assert "task: numeric traits speed, brightness (regression)" in out
    folder = tmp_path / "cache" / "runs" / "probe-clips"
    board = pd.read_csv(folder / "leaderboard.csv")
    assert "spearman/mean mean" in board and board.config.str.contains("regression_loss=ccc").any()
    best = json.loads((folder / "probe.json").read_text())["best"]
    assert vidprobe.evaluate(str(Path(best["run"]) / "config.yaml")) == pytest.approx(best["test"])
    html = (folder / "report.html").read_text()
    assert "predicted against true" in html and "Spearman" in html


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "rows name videos not found under"),
        ("one-class", "holds one class"),
        ("empty", "no videos in it or below"),
        ("loose", "outside any class folder"),
        ("no-traits", "nothing to learn"),
        ("no-model", "backbone.model: videomae needs a hub id or local path"),
    ],
)
def test_bad_input_is_exit_2_naming_the_file_and_writing_nothing(demo_root, tmp_path, capsys, case, message):
    videos = tmp_path / "clips"
    videos.mkdir()
    labels = tmp_path / "labels.csv"
    args = []
    if case in ("missing", "one-class"):
        flat_copy(demo_root, videos, nested=False)
        names = sorted(p.name for p in videos.glob("*.mp4"))
        rows = pd.DataFrame({"path": names + (["gone.mp4"] if case == "missing" else []), "label": "left"})
        if case == "missing":
            rows.loc[: len(rows) // 2, "label"] = "right"
        rows.to_csv(labels, index=False)
        args = ["--labels", str(labels)]
    elif case == "loose":
        flat_copy(demo_root, videos, nested=False)
    elif case == "no-traits":
        flat_copy(demo_root, videos, nested=False)
        pd.DataFrame({"path": sorted(p.name for p in videos.glob("*.mp4")), "note": "x"}).to_csv(labels, index=False)
        args = ["--labels", str(labels)]
    elif case == "no-model":  # a second backbone that cannot be loaded: found before the first is used
        flat_copy(demo_root, videos)
        args = ["--backbone", "videomae-tiny-random,videomae"]
    code, _, err = probe(capsys, videos, tmp_path / "cache", *args)
    assert code == 2
    assert message in err and "Traceback" not in err
    if case != "no-model":
        assert str(labels if "--labels" in args else videos) in err  # names the file
    assert not (tmp_path / "cache").exists()  # nothing written


def test_a_table_group_keeps_its_rows_in_one_split(tmp_path):
    from vidprobe.adapters import list_samples
    from vidprobe.config import load_config

    for i in range(40):
        (tmp_path / f"c{i}.mp4").write_bytes(b"")
    pd.DataFrame(
        {"path": [f"c{i}.mp4" for i in range(40)], "subject": [f"s{i // 4}" for i in range(40)], "score": range(40)}
    ).to_csv(tmp_path / "t.csv", index=False)
    cfg = load_config(
        None,
        [
            f"dataset.root={tmp_path}",
            "dataset.adapter=traits",
            "dataset.table=t.csv",
            "dataset.traits=[score]",
            "dataset.group=subject",
            "task.label=null",
            "task.traits=[score]",
        ],
    )
    rows = list_samples(cfg.dataset)
    assert (rows.groupby("group").split.nunique() == 1).all()
    assert rows.split.nunique() > 1


@pytest.mark.slow
def test_the_report_in_headless_chromium_offline(demo_probe, demo_root):
    if find_chromium() is None:
        pytest.skip("no Chromium: `apt-get install chromium` (make test installs it where it may use apt-get)")
    report = demo_probe / "report.html"
    assert report.stat().st_size < 3 * 2**20
    seen = visit(
        report,
        {
            "sections": "Array.from(document.querySelectorAll('section')).map(s => s.id)",
            "points": "document.querySelector('svg.map[data-map=\"PCA\"]').querySelectorAll('circle').length",
            "gallery": "Array.from(document.querySelectorAll('#gallery img')).map(i => i.complete && i.naturalWidth > 0)",
            "hover": "(() => { const c = document.querySelector('svg.map circle');"
            " c.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));"
            " const t = document.getElementById('tip'); return [t.hidden, !!t.querySelector('img'), t.textContent]; })()",
            "sorted": "(() => { const th = document.querySelectorAll('#board th')[0]; th.click(); th.click();"
            " return Array.from(document.querySelectorAll('#board tbody tr td:first-child')).map(td => +td.textContent); })()",
        },
    )
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report-demo.png").write_bytes(seen.screenshot)
    assert seen.console_errors == []
    assert seen.failed_requests == []
    assert [u for u in seen.requests if not u.startswith(("file:", "data:"))] == []
    assert seen.answers["sections"] == SECTIONS
    manifest = pd.read_csv(demo_probe.parents[1] / "data" / "manifest.csv")
    assert seen.answers["points"] == (manifest.status == "ok").sum()  # one point per sample
    assert seen.answers["gallery"] and all(seen.answers["gallery"])  # every thumbnail loaded
    hidden, has_image, text = seen.answers["hover"]
    assert not hidden and has_image and "(" in text
    ranks = seen.answers["sorted"]
    assert ranks == sorted(ranks, reverse=True)  # the second click sorts descending
