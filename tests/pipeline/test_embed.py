"""The extraction engine on real files: bad inputs, views and crops, windows, shards, a real SIGKILL."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import decord
import numpy as np
import pytest
import torch
from vidprobe import layout
from vidprobe.cli import main
from vidprobe.config import load_config
from vidprobe.features.clips import ClipDataset, Item
from vidprobe.features.store import FeatureSet
from vidprobe.features.video import crops, resize_short_side
from vidprobe.stages import embed, index
from vidprobe.stages.embed import resolve_shard

from tests.conftest import make_video

BAD = {  # file -> manifest status
    "train/dog/zero.mp4": "empty file",
    "train/dog/text.mp4": "unreadable",
    "train/dog/audio.mp4": "no video stream",
    "train/dog/trunc.mp4": "unreadable",
    "train/dog/trunc_fs.mp4": "truncated",
}
ODD_BUT_OK = [
    "train/cat/one.mp4",
    "train/cat/short.mp4",
    "train/cat/vfr.mp4",
    "train/cat/odd.mp4",
    "train/cat/rot.mp4",
    "train/cat/with space é.mp4",
]


@pytest.fixture(scope="module")
def messy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("messy")
    for split in ("train", "val", "test"):
        for label in ("cat", "dog"):
            make_video(root / split / label / "plain.mp4")
    make_video(root / "train/cat/one.mp4", "-frames:v", "1")
    make_video(root / "train/cat/short.mp4", seconds=0.3)  # 3 frames < 8
    make_video(
        root / "train/cat/vfr.mp4", "-vf", r"select='lt(n\,15)+not(mod(n\,5))'", "-fps_mode", "passthrough", rate=30
    )
    make_video(root / "train/cat/odd.mp4", size="34x18")
    make_video(root / "train/cat/with space é.mp4")
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(root / "train/cat/plain.mp4"),
            "-c",
            "copy",
            "-metadata:s:v:0",
            "rotate=90",
            str(root / "train/cat/rot.mp4"),
        ],
        check=True,
    )
    (root / "train/dog/zero.mp4").write_bytes(b"")
    (root / "train/dog/text.mp4").write_text("this is not a video\n")
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=1",
            "-c:a",
            "aac",
            str(root / "train/dog/audio.mp4"),
        ],
        check=True,
    )
    noisy = ["-vf", "noise=alls=80:allf=t"]
    big = make_video(root / "big.mp4", *noisy, size="160x120", rate=25, seconds=3)
    faststart = make_video(root / "big_fs.mp4", *noisy, "-movflags", "+faststart", size="160x120", rate=25, seconds=3)
    for src, dst in ((big, "trunc.mp4"), (faststart, "trunc_fs.mp4")):
        data = src.read_bytes()
        (root / "train/dog" / dst).write_bytes(data[: len(data) // 2])
        src.unlink()
    return root


def cfg_for(root, cache, *extra):
    return load_config(
        None,
        [
            f"dataset.root={root}",
            f"paths.cache={cache}",
            "dataset.name=messy",
            "embed.num_workers=0",
            "index.num_workers=2",
            "backbone.name=videomae-tiny-random",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def messy_manifest(messy_root, tmp_path_factory):
    cfg = cfg_for(messy_root, tmp_path_factory.mktemp("cache"))
    return cfg, index.run(cfg)


def test_index_records_every_bad_file_with_its_kind(messy_manifest):
    _, df = messy_manifest
    status = dict(zip(df.path, df.status))
    for path, kind in BAD.items():
        assert status[path] == kind, path
        error = df[df.path == path].error.iloc[0]
        assert path.split("/")[-1] in error and ("remove" in error or "re-encode" in error)
    for path in ODD_BUT_OK:
        assert status[path] == "ok", (path, df[df.path == path].error.iloc[0])
    rot = df[df.path == "train/cat/rot.mp4"].iloc[0]
    assert (rot.rotation, rot.width, rot.height) == (90, 48, 64)  # as displayed
    assert df[df.path == "train/cat/odd.mp4"].iloc[0].width == 34


def test_embed_goes_on_past_failures_and_records_them(messy_manifest, messy_root, tmp_path, capsys):
    cfg, _ = messy_manifest
    root = tmp_path / "data"
    subprocess.run(["cp", "-r", str(messy_root), str(root)], check=True)
    (root / "val/cat/plain.mp4").unlink()  # a manifest row whose file has gone missing
    cfg = cfg_for(root, cfg.paths.cache)
    result = embed.run(cfg)
    assert [(sid, kind) for sid, kind, _ in result["failed"]] == [("val/cat/plain", "missing")]
    fs = FeatureSet(layout.feature_set(cfg))
    assert len(fs.ids) == 11 and "val/cat/plain" not in fs.ids
    assert "failed: 1 missing" in capsys.readouterr().out
    padded = dict(
        zip(
            ["train/cat/one", "train/cat/short", "train/cat/plain"],
            fs.get("num_padded", ["train/cat/one", "train/cat/short", "train/cat/plain"]),
        )
    )
    assert padded == {"train/cat/one": 7, "train/cat/short": 5, "train/cat/plain": 0}
    # frame indices and timestamps against decord read directly (variable frame rate)
    vr = decord.VideoReader(str(root / "train/cat/vfr.mp4"))
    idx, times = fs.get("frame_indices", ["train/cat/vfr"])[0], fs.get("frame_times", ["train/cat/vfr"])[0]
    assert idx.tolist() == np.floor((np.arange(8) + 0.5) * len(vr) / 8).astype(int).tolist()
    np.testing.assert_allclose(times, vr.get_frame_timestamp(idx.tolist())[:, 0], atol=1e-4)
    # more failures than allowed: the run still finishes, then exits 1
    code = main(
        [
            "embed",
            f"dataset.root={root}",
            f"paths.cache={cfg.paths.cache}",
            "dataset.name=messy",
            "embed.num_workers=0",
            "embed.max_failures=0",
            "backbone.name=videomae-tiny-random",
            "--force",
        ]
    )
    assert code == 1 and "embed.max_failures=0" in capsys.readouterr().err
    assert len(FeatureSet(layout.feature_set(cfg)).ids) == 11


def test_rotated_video_is_turned_upright(messy_root):
    cfg = load_config(None, [])
    ds = ClipDataset([Item("rot", str(messy_root / "train/cat/rot.mp4"), rotation=90)], cfg.sampling, 8, 64)
    got = ds[0]["pixels"][0, 0]  # view 0, crop 0: (T, 3, 64, 64)
    vr = decord.VideoReader(str(messy_root / "train/cat/plain.mp4"))
    upright = np.stack([np.rot90(f, 1) for f in vr.get_batch(ds[0]["plan"].indices[0].tolist()).asnumpy()])
    torch.testing.assert_close(got, crops(resize_short_side(upright, 64), 64, 1)[0], atol=0, rtol=0)


def test_views_crops_and_windows(demo_cfg):
    cfg = demo_cfg("sampling.views=2", "sampling.crops=3", "embed.feature_set=vc")
    index.run(cfg)
    embed.run(cfg)
    fs = FeatureSet(layout.feature_set(cfg))
    sid = fs.ids[0]
    assert fs.get("video/pooled", [sid]).shape == (1, 2, 3, 64)
    assert fs.get("video/temporal", [sid]).shape == (1, 2, 3, 4, 64)
    assert fs.get("frame_indices", [sid]).shape == (1, 2, 8)
    first, second = fs.get("frame_indices", [sid])[0]
    assert (first < second).all()  # the second view is offset inside every step

    win = demo_cfg("sampling.mode=windows", "sampling.window=0.5", "sampling.stride=0.4", "embed.feature_set=win")
    embed.run(win)
    fs = FeatureSet(layout.feature_set(win))
    rows = [i for i in fs.ids if i.startswith("train/left/left_000#w")]
    assert len(rows) == 3  # 1.2 s clips: windows start at 0, 0.4, 0.8
    spans = fs.get("span", rows)
    np.testing.assert_allclose(spans[:, 0], [0.0, 0.4, 0.8], atol=1e-6)
    assert fs.get("video/pooled", rows).shape == (3, 64)
    assert set(fs.get("source_id", rows).astype(str)) == {"train/left/left_000"}
    assert embed.run(win)["new"] == 0 and len(FeatureSet(layout.feature_set(win)).ids) == len(fs.ids)  # resumed


def test_shards_by_rank_join_to_the_single_run(demo_cfg, monkeypatch):
    single = demo_cfg("embed.feature_set=one")
    index.run(single)
    embed.run(single)
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        embed.run(demo_cfg("embed.feature_set=two"))
    a, b = FeatureSet(layout.feature_set(single)), FeatureSet(layout.feature_set(demo_cfg("embed.feature_set=two")))
    assert len(b.paths) == 2 and sorted(a.ids) == sorted(b.ids)
    np.testing.assert_array_equal(a.get("video/pooled", a.ids), b.get("video/pooled", a.ids))


def test_shard_resolution_from_env(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(var, raising=False)
    assert resolve_shard(load_config(None, [])) == (0, 1)
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    assert resolve_shard(load_config(None, [])) == (2, 4)
    assert resolve_shard(load_config(None, ["embed.num_shards=3", "embed.shard_index=1"])) == (1, 3)
    with pytest.raises(Exception, match="shard_index"):
        resolve_shard(load_config(None, ["embed.num_shards=2", "embed.shard_index=2"]))


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(demo_root, tmp_path):
    common = [
        f"dataset.root={demo_root}",
        "dataset.name=demo",
        "backbone.name=videomae-tiny-random",
        "embed.num_workers=0",
        "embed.batch_size=6",
        "embed.commit_every=6",
        "sampling.views=2",
        "sampling.crops=3",
    ]
    clean = tmp_path / "clean"
    killed = tmp_path / "killed"
    for cache in (clean, killed):
        assert main(["index", *common, f"paths.cache={cache}"]) == 0
    assert main(["embed", *common, f"paths.cache={clean}"]) == 0

    cmd = [sys.executable, "-m", "vidprobe", "embed", *common, f"paths.cache={killed}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = killed / "demo" / "videomae-tiny-random" / ".parts" / "shard-0-of-1"
    deadline = time.time() + 120
    while len(list(parts.glob("part-*.h5"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (parts.parent.parent / "shard-0-of-1.h5").exists(), "the run ended before the kill"
    assert len(list(parts.glob("part-*.h5"))) >= 2

    assert main(["embed", *common, f"paths.cache={killed}"]) == 0
    a = FeatureSet(clean / "demo" / "videomae-tiny-random")
    b = FeatureSet(killed / "demo" / "videomae-tiny-random")
    assert sorted(a.ids) == sorted(b.ids) and len(a.ids) == 28
    for key in ("video/pooled", "video/temporal", "frame_indices", "frame_times", "num_padded"):
        np.testing.assert_array_equal(a.get(key, a.ids), b.get(key, a.ids))


def test_every_decoder_gives_the_same_features_and_auto_says_what_it_picked(demo_cfg, capsys, monkeypatch):
    monkeypatch.setattr("vidprobe.features.clips.AUTO_MAX", 3)  # tiny clips: decide after 3 timed each, not 24
    stored = {}
    for decoder in ("auto", "decord", "pyav"):
        cfg = demo_cfg(f"sampling.decoder={decoder}", f"embed.feature_set=dec-{decoder}", "embed.num_workers=2")
        index.run(cfg)
        embed.run(cfg)
        fs = FeatureSet(layout.feature_set(cfg))
        stored[decoder] = fs.get("video/pooled", sorted(fs.ids))
    assert np.array_equal(stored["auto"], stored["decord"]) and np.array_equal(stored["pyav"], stored["decord"])
    printed = capsys.readouterr()
    picked = [line for line in (printed.out + printed.err).splitlines() if line.startswith("decoder auto: ")]
    assert len(picked) == 2 and all(re.search(r"first 8, in turn: decord [\d.]+, pyav ", line) for line in picked)


def test_workers_that_embed_store_what_the_main_process_would(messy_manifest, messy_root, tmp_path, capsys):
    """embed.in_workers (the default on a CPU with workers): the same rows, features and failures as the model
    in the main process, with a missing file among the videos."""
    cfg, _ = messy_manifest
    root = tmp_path / "data"
    subprocess.run(["cp", "-r", str(messy_root), str(root)], check=True)
    (root / "val/cat/plain.mp4").unlink()
    stored = {}
    for mode in ("true", "false"):
        c = cfg_for(
            root,
            cfg.paths.cache,
            "embed.num_workers=2",
            "embed.batch_size=4",
            f"embed.in_workers={mode}",
            f"embed.feature_set=workers-{mode}",
        )
        result = embed.run(c)
        assert [(sid, kind) for sid, kind, _ in result["failed"]] == [("val/cat/plain", "missing")]
        assert result["clips"] == 11
        fs = FeatureSet(layout.feature_set(c))
        stored[mode] = {k: fs.get(k, sorted(fs.ids)) for k in ("video/pooled", "frame_indices")}
    printed = capsys.readouterr().out
    assert "embed: 2 workers each decode and embed (1 thread each; embed.in_workers)" in printed
    assert printed.count("each decode and embed") == 1  # false: the main process embeds
    np.testing.assert_array_equal(stored["true"]["frame_indices"], stored["false"]["frame_indices"])
    np.testing.assert_allclose(stored["true"]["video/pooled"], stored["false"]["video/pooled"], rtol=1e-5, atol=1e-6)


def test_in_workers_is_refused_where_it_cannot_run(demo_cfg):
    from vidprobe.config import ConfigError
    from vidprobe.stages.embed import in_worker_embedding

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert in_worker_embedding(demo_cfg(), cpu, 2) and not in_worker_embedding(demo_cfg(), cpu, 0)
    assert not in_worker_embedding(demo_cfg(), cuda, 2)
    assert not in_worker_embedding(demo_cfg("backbone.compile=true"), cpu, 2)
    assert not in_worker_embedding(demo_cfg("embed.in_workers=false"), cpu, 2)
    for bad in ((demo_cfg("embed.in_workers=true"), cuda, 2), (demo_cfg("embed.in_workers=true"), cpu, 0)):
        with pytest.raises(ConfigError, match="embed.in_workers=true needs backbone.device=cpu"):
            in_worker_embedding(*bad)


def test_embed_after_torch_work_in_the_same_process_does_not_hang(demo_root, tmp_path):
    """A notebook that trained, then embeds: this process holds OpenMP's threads, and a forked worker that
    embedded with 2 threads would wait on them forever (GNU OpenMP is not fork-safe). The main process
    embeds instead, and says so."""
    script = (
        "import sys, torch\n"
        "torch.set_num_threads(2)\n"
        "torch.randn(800, 800) @ torch.randn(800, 800)  # OpenMP's pool starts\n"
        "from vidprobe.config import load_config\n"
        "from vidprobe.stages import embed, index\n"
        "cfg = load_config(None, sys.argv[1:])\n"
        "index.run(cfg)\n"
        "print('clips', embed.run(cfg)['clips'])\n"
    )
    overrides = [
        f"dataset.root={demo_root}",
        f"paths.cache={tmp_path / 'cache'}",
        "dataset.name=demo",
        "index.num_workers=1",
        "backbone.name=videomae-tiny-random",
        "embed.num_workers=1",
    ]
    done = subprocess.run(
        [sys.executable, "-c", script, *overrides], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "already holds torch's OpenMP threads" in done.stdout and "the main process embeds" in done.stdout
    assert "clips 28" in done.stdout
