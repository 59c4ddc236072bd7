import hashlib

import decord
import ffmpeg
import numpy as np
import pandas as pd
from vidprobe.config import load_config
from vidprobe.stages import demo_data
from vidprobe.stages.demo_data import CLASSES, plan_clips, render_frames, write_metadata


def demo_cfg(*overrides):
    return load_config(None, ["demo.train=2", "demo.val=1", "demo.test=1", *overrides]).demo


def metadata_bytes(tmp_path, cfg, name):
    path = tmp_path / name
    write_metadata(plan_clips(cfg), path)
    return path.read_bytes()


def test_same_seed_same_labels_and_metadata(tmp_path):
    a = metadata_bytes(tmp_path, demo_cfg(), "a.csv")
    b = metadata_bytes(tmp_path, demo_cfg(), "b.csv")
    c = metadata_bytes(tmp_path, demo_cfg("demo.seed=1"), "c.csv")
    assert a == b and a != c


def test_same_seed_same_frames():
    cfg = demo_cfg()
    clip = plan_clips(cfg)[0]
    assert hashlib.sha256(render_frames(clip, cfg)).digest() == hashlib.sha256(render_frames(clip, cfg)).digest()


def sprite_centre(frame: np.ndarray, background: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(np.abs(frame.astype(int) - background.astype(int)).sum(-1) > 30)
    return np.array([xs.mean(), ys.mean()])


def test_classes_differ_in_motion_direction():
    """The sprite moves along its class's direction; no single frame gives the class away."""
    cfg = demo_cfg("demo.width=160", "demo.height=160")
    for clip in plan_clips(cfg)[:8]:
        clip = clip.__class__(**{**clip.__dict__, "start_x": 60, "start_y": 60})  # no wrap-around in 5 frames
        frames = render_frames(clip, cfg)
        empty = render_frames(clip.__class__(**{**clip.__dict__, "start_x": 200, "start_y": 200}), cfg)
        moved = sprite_centre(frames[5], empty[5]) - sprite_centre(frames[0], empty[0])
        direction = np.sign(np.round(moved)).astype(int)
        assert tuple(direction) == CLASSES[clip.label], (clip.label, moved)


def test_written_clips_have_frames_speech_and_metadata(demo_root):
    meta = pd.read_csv(demo_root / "metadata.csv")
    assert sorted(meta.label.unique()) == sorted(CLASSES)
    assert meta.groupby("split").size().to_dict() == {"train": 12, "val": 8, "test": 8}
    assert meta.speed.between(15, 60).all() and meta.brightness.between(0.25, 0.75).all()
    path = demo_root / meta.path[0]
    assert len(decord.VideoReader(str(path))) == 12  # 1.2 s at 10 fps
    streams = {s["codec_type"] for s in ffmpeg.probe(str(path))["streams"]}
    assert streams == {"video", "audio"}


def test_no_audio_option(tmp_path):
    cfg = load_config(None, ["demo.train=1", "demo.val=1", "demo.test=1", "demo.seconds=0.5", "demo.audio=false"])
    root = demo_data.run(cfg, tmp_path / "d", n_jobs=1)
    streams = {s["codec_type"] for s in ffmpeg.probe(str(root / "train/left/left_000.mp4"))["streams"]}
    assert streams == {"video"}


def test_without_espeak_the_demo_is_made_without_speech_and_says_so(tmp_path, monkeypatch, capsys):
    real_which = demo_data.shutil.which
    monkeypatch.setattr(demo_data.shutil, "which", lambda tool: None if tool == "espeak-ng" else real_which(tool))
    cfg = load_config(None, ["demo.train=1", "demo.val=1", "demo.test=1", "demo.seconds=0.5"])
    root = demo_data.run(cfg, tmp_path / "d", n_jobs=1)
    assert "espeak-ng is not installed" in capsys.readouterr().out
    streams = {s["codec_type"] for s in ffmpeg.probe(str(root / "train/left/left_000.mp4"))["streams"]}
    assert streams == {"video"}


def test_multilabel_table_names_only_listed_classes(tmp_path):
    import csv

    from vidprobe.stages import demo_data

    cfg = load_config(None, ["demo.train=2", "demo.val=1", "demo.test=1", "demo.seconds=0.5", "demo.audio=false"])
    root = demo_data.run(cfg, tmp_path / "d")
    classes = (root / "classes.txt").read_text().split("\n")[:-1]
    rows = list(csv.DictReader((root / "multilabel.csv").open()))
    assert len(rows) == 16 and classes == demo_data.ATTRIBUTES
    for row in rows:
        labels = row["labels"].split(",")
        assert (root / f"{row['video_id']}.mp4").is_file() and set(labels) <= set(classes)
        assert labels[0] == row["video_id"].split("/")[1]  # the direction comes first
