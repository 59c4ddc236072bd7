import shutil

from vidprobe.artifacts import read_manifest
from vidprobe.stages import index


def test_manifest_records_unreadable_videos(demo_root, demo_cfg, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    (root / "train" / "left" / "broken.mp4").write_bytes(b"not a video at all")
    cfg = demo_cfg(f"dataset.root={root}", "dataset.metadata=null", "dataset.traits=[]")
    df = index.run(cfg)
    assert len(df) == 29
    bad = df[df.status != "ok"]
    assert list(bad.sample_id) == ["train/left/broken"]
    assert "broken.mp4" in bad.error.iloc[0] and "re-encode or remove" in bad.error.iloc[0]
    ok = df[df.status == "ok"]
    assert (ok.num_frames == 12).all() and (ok.fps == 10).all() and ok.has_audio.all()
    again = read_manifest(cfg)
    assert list(again.sample_id) == list(df.sample_id) and again.status.tolist() == df.status.tolist()


def test_manifest_joins_traits(demo_cfg):
    df = index.run(demo_cfg())
    assert {"speed", "brightness", "text", "label", "split"} <= set(df.columns)
    row = df[df.sample_id == "val/up/up_001"].iloc[0]
    assert row.label == "up" and row.split == "val" and 15 <= row.speed <= 60 and "moves up" in row.text
