import h5py
import numpy as np
import pytest
from vidprobe.features.store import FeatureSet, ShardWriter, StoreError, read_rows, write_index

ATTRS = {"config_hash": "abc", "config": "sampling: {views: 1}\n", "provenance": {"backbone": "x"}}


def rows(ids, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "video/pooled": rng.normal(size=(len(ids), 4)).astype(np.float32),
        "video/temporal": rng.normal(size=(len(ids), 2, 4)).astype(np.float32),
    }


def write(directory, k, n, ids, attrs=ATTRS, finish=True, **kw):
    w = ShardWriter(directory, k, n, attrs, commit_every=3, **kw)
    for start in range(0, len(ids), 2):  # several appends, as embed does per batch
        part = ids[start : start + 2]
        w.append(part, rows(part, seed=start))
    return w.finish() if finish else w


def test_shards_round_trip_as_one_table(tmp_path):
    write(tmp_path, 0, 2, [f"a{i}" for i in range(5)])
    write(tmp_path, 1, 2, [f"b{i}" for i in range(4)])
    index = write_index(tmp_path)
    assert index["num_rows"] == 9 and index["keys"] == {"video/pooled": [4], "video/temporal": [2, 4]}
    assert not (tmp_path / ".parts").exists()
    fs = FeatureSet(tmp_path)
    assert len(fs.ids) == 9 and fs.config_hash == "abc"
    order = ["b3", "a0", "b0", "a4"]
    got = fs.get("video/pooled", order)
    with h5py.File(tmp_path / "shard-1-of-2.h5") as h5:
        ids = list(h5["ids"].asstr()[()])
        np.testing.assert_array_equal(got[0], h5["video/pooled"][ids.index("b3")])
        assert h5["video/pooled"].chunks[0] >= 1 and h5.attrs["num_rows"] == 4
        assert h5.attrs["config"] == ATTRS["config"]
    assert fs.get("video/temporal", order).shape == (4, 2, 4)


def test_resume_skips_committed_ids_and_appends_new(tmp_path):
    write(tmp_path, 0, 1, ["a", "b", "c"])
    w = ShardWriter(tmp_path, 0, 1, ATTRS)
    assert w.done == {"a", "b", "c"}
    w.append(["d"], rows(["d"]))
    w.finish()
    assert FeatureSet(tmp_path).ids == ["a", "b", "c", "d"]


def test_crash_before_finish_keeps_committed_parts_only(tmp_path):
    w = write(tmp_path, 0, 1, ["a", "b", "c", "d", "e"], finish=False)  # commits every 3 rows: a-d committed
    (w.parts_dir / "part-000009.h5.partial").write_bytes(b"half a part")  # what a SIGKILL mid-write leaves
    w.close()  # its process is gone (a lock left by a dead process is taken over: tests/pipeline/test_many_hands.py)
    with pytest.raises(StoreError, match="no feature shards"):
        FeatureSet(tmp_path)  # nothing finished: a reader trusts nothing
    again = ShardWriter(tmp_path, 0, 1, ATTRS)
    assert again.done == {"a", "b", "c", "d"} and not list(again.parts_dir.glob("*.partial"))
    again.append(["e"], rows(["e"]))
    again.finish()
    assert sorted(FeatureSet(tmp_path).ids) == ["a", "b", "c", "d", "e"]


def test_parts_already_merged_are_dropped(tmp_path):
    w = write(tmp_path, 0, 1, ["a", "b", "c"], finish=False)
    parts = w.parts()
    saved = [p.read_bytes() for p in parts]
    w.finish()
    for p, data in zip(parts, saved):  # a crash between the merge and the clean-up
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    again = ShardWriter(tmp_path, 0, 1, ATTRS)
    assert again.parts() == [] and again.done == {"a", "b", "c"}
    again.finish()
    assert FeatureSet(tmp_path).ids == ["a", "b", "c"]


def test_a_new_part_never_takes_the_name_of_one_kept(tmp_path):
    w = ShardWriter(tmp_path, 0, 1, ATTRS, commit_every=2)
    w.append(["a", "b"], rows(["a", "b"]))  # part 0
    w.append(["c", "d"], rows(["c", "d"]))  # part 1
    w.close()
    first, second = w.parts()
    first.unlink()  # a gap in the numbering: part 1 is all that is kept
    again = ShardWriter(tmp_path, 0, 1, ATTRS, commit_every=2)
    assert again.done == {"c", "d"}
    again.append(["e", "f"], rows(["e", "f"]))  # committed as part 2, beside part 1
    assert [p.name for p in again.parts()] == [second.name, "part-000002.h5"]
    again.finish()
    assert sorted(FeatureSet(tmp_path).ids) == ["c", "d", "e", "f"]


def test_other_config_is_refused_with_the_difference_then_forced(tmp_path):
    write(tmp_path, 0, 1, ["x", "y"])
    other = {**ATTRS, "config_hash": "def", "config": "sampling: {views: 3}\n"}
    with pytest.raises(StoreError, match=r"(?s)sampling.views: 1 -> 3.*--force"):
        ShardWriter(tmp_path, 0, 1, other)
    with pytest.raises(StoreError, match="split into 1 shards"):
        ShardWriter(tmp_path, 0, 2, ATTRS)
    write(tmp_path, 0, 1, ["z"], attrs=other, force=True)
    fs = FeatureSet(tmp_path)
    assert fs.ids == ["z"] and fs.config_hash == "def"


