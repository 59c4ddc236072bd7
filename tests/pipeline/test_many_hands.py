"""Many hands on one cache, with real processes: two writers at once, a writer killed, a full disk, a shard
broken by an interrupted copy, duplicate rows, a run folder killed while it writes."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from vidprobe.cli import main
from vidprobe.features.store import STR, FeatureSet, ShardWriter, shard_paths, write_index
from vidprobe.heads.runs import load_run

pytestmark = pytest.mark.slow  # real processes started, killed and raced

ROOT = Path(__file__).resolve().parents[2]
SLOW_EMBED = [
    "embed.num_workers=0",
    "embed.batch_size=6",
    "embed.commit_every=4",
    "sampling.views=2",
    "sampling.crops=3",
]


def args(demo_root, cache, *more):
    return [
        f"dataset.root={demo_root}",
        f"paths.cache={cache}",
        "dataset.name=demo",
        "index.num_workers=1",
        "backbone.name=videomae-tiny-random",
        "task.traits=[]",
        *more,
    ]


def spawn(stage, *overrides):
    return subprocess.Popen(
        [sys.executable, "-m", "vidprobe", stage, *overrides],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(*procs):
    return [(p.wait(timeout=600), *p.communicate()) for p in procs]


def race(command: list[str], lock: Path) -> list[tuple[int, str, str]]:
    """Two processes of one command, the second started while the first holds `lock`: the first is paused
    (SIGSTOP) once its lock file names it, so however slow or fast the machine, the second meets it there.
    (Paused between creating the file and writing its holder, the first would make the second say "another
    writer is taking it right now; try again" instead: a rare failure of this test on a loaded machine.)"""
    first = spawn(*command)
    deadline = time.time() + 300
    while not names_holder(lock) and first.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)
    try:
        second = finished(spawn(*command))[0]
    finally:
        first.send_signal(signal.SIGCONT)
    return [*finished(first), second]


def names_holder(lock: Path) -> bool:
    """The lock file exists and its holder is written (it is created empty, then written in one call)."""
    try:
        return lock.stat().st_size > 0
    except FileNotFoundError:
        return False


def feature_dir(cache) -> Path:
    return Path(cache) / "demo" / "videomae-tiny-random"


def test_two_embeds_at_once_one_refuses_and_every_id_is_stored_once(demo_root, tmp_path):
    common = args(demo_root, tmp_path, *SLOW_EMBED)
    assert main(["index", *common]) == 0
    results = race(["embed", *common], feature_dir(tmp_path) / "shard-0-of-1.h5.lock")
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, _, err in results if code == 1)
    assert "is being written by" in refused and "pid" in refused and "Traceback" not in refused
    assert main(["cache", "verify", str(feature_dir(tmp_path))]) == 0
    assert len(FeatureSet(feature_dir(tmp_path)).ids) == 28


def test_two_trains_of_one_run_at_once(demo_root, tmp_path):
    common = args(demo_root, tmp_path, "embed.num_workers=0")
    assert main(["index", *common]) == 0 and main(["embed", *common]) == 0
    results = race(
        ["train", *common, "run.name=same", "head.epochs=400", "head.patience=400"], tmp_path / "runs" / "same.lock"
    )
    assert sorted(code for code, _, _ in results) == [0, 1], results
    assert "run same is being written by" in next(err for code, _, err in results if code == 1)
    assert load_run(tmp_path / "runs" / "same").classes == ["down", "left", "right", "up"]


