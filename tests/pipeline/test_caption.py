"""`vidprobe caption` with a tiny random Florence-2 saved and loaded by path (its captions against a direct
`generate`: tests/features/test_captions.py): one record per video row (per window in windows mode, the
middle frame of each), an undecodable video recorded, embedded by `vidprobe text` and fused into a head."""

import json
import shutil

import numpy as np
import pytest
from vidprobe import layout
from vidprobe.cli import main
from vidprobe.config import load_config
from vidprobe.features.captions import save_tiny_florence2
from vidprobe.features.store import FeatureSet
from vidprobe.heads.runs import load_run
from vidprobe.stages import caption, embed, index, text, train

pytestmark = pytest.mark.slow  # generation over every demo clip


@pytest.fixture(scope="module")
def florence(tmp_path_factory):
    return save_tiny_florence2(tmp_path_factory.mktemp("florence") / "tiny-florence", seed=1)


def test_captions_reach_a_fused_head(florence, demo_cfg):
    cfg = demo_cfg(
        f"caption.model={florence}",
        "caption.max_new_tokens=6",
        "caption.min_new_tokens=3",
        "caption.frames=2",
        "text.source=captions",
        "text.encoder=minilm",
        "task.traits=[]",
        "head.fuse=[florence2-tiny-florence-minilm:text/pooled]",
        "run.name=fused",
    )
    index.run(cfg)
    embed.run(cfg)
    out = caption.run(cfg)
    records = [json.loads(line) for line in layout.captions(cfg).read_text().splitlines()]
    video = FeatureSet(layout.feature_set(cfg))
    assert out["records"] == len(records) == len(video.ids) and sorted(r["id"] for r in records) == sorted(video.ids)
    assert all(len(r["captions"]) == 2 and r["text"] for r in records)
    emb = text.run(cfg)
    fs = FeatureSet(emb["dir"])
    assert fs.dir.name == "florence2-tiny-florence-minilm" and emb["present"] == len(video.ids)
    assert np.allclose(np.linalg.norm(fs.get("text/pooled", fs.ids), axis=1), 1.0, atol=1e-5)
    train.run(cfg)
    run = load_run(layout.run_dir(cfg))
    assert "florence2-tiny-florence-minilm:text/pooled" in run.inputs and len(run.dims) == 2  # video and captions


def test_windows_mode_captions_every_window_row(florence, demo_cfg):
    cfg = demo_cfg(
        f"caption.model={florence}",
        "caption.max_new_tokens=4",
        "sampling.mode=windows",
        "sampling.window=0.5",
        "sampling.stride=0.5",
        "sampling.fps=8",
        "embed.feature_set=win",
        "task.traits=[]",
    )
    index.run(cfg)
    embed.run(cfg)
    caption.run(cfg)
    records = {r["id"]: r for r in map(json.loads, layout.captions(cfg).read_text().splitlines())}
    video = FeatureSet(layout.feature_set(cfg))
    assert sorted(records) == sorted(video.ids) and all("#w" in i for i in records)
    spans = video.get("span", video.ids).reshape(len(video.ids), -1, 2)
    for row, (lo, hi) in zip(video.ids, spans[:, 0]):  # one caption: the middle frame of the row's window
        (only,) = records[row]["captions"]  # (not where sampling.fps starts the window's frames)
        assert abs(only["time"] - (lo + hi) / 2) <= 0.1 and records[row]["text"] == only["text"]  # 10 fps demo


def test_an_undecodable_video_is_recorded_and_the_run_goes_on(florence, demo_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    cfg = load_config(
        None,
        [
            f"dataset.root={root}",
            f"paths.cache={tmp_path / 'cache'}",
            "dataset.name=demo",
            "index.num_workers=1",
            f"caption.model={florence}",
            "caption.max_new_tokens=4",
        ],
    )
    index.run(cfg)
    broken = sorted(root.rglob("*.mp4"))[0]
    broken.write_bytes(b"not a video" * 100)
    out = caption.run(cfg)
    records = [json.loads(line) for line in layout.captions(cfg).read_text().splitlines()]
    failed = [r for r in records if "error" in r]
    assert out["failed"] == len(failed) == 1 and str(broken) in failed[0]["error"] and not failed[0]["text"]
    assert len(records) == out["records"] and all(r["text"] for r in records if "error" not in r)
    assert (
        main(
            [
                "caption",
                f"dataset.root={root}",
                f"paths.cache={tmp_path / 'cache'}",
                "dataset.name=demo",
                f"caption.model={florence}",
                "caption.max_new_tokens=4",
                "caption.max_failures=0",
            ]
        )
        == 1
    )


def test_a_missing_captioning_model_is_a_usage_error(demo_root, tmp_path, capsys):
    base = [f"dataset.root={demo_root}", f"paths.cache={tmp_path}", "dataset.name=demo", "index.num_workers=1"]
    assert main(["caption", *base]) == 2
    assert "caption.model: needs a Florence-2 hub id or local path" in capsys.readouterr().err
    assert main(["caption", *base, f"caption.model={tmp_path / 'nowhere'}"]) == 2
    assert "could not load Florence-2" in capsys.readouterr().err