def test_reader_refuses_other_config_and_unknown_ids(tmp_path):
    write(tmp_path, 0, 1, ["x", "y"])
    fs = FeatureSet(tmp_path)
    with pytest.raises(StoreError, match=r"config hash abc.*sampling.views: 1 -> 2"):
        fs.require_hash("def", "sampling: {views: 2}\n")
    with pytest.raises(StoreError, match="1 ids not in"):
        fs.get("video/pooled", ["x", "zzz"])
    with pytest.raises(StoreError, match="no feature 'audio/pooled'"):
        fs.get("audio/pooled", ["x"])


def test_compression_and_float16(tmp_path):
    w = ShardWriter(tmp_path, 0, 1, ATTRS, compression="gzip")
    w.append(["a", "b"], {"video/pooled": np.ones((2, 8), np.float16)})
    w.finish()
    with h5py.File(tmp_path / "shard-0-of-1.h5") as h5:
        assert h5["video/pooled"].compression == "gzip" and h5["video/pooled"].dtype == np.float16


def test_mixed_configs_are_refused_by_the_reader(tmp_path):
    write(tmp_path, 0, 2, ["a"])
    write(tmp_path, 1, 2, ["b"])
    with h5py.File(tmp_path / "shard-1-of-2.h5", "a") as h5:  # as if another run wrote it
        h5.attrs["config_hash"] = "two"
    with pytest.raises(StoreError, match="another config"):
        FeatureSet(tmp_path)


def test_get_reads_any_rows_in_any_order_and_chunks_cover_the_set(tmp_path):
    ids = [f"s{i:03d}" for i in range(100)]
    values = np.arange(100 * 3, dtype=np.float32).reshape(100, 3)
    for k in range(2):  # two shards, as two ranks write them
        mine = [i for i, sid in enumerate(ids) if i % 2 == k]
        w = ShardWriter(tmp_path, k, 2, {"config_hash": "h", "config": "x: 1\n"}, commit_every=16)
        w.append([ids[i] for i in mine], {"video/pooled": values[mine]})
        w.finish()
    fs = FeatureSet(tmp_path)
    rng = np.random.default_rng(0)
    for pick in ([99, 0, 50, 50, 1], list(rng.permutation(100)[:7]), list(range(10, 90, 3))):  # sparse, dense, repeats
        np.testing.assert_array_equal(fs.get("video/pooled", [ids[i] for i in pick]), values[pick])
    seen = {sid: row for chunk_ids, chunk in fs.chunks("video/pooled", rows=7) for sid, row in zip(chunk_ids, chunk)}
    assert sorted(seen) == ids and all((seen[sid] == values[i]).all() for i, sid in enumerate(ids))
    asked = [ids[5], ids[2], ids[77]]
    assert [(c, v.tolist()) for c, v in fs.chunks("video/pooled", asked, rows=2)] == [
        (asked[:2], values[[5, 2]].tolist()),
        (asked[2:], values[[77]].tolist()),
    ]


def test_read_rows_block_by_block_equals_fancy_indexing(tmp_path):
    values = np.arange(60 * 2, dtype=np.float32).reshape(60, 2)
    with h5py.File(tmp_path / "x.h5", "w") as h5:
        ds = h5.create_dataset("x", data=values, chunks=(8, 2))
        for rows in ([0, 1, 1, 2, 3, 4, 5, 7, 8], [0, 3, 30, 31, 59, 59], list(range(0, 60, 5))):  # dense, sparse, both
            rows = np.asarray(rows)
            dest = np.random.default_rng(0).permutation(len(rows))
            out = np.full((len(rows), 2), np.nan, dtype=np.float32)
            read_rows(ds, rows, out, dest, block=4)  # several blocks, some read as a span, some row by row
            np.testing.assert_array_equal(out[dest], values[rows])


def test_an_id_twice_in_one_shard_or_in_two_is_named(tmp_path):
    def shard(path, ids):
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as h5:  # as two writers of one shard, or of two, would leave it
            h5.attrs.update(config_hash="abc", config=ATTRS["config"])
            h5.create_dataset("ids", data=np.asarray(ids, dtype=object), dtype=h5py.string_dtype())
            h5.create_dataset("video/pooled", data=np.zeros((len(ids), 2), np.float32))

    shard(tmp_path / "one" / "shard-0-of-1.h5", ["a", "b", "a"])
    with pytest.raises(StoreError, match="'a' appears twice"):
        FeatureSet(tmp_path / "one")
    shard(tmp_path / "two" / "shard-0-of-2.h5", ["a", "b"])
    shard(tmp_path / "two" / "shard-1-of-2.h5", ["c", "b"])
    with pytest.raises(StoreError, match="'b' appears twice"):
        FeatureSet(tmp_path / "two")
    shard(tmp_path / "fine" / "shard-1-of-2.h5", ["c", "d"])
    shard(tmp_path / "fine" / "shard-0-of-2.h5", ["a", "b"])
    fs = FeatureSet(tmp_path / "fine")
    assert fs.ids == ["a", "b", "c", "d"] and fs.has(["d", "x", "a"]).tolist() == [True, False, True]
