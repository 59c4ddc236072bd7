import h5py
import numpy as np
import pytest

from features.store import FeatureSet, ShardWriter, StoreError, write_index


def write(directory, k, n, ids, rng, config_hash="abc"):
    with ShardWriter(directory, k, n, {"config_hash": config_hash, "provenance": {"backbone": "x"}}) as w:
        for start in range(0, len(ids), 3):  # several appends, as embed does per batch
            part = ids[start : start + 3]
            w.append(part, {"video/pooled": rng.normal(size=(len(part), 4)).astype(np.float32),
                            "video/temporal": rng.normal(size=(len(part), 2, 4)).astype(np.float32)})


def test_shards_round_trip_as_one_table(tmp_path):
    rng = np.random.default_rng(0)
    write(tmp_path, 0, 2, [f"a{i}" for i in range(5)], rng)
    write(tmp_path, 1, 2, [f"b{i}" for i in range(4)], rng)
    index = write_index(tmp_path)
    assert index["num_rows"] == 9 and index["keys"] == {"video/pooled": [4], "video/temporal": [2, 4]}
    fs = FeatureSet(tmp_path)
    assert len(fs.ids) == 9 and fs.config_hash == "abc"
    order = ["b3", "a0", "b0", "a4"]
    got = fs.get("video/pooled", order)
    with h5py.File(tmp_path / "shard-1-of-2.h5") as h5:
        ids = list(h5["ids"].asstr()[()])
        np.testing.assert_array_equal(got[0], h5["video/pooled"][ids.index("b3")])
        assert h5["video/pooled"].chunks[0] >= 1 and h5.attrs["num_rows"] == 4
    assert fs.get("video/temporal", order).shape == (4, 2, 4)


def test_refuses_other_config_and_unknown_ids(tmp_path):
    write(tmp_path, 0, 1, ["x", "y"], np.random.default_rng(1))
    fs = FeatureSet(tmp_path)
    with pytest.raises(StoreError, match="config hash abc"):
        fs.require_hash("def")
    with pytest.raises(StoreError, match="1 ids not in"):
        fs.get("video/pooled", ["x", "zzz"])
    with pytest.raises(StoreError, match="no feature 'audio/pooled'"):
        fs.get("audio/pooled", ["x"])


def test_failed_write_leaves_nothing_readable(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, 0, 1, {"config_hash": "abc"}) as w:
            w.append(["x"], {"video/pooled": np.zeros((1, 4), np.float32)})
            raise RuntimeError("killed mid-run")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StoreError, match="no feature shards"):
        FeatureSet(tmp_path)


def test_mixed_configs_are_refused(tmp_path):
    rng = np.random.default_rng(2)
    write(tmp_path, 0, 2, ["a"], rng, config_hash="one")
    write(tmp_path, 1, 2, ["b"], rng, config_hash="two")
    with pytest.raises(StoreError, match="another config"):
        FeatureSet(tmp_path)