def test_a_killed_writers_lock_does_not_block_the_next_run(demo_root, tmp_path, capsys):
    common = args(demo_root, tmp_path, *SLOW_EMBED)
    assert main(["index", *common]) == 0
    proc = spawn("embed", *common)
    lock = feature_dir(tmp_path) / "shard-0-of-1.h5.lock"
    parts = feature_dir(tmp_path) / ".parts" / "shard-0-of-1"
    deadline = time.time() + 120
    while not list(parts.glob("part-*.h5")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock.is_file() and json.loads(lock.read_text())["pid"] == proc.pid  # left behind by the dead writer
    assert main(["embed", *common]) == 0
    assert "taking over" in capsys.readouterr().out and not lock.exists()
    assert main(["cache", "verify", str(feature_dir(tmp_path))]) == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs, where this machine lets us mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_up_stops_the_run_cleanly_and_a_rerun_resumes(demo_root, tmp_path, small_disk):
    clean = tmp_path / "clean"
    common = [*SLOW_EMBED, "embed.commit_every=2"]
    for cache in (clean, small_disk):
        assert main(["index", *args(demo_root, cache, *common)]) == 0
    assert main(["embed", *args(demo_root, clean, *common)]) == 0

    proc = spawn("embed", *args(demo_root, small_disk, *common))
    parts = feature_dir(small_disk) / ".parts" / "shard-0-of-1"
    deadline = time.time() + 120
    while not list(parts.glob("part-*.h5")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    ballast = small_disk / "ballast"
    with open(ballast, "wb") as f:  # another user fills the disk while embed runs
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    code, _, err = finished(proc)[0]
    assert code == 1 and "disk full at" in err and "rows committed" in err and "Traceback" not in err, err
    ballast.unlink()
    assert main(["embed", *args(demo_root, small_disk, *common)]) == 0
    assert main(["cache", "verify", str(feature_dir(small_disk))]) == 0
    a, b = FeatureSet(feature_dir(clean)), FeatureSet(feature_dir(small_disk))
    assert sorted(a.ids) == sorted(b.ids)
    np.testing.assert_array_equal(a.get("video/pooled", a.ids), b.get("video/pooled", a.ids))


def test_too_little_room_is_refused_before_anything_is_written(demo_root, tmp_path, small_disk, capsys):
    common = args(demo_root, small_disk, *SLOW_EMBED)
    assert main(["index", *common]) == 0
    (small_disk / "ballast").write_bytes(b"\0" * (int(2.5 * 2**20)))
    assert main(["embed", *common]) == 1
    err = capsys.readouterr().err
    assert "MiB are free" in err and "needs about" in err and not list(feature_dir(small_disk).rglob("part-*.h5"))


def test_a_truncated_shard_is_named_and_embed_rebuilds_it(demo_root, tmp_path, capsys):
    common = args(demo_root, tmp_path, "embed.num_workers=0")
    assert main(["index", *common]) == 0 and main(["embed", *common]) == 0
    before = FeatureSet(feature_dir(tmp_path))
    values = before.get("video/pooled", before.ids)
    shard = shard_paths(feature_dir(tmp_path))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # an interrupted copy
    assert main(["cache", "verify", str(feature_dir(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert f"{shard} is broken: {len(data) // 2} bytes of {len(data)}" in err and "Traceback" not in err
    assert main(["train", *common]) == 1 and "re-run `vidprobe embed`" in capsys.readouterr().err
    assert main(["embed", *common]) == 0
    assert "moved it to" in capsys.readouterr().out
    after = FeatureSet(feature_dir(tmp_path))
    np.testing.assert_array_equal(after.get("video/pooled", before.ids), values)


def test_duplicates_cannot_be_merged_in_and_verify_repairs_a_set_that_has_them(tmp_path, capsys):
    attrs = {"config_hash": "h", "config": "x: 1\n"}
    w = ShardWriter(tmp_path, 0, 1, attrs, commit_every=2)
    w.append(["a", "b"], {"video/pooled": np.ones((2, 3), np.float32)})
    w.finish()
    w = ShardWriter(tmp_path, 0, 1, attrs)
    part = w.parts_dir / "part-000000.h5"  # a part holding an id already in the shard, as two writers left it
    with h5py.File(part, "w") as h5:
        h5.attrs.update(attrs)
        h5.create_dataset("ids", data=np.asarray(["b", "c"], dtype=object), dtype=STR)
        h5.create_dataset("video/pooled", data=np.full((2, 3), 2, np.float32))
    w.finish()
    fs = FeatureSet(tmp_path)
    assert fs.ids == ["a", "b", "c"] and fs.get("video/pooled", ["b"])[0, 0] == 1.0  # the first row of b kept


def test_verify_repair_drops_duplicate_rows_and_merged_parts(tmp_path, capsys):
    attrs = {"config_hash": "h", "config": "x: 1\n"}
    for path, ids in (
        (tmp_path / "shard-0-of-1.h5", ["a", "b", "a", "c", "b"]),  # as two writers left it
        (tmp_path / ".parts" / "shard-0-of-1" / "part-000000.h5", ["c"]),
    ):  # merged, not removed
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as h5:
            h5.attrs.update(attrs)
            h5.create_dataset("ids", data=np.asarray(ids, dtype=object), dtype=STR)
            h5.create_dataset("video/pooled", data=np.arange(len(ids) * 2, dtype=np.float32).reshape(-1, 2))
    write_index(tmp_path)
    assert main(["cache", "verify", str(tmp_path)]) == 1
    assert "appears twice" in capsys.readouterr().err
    assert main(["cache", "verify", "--repair", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "dropped 2 duplicate rows" in out and "removed .parts/shard-0-of-1/part-000000.h5" in out
    fs = FeatureSet(tmp_path)
    assert fs.ids == ["a", "b", "c"] and fs.get("video/pooled", ["a", "b", "c"]).tolist() == [[0, 1], [2, 3], [6, 7]]


def test_a_train_killed_while_it_writes_leaves_no_half_written_run(demo_root, tmp_path):
    common = args(demo_root, tmp_path, "embed.num_workers=0")
    assert main(["index", *common]) == 0 and main(["embed", *common]) == 0
    run = tmp_path / "runs" / "killed"
    for delay in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        proc = spawn("train", *common, "run.name=killed", "head.epochs=300", "head.patience=300")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (run / "heads.pt").exists():
            assert load_run(run).classes  # whole, never half
        if (run / "metrics.json").exists():
            json.loads((run / "metrics.json").read_text())
    assert main(["train", *common, "run.name=killed", "head.epochs=20"]) == 0  # the killed runs' locks: taken over
    assert not [p for p in run.iterdir() if p.name.endswith(".partial")]
