"""Features streamed from disk stand in for the tensor: same rows (float16 rounding aside), read a chunk at a
time, copied once; load_split switches to them above head.memory_mb."""

import numpy as np
import pandas as pd
import pytest
import torch
from vidprobe.features.store import FeatureSet, ShardWriter
from vidprobe.heads.config import HeadConfig, TaskConfig
from vidprobe.heads.data import load_split
from vidprobe.heads.errors import HeadConfigError
from vidprobe.heads.stream import DiskRows, copy_rows, forward_chunks

IDS = [f"s{i:04d}" for i in range(300)]


def feature_set(tmp_path, values: np.ndarray, key: str = "video/pooled") -> FeatureSet:
    for k in range(2):  # two shards, as two ranks write them
        mine = [i for i in range(len(IDS)) if i % 2 == k]
        w = ShardWriter(tmp_path / "fs", k, 2, {"config_hash": "h", "config": "x: 1\n"}, commit_every=64)
        w.append([IDS[i] for i in mine], {key: values[mine]})
        w.finish()
    return FeatureSet(tmp_path / "fs")


def values(shape=(300, 6), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def as_is(_ids, x):
    return torch.from_numpy(x).float()


def test_disk_rows_read_the_rows_asked_in_their_order(tmp_path):
    v = values()
    order = list(np.random.default_rng(1).permutation(300))
    fs = feature_set(tmp_path, v)
    rows = DiskRows(copy_rows(fs, "video/pooled", [IDS[i] for i in order], 64, as_is), chunk_rows=32)
    want = torch.from_numpy(v[order]).half().float()  # stored as float16
    assert len(rows) == 300 and rows.shape == (300, 6) and rows.ndim == 2
    idx = torch.tensor([299, 0, 5, 5, 17])
    torch.testing.assert_close(rows[idx], want[idx], rtol=0, atol=0)
    mask = torch.zeros(300, dtype=torch.bool)
    mask[::3] = True
    sub = rows[mask]  # 100 rows > 32 per chunk: a view, not a tensor
    assert isinstance(sub, DiskRows) and len(sub) == 100
    torch.testing.assert_close(torch.cat(list(sub.chunks())), want[mask], rtol=0, atol=0)
    torch.testing.assert_close(sub[torch.arange(3)], want[mask][:3], rtol=0, atol=0)
    doubled = sub.map(lambda x: 2 * x).map(lambda x: x + 1)
    torch.testing.assert_close(forward_chunks(lambda x: x, doubled), 2 * want[mask] + 1, rtol=0, atol=0)
    assert all(len(c) <= 32 for c in doubled.chunks())


def test_the_copy_is_made_once_and_anew_when_the_set_changes(tmp_path):
    fs = feature_set(tmp_path, values())
    calls = []

    def counting(ids, x):
        calls.append(len(ids))
        return as_is(ids, x)

    first = copy_rows(fs, "video/pooled", IDS, 100, counting)
    assert calls == [100, 100, 100] and copy_rows(fs, "video/pooled", IDS, 100, counting) == first and len(calls) == 3
    assert copy_rows(fs, "video/pooled", IDS[:50], 100, counting) != first  # other rows: another file
    assert not list(first.parent.glob("*.partial.npy"))


def test_values_beyond_float16_are_kept_as_float32(tmp_path):
    v = values()
    v[7, 2] = 1e6
    fs = feature_set(tmp_path, v)
    path = copy_rows(fs, "video/pooled", IDS, 64, as_is)
    assert np.load(path, mmap_mode="r").dtype == np.float32
    assert DiskRows(path, 16)[torch.tensor([7])][0, 2].item() == 1e6


def manifest() -> pd.DataFrame:
    return pd.DataFrame(
        {"sample_id": IDS, "split": ["train"] * 200 + ["val"] * 100, "label": [f"c{i % 3}" for i in range(300)]}
    )


def test_load_split_streams_above_the_memory_setting_with_the_same_rows(tmp_path):
    v = values((300, 2, 64))  # (views, D): pooled keys average views, streamed or not
    fs = feature_set(tmp_path, v)
    whole = load_split(HeadConfig(), TaskConfig(), manifest(), fs, "train")
    streamed = load_split(HeadConfig(memory_mb=0), TaskConfig(), manifest(), fs, "train")
    assert isinstance(whole.x, torch.Tensor) and isinstance(streamed.x, DiskRows)
    assert streamed.ids == whole.ids and streamed.labels == whole.labels and streamed.x.shape == (200, 64)
    torch.testing.assert_close(torch.cat(list(streamed.x.chunks())), whole.x, rtol=1e-3, atol=1e-3)  # float16


def test_fused_inputs_above_the_memory_setting_are_refused_with_the_fix(tmp_path):
    fs = feature_set(tmp_path, values())
    with pytest.raises(HeadConfigError, match="raise head.memory_mb"):
        load_split(
            HeadConfig(memory_mb=0, fuse=["other:audio/pooled"]),
            TaskConfig(),
            manifest(),
            fs,
            "train",
            [("other:audio/pooled", fs, "video/pooled")],
        )
